"""The ``clawgate cron`` and ``clawgate system event`` commands: clients of the running
gateway's ``cron.*`` and ``wake`` methods (like ``clawgate call``), registered into the main
parser by :func:`register`.

Times and durations are checked here, so a typo is a one-line usage error (exit 2) before
anything is sent: ``--every 20m``, ``--cron "0 8 * * 1-5" --tz Europe/Berlin``,
``--at 2026-12-24T08:00:00+01:00``. What only the gateway can judge (an unknown agent, a
channel) comes back as its ``INVALID_REQUEST`` naming the field (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

import orjson

from clawgate.cron.schedule import CronInputError, check_expr, parse_at, parse_duration, zone

Handler = Callable[[argparse.Namespace], int]
RUN_WAIT_S = 3600.0  # `cron run` waits for the run to finish


class UsageError(Exception):
    """A command line that cannot be sent: printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """Sub-commands that report a usage error on one line (and exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"clawgate: error: {self.prog}: {message}\n")


def register(commands: Any) -> None:
    """Add ``cron`` and ``system`` to the top-level sub-parsers ``commands``."""
    cron = commands.add_parser("cron", help="scheduled jobs of the running gateway")
    sub = cron.add_subparsers(metavar="ACTION", parser_class=_Parser)
    listing = sub.add_parser("list", help="jobs by next run")
    listing.add_argument("--all", action="store_true", help="disabled jobs too")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_guarded(_list))
    add = sub.add_parser("add", help="add a job (one of --at, --every, --cron)")
    add.add_argument("--name", required=True, help="a name for the job")
    _job_options(add)
    add.set_defaults(handler=_guarded(_add))
    edit = sub.add_parser("edit", help="change a job (only the options given)")
    edit.add_argument("job_id", metavar="ID")
    edit.add_argument("--name", help="a new name")
    _job_options(edit)
    state = edit.add_mutually_exclusive_group()
    state.add_argument("--enable", dest="enabled", action="store_const", const=True)
    state.add_argument("--disable", dest="enabled", action="store_const", const=False)
    edit.set_defaults(handler=_guarded(_edit))
    remove = sub.add_parser("rm", help="remove a job and its run history")
    remove.add_argument("job_id", metavar="ID")
    remove.set_defaults(handler=_guarded(_remove))
    run = sub.add_parser("run", help="run a job now and wait for it")
    run.add_argument("job_id", metavar="ID")
    run.add_argument("--due", action="store_true", help="only if it is due")
    run.add_argument("--json", action="store_true", help="print JSON")
    run.set_defaults(handler=_guarded(_run))
    runs = sub.add_parser("runs", help="a job's finished runs, newest first")
    runs.add_argument("job_id", metavar="ID")
    runs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    runs.add_argument("--json", action="store_true", help="print JSON")
    runs.set_defaults(handler=_guarded(_runs))

    system = commands.add_parser("system", help="system events and heartbeats")
    ssub = system.add_subparsers(metavar="ACTION", parser_class=_Parser)
    event = ssub.add_parser("event", help="queue a system event on the main session")
    event.add_argument("--text", required=True, help="the event's text")
    event.add_argument("--mode", choices=("now", "next-heartbeat"), default="next-heartbeat",
                       help="now: run a heartbeat at once (default: wait for the next one)")
    event.add_argument("--json", action="store_true", help="print JSON")
    event.set_defaults(handler=_guarded(_event))


def _job_options(parser: argparse.ArgumentParser) -> None:
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--at", help="once, at an ISO time (no zone: UTC)")
    when.add_argument("--every", help="a duration: 20m, 1h30m, 45s")
    when.add_argument("--cron", help='a cron expression, e.g. "0 8 * * 1-5"')
    parser.add_argument("--tz", help="the --cron expression's IANA zone (default: the host's)")
    parser.add_argument("--stagger", help="spread a top-of-hour --cron job over this window "
                        "(0: exact; default 5m)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--message", help="an agent turn with this message (isolated session)")
    what.add_argument("--system-event", dest="system_event",
                      help="a system event with this text (main session)")
    parser.add_argument("--session", choices=("isolated", "main"),
                        help="where the job runs (default: from --message/--system-event)")
    parser.add_argument("--wake", choices=("now", "next-heartbeat"),
                        help="a main job: run a heartbeat at once (now, the default) or not")
    parser.add_argument("--agent", help="the agent (default: the default agent)")
    parser.add_argument("--model", help="the turn's model, provider/model")
    parser.add_argument("--thinking", help="the turn's thinking level")
    parser.add_argument("--timeout", help="the run's watchdog, a duration (default 1h)")
    parser.add_argument("--description", help="a note for people")
    deliver = parser.add_mutually_exclusive_group()
    deliver.add_argument("--announce", action="store_true",
                         help="send the reply to a channel (--channel, --to)")
    deliver.add_argument("--webhook", metavar="URL", help="POST the finished run to URL")
    deliver.add_argument("--no-deliver", dest="no_deliver", action="store_true",
                         help="deliver nothing")
    parser.add_argument("--channel", help="announce: a channel id, or last (default)")
    parser.add_argument("--to", help="announce: the recipient on that channel")
    parser.add_argument("--account", help="announce: the channel account")
    parser.add_argument("--best-effort", dest="best_effort", action="store_true",
                        help="a delivery that fails does not fail the run")
    after = parser.add_mutually_exclusive_group()
    after.add_argument("--delete-after-run", dest="delete_after_run", action="store_const",
                       const=True, help="delete the job after a delivered run (--at default)")
    after.add_argument("--keep-after-run", dest="delete_after_run", action="store_const",
                       const=False, help="keep a one-shot job after it ran")
    parser.add_argument("--disabled", action="store_true", help="add it switched off")
    parser.add_argument("--json", action="store_true", help="print JSON")


# -- building params -------------------------------------------------------------------------


def _schedule(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.tz and not args.cron:
        raise UsageError("--tz goes with --cron")
    if args.stagger is not None and not args.cron:
        raise UsageError("--stagger goes with --cron")
    if args.at:
        try:
            parse_at(args.at)
        except ValueError as exc:
            raise UsageError(f"--at: {exc}") from None
        return {"kind": "at", "at": args.at}
    if args.every:
        every = _duration(args.every, "--every")
        if every <= 0:
            raise UsageError("--every: must be longer than 0")
        return {"kind": "every", "everyMs": every}
    if args.cron:
        try:
            expr = check_expr(args.cron)
            if args.tz:
                zone(args.tz)
        except ValueError as exc:
            raise UsageError(f"--{'tz' if 'zone' in str(exc) else 'cron'}: {exc}") from None
        out: dict[str, Any] = {"kind": "cron", "expr": expr}
        if args.tz:
            out["tz"] = args.tz
        if args.stagger is not None:
            out["staggerMs"] = _duration(args.stagger, "--stagger")
        return out
    return None


def _payload(args: argparse.Namespace, edit: bool) -> dict[str, Any] | None:
    turn: dict[str, Any] = {}
    if args.model:
        turn["model"] = args.model
    if args.thinking:
        turn["thinking"] = args.thinking
    if args.timeout:
        turn["timeoutSeconds"] = max(1, _duration(args.timeout, "--timeout") // 1000)
    if args.system_event is not None:
        if turn:
            raise UsageError("--model, --thinking and --timeout go with --message")
        return {"kind": "systemEvent", "text": args.system_event}
    if args.message is not None:
        return {"kind": "agentTurn", "message": args.message, **turn}
    if turn and edit:
        return {"kind": "agentTurn", **turn}
    if turn or not edit:
        raise UsageError("one of --message or --system-event is required")
    return None


def _delivery(args: argparse.Namespace) -> dict[str, Any] | None:
    routed = args.channel or args.to or args.account
    if args.no_deliver:
        return {"mode": "none"}
    if args.webhook:
        if routed:
            raise UsageError("--channel, --to and --account go with --announce")
        out: dict[str, Any] = {"mode": "webhook", "to": args.webhook}
    elif args.announce or routed:
        out = {"mode": "announce", "channel": args.channel or "last"}
        if args.to:
            out["to"] = args.to
        if args.account:
            out["accountId"] = args.account
    elif args.best_effort:
        raise UsageError("--best-effort goes with --announce or --webhook")
    else:
        return None
    if args.best_effort:
        out["bestEffort"] = True
    return out


def _common(args: argparse.Namespace, edit: bool) -> dict[str, Any]:
    params: dict[str, Any] = {}
    schedule = _schedule(args)
    if schedule is not None:
        params["schedule"] = schedule
    elif not edit:
        raise UsageError("one of --at, --every or --cron is required")
    payload = _payload(args, edit)
    if payload is not None:
        params["payload"] = payload
    delivery = _delivery(args)
    if delivery is not None:
        params["delivery"] = delivery
    for option, name in (("name", "name"), ("session", "sessionTarget"), ("wake", "wakeMode"),
                         ("agent", "agentId"), ("description", "description"),
                         ("delete_after_run", "deleteAfterRun")):
        value = getattr(args, option, None)
        if value is not None:
            params[name] = value
    return params


def _duration(text: str, option: str) -> int:
    try:
        return parse_duration(text, option)
    except CronInputError as exc:
        raise UsageError(str(exc)) from None


# -- the commands ----------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    jobs = _call("cron.list", {"includeDisabled": args.all}).get("jobs", [])
    if args.json:
        _print_json({"jobs": jobs})
        return 0
    if not jobs:
        print("no cron jobs" + ("" if args.all else " (--all shows disabled ones)"))
        return 0
    print(f"{'ID':<36}  {'NAME':<20}  {'SCHEDULE':<22}  {'NEXT':<19}  LAST")
    for job in jobs:
        state = job.get("state", {})
        nxt = _when(state.get("nextRunAtMs")) if job.get("enabled") else "disabled"
        last = state.get("lastStatus") or "-"
        if state.get("lastDeliveryStatus") not in (None, "not-requested"):
            last += f" ({state['lastDeliveryStatus']})"
        print(f"{job['id']:<36}  {job['name'][:20]:<20}  {_describe(job['schedule']):<22}  "
              f"{nxt:<19}  {last}")
    return 0


def _add(args: argparse.Namespace) -> int:
    params = _common(args, edit=False)
    if args.disabled:
        params["enabled"] = False
    job = _call("cron.add", params)
    if args.json:
        _print_json(job)
        return 0
    nxt = job.get("state", {}).get("nextRunAtMs")
    print(f"added job {job['id']} ({job['name']}); next run "
          f"{_when(nxt) if nxt is not None else 'never (disabled)'}")
    return 0


def _edit(args: argparse.Namespace) -> int:
    patch = _common(args, edit=True)
    if args.enabled is not None:
        patch["enabled"] = args.enabled
    if args.disabled:
        raise UsageError("--disabled is for add; use --disable")
    if not patch:
        raise UsageError("nothing to change: give at least one option")
    job = _call("cron.update", {"id": args.job_id, "patch": patch})
    if args.json:
        _print_json(job)
        return 0
    state = "enabled" if job.get("enabled") else "disabled"
    print(f"updated job {job['id']} ({job['name']}, {state})")
    return 0


def _remove(args: argparse.Namespace) -> int:
    result = _call("cron.remove", {"id": args.job_id})
    if not result.get("removed"):
        print(f"clawgate: error: no cron job {args.job_id!r}", file=sys.stderr)
        return 1
    print(f"removed job {args.job_id}")
    return 0


def _run(args: argparse.Namespace) -> int:
    result = _call("cron.run", {"id": args.job_id, "mode": "due" if args.due else "force"},
                   timeout=RUN_WAIT_S)
    if args.json:
        _print_json(result)
        return 0
    if not result.get("ran"):
        print(f"not run: {result.get('reason')}")
        return 0
    entry = result.get("entry", {})
    print(_entry_line(entry))
    return 0 if entry.get("status") != "error" else 1


def _runs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit: must be at least 1")
    entries = _call("cron.runs", {"id": args.job_id, "limit": args.limit}).get("entries", [])
    if args.json:
        _print_json({"entries": entries})
        return 0
    if not entries:
        print("no runs yet")
    for entry in entries:
        print(_entry_line(entry))
    return 0


def _event(args: argparse.Namespace) -> int:
    if not args.text.strip():
        raise UsageError("--text: must not be blank")
    result = _call("wake", {"mode": args.mode, "text": args.text})
    if args.json:
        _print_json(result)
        return 0
    how = "a heartbeat runs now" if result.get("heartbeat") else (
        "the next heartbeat or message takes it" if args.mode == "next-heartbeat"
        else "no heartbeat runs now (heartbeats are off); the next message takes it")
    print(f"queued on {result.get('sessionKey')}; {how}")
    return 0


# -- helpers ---------------------------------------------------------------------------------


def _guarded(handler: Handler) -> Handler:
    """Usage errors as one line (exit 2); an unreachable gateway is cli.main's one line (exit
    2); another socket error one line (exit 1)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as exc:
            print(f"clawgate: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"clawgate: error: cannot reach the gateway: {exc}", file=sys.stderr)
            return 1

    return run


def _call(method: str, params: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
    from clawgate.client import call_remote

    return call_remote(method, params, timeout=timeout)


def _entry_line(entry: dict[str, Any]) -> str:
    line = f"{_when(entry.get('runAtMs'))}  {entry.get('status', '?'):<7}"
    if entry.get("durationMs") is not None:
        line += f" {entry['durationMs'] / 1000:.1f}s"
    delivery = entry.get("deliveryStatus")
    if delivery and delivery != "not-requested":
        line += f"  delivery {delivery}"
    why = entry.get("error") or entry.get("deliveryError")
    if why:
        line += f"  — {why}"
    elif entry.get("summary"):
        line += f"  {_oneline(entry['summary'], 60)}"
    return line


def _describe(schedule: dict[str, Any]) -> str:
    kind = schedule.get("kind")
    if kind == "at":
        return f"at {schedule.get('at', '')[:16]}"
    if kind == "every":
        return f"every {_span(int(schedule.get('everyMs', 0)))}"
    tz = f" {schedule['tz']}" if schedule.get("tz") else ""
    return f"{schedule.get('expr', '')}{tz}"


def _span(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _when(ms: Any) -> str:
    if not isinstance(ms, int):
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _oneline(text: str, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
