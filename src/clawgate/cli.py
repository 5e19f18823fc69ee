"""The ``clawgate`` command line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import orjson

from clawgate import __version__, cli_memory, cli_models, cli_store, codecache, crontab
from clawgate import config as config_module
from clawgate.diagnostics.logbatch import LoopBatchedHandler
from clawgate.errors import ClawgateError, ConfigError
from clawgate.ids import new_id
from clawgate.plugins.host import Generation, PluginHost

Handler = Callable[[argparse.Namespace], int]
GIL_SWITCH_S = 0.0005  # the gateway process's switch interval (CPython's default is 0.005)
# Young-generation threshold of the serving gateway (CPython's default is 700): a turn allocates
# and frees a few thousand containers, and at 700 the collector ran every few turns over the
# in-flight turns' objects (5% of the loop at 16 connections, 12% at 64); almost nothing of a
# turn survives it, so 10,000 collects as much ~100x less often (docs/architecture.md).
GC_YOUNG = 10_000


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clawgate`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except ClawgateError as exc:
        # client.GatewayUnreachable, known by its reason: importing clawgate.client (websockets,
        # urllib, http.client) only to catch it would slow every command, the gateway's too.
        if exc.reason == "gateway_unreachable":
            print(f"clawgate: {exc}", file=sys.stderr)
            return 2
        print(f"clawgate: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file or socket the command needed: one line, not a traceback
        print(f"clawgate: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clawgate", description="Self-hosted AI gateway.")
    parser.add_argument("--version", action="version", version=f"clawgate {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser)

    plugins = commands.add_parser("plugins", help="inspect the plugin runtime")
    sub = plugins.add_subparsers(metavar="ACTION", parser_class=_Parser)
    listing = sub.add_parser("list", help="every plugin found, with status and reason")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_plugins_list)
    inspect = sub.add_parser("inspect", help="one plugin in detail")
    inspect.add_argument("plugin_id")
    inspect.set_defaults(handler=_plugins_inspect)
    reload = sub.add_parser("reload", help="ask the running gateway to reload its plugins")
    reload.add_argument("--force", action="store_true",
                        help="accept a generation that loses plugins the running one has")
    _remote_options(reload)
    reload.set_defaults(handler=_plugins_reload)
    doctor = sub.add_parser("doctor", help="diagnostics; exits 1 when something is broken")
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.set_defaults(handler=_plugins_doctor)
    gateway = commands.add_parser("gateway", help="run the gateway (HTTP + WebSocket on one port)")
    gateway.add_argument("--port", type=_port,
                         help="port (default 18789, or CLAWGATE_GATEWAY_PORT)")
    gateway.add_argument("--bind", help="address to bind (default 127.0.0.1)")
    gateway.set_defaults(handler=_gateway)

    agent = commands.add_parser("agent", help="run one agent turn in-process")
    agent.add_argument("-m", "--message", required=True, help="the user message")
    agent.add_argument("--agent", help="agent id (default: the default agent)")
    agent.add_argument("--session", help="session key (default: the agent's main session)")
    agent.add_argument("--json", action="store_true", help="print the result as JSON")
    agent.set_defaults(handler=_agent)

    status = commands.add_parser("status", help="ask the running gateway how it is")
    status.add_argument("--json", action="store_true", help="print JSON")
    _remote_options(status)
    status.set_defaults(handler=_status)

    dashboard = commands.add_parser("dashboard", help="print (or --open) the Control UI's link, "
                                                      "with the token")
    dashboard.add_argument("--open", action="store_true", help="open it in a web browser")
    dashboard.add_argument("--port", type=_port, help="the local gateway's port (default: "
                                                      "CLAWGATE_GATEWAY_PORT, else the config's)")
    dashboard.add_argument("--token", help="the token to put in the link (default: as for "
                                           "clawgate status)")
    dashboard.set_defaults(handler=_dashboard)

    call = commands.add_parser("call", help="call an RPC method of the running gateway")
    call.add_argument("method", help="e.g. health, sessions.list, chat.history")
    call.add_argument("--params", default="{}", help="JSON object of parameters")
    _remote_options(call)
    call.set_defaults(handler=_call)

    chat = commands.add_parser("chat", help="send one message through the running gateway")
    chat.add_argument("-m", "--message", required=True, help="the user message")
    chat.add_argument("--session", default="main", help="session key (default: main)")
    _remote_options(chat)
    chat.set_defaults(handler=_chat)

    channels = commands.add_parser("channels", help="chat channels of the running gateway")
    csub = channels.add_subparsers(metavar="ACTION")
    cstatus = csub.add_parser("status", help="every channel account: connected, last error, ...")
    cstatus.add_argument("--probe", action="store_true", help="ask each platform too")
    cstatus.add_argument("--json", action="store_true", help="print JSON")
    _remote_options(cstatus)
    cstatus.set_defaults(handler=_channels_status)

    pairing = commands.add_parser("pairing", help="approve or deny unknown DM senders")
    psub = pairing.add_subparsers(metavar="ACTION")
    plist = psub.add_parser("list", help="pending pairing requests")
    plist.add_argument("channel", nargs="?", help="only this channel")
    plist.add_argument("--json", action="store_true", help="print JSON")
    _remote_options(plist)
    plist.set_defaults(handler=_pairing_list)
    for action, text in (("approve", "let the sender talk to the agent"),
                         ("deny", "refuse the sender's request")):
        decide = psub.add_parser(action, help=text)
        decide.add_argument("channel", help="e.g. telegram")
        decide.add_argument("code", help="the 8-character code the sender got")
        _remote_options(decide)
        decide.set_defaults(handler=_pairing_decide, approve=action == "approve")

    sessions = commands.add_parser("sessions", help="sessions in the store")
    ssub = sessions.add_subparsers(metavar="ACTION", parser_class=_Parser)
    slist = ssub.add_parser("list", help="list sessions, newest first")
    slist.add_argument("--json", action="store_true", help="print JSON")
    slist.add_argument("--agent", help="only this agent's sessions")
    slist.add_argument("--search", help="substring of key, label, name, subject or id")
    slist.add_argument("--limit", type=int, default=50, help="page size (default 50)")
    slist.add_argument("--remote", action="store_true",
                       help="ask the running gateway instead of opening the store")
    _remote_options(slist)
    slist.set_defaults(handler=_sessions_list)
    scheck = ssub.add_parser("check", help="integrity check of the session store; exits 1 "
                                           "when it is damaged")
    scheck.set_defaults(handler=_sessions_check)
    cli_memory.add_parser(commands)
    cli_models.add_parser(commands, _remote_options, _remote)
    cli_store.add_parser(commands)
    crontab.register(commands)  # clawgate cron ..., clawgate system event
    return parser


def _remote_options(parser: argparse.ArgumentParser) -> None:
    """--url, --port and --token for commands that talk to a running gateway."""
    parser.add_argument("--url", help="the gateway's WebSocket URL (default: "
                                      "CLAWGATE_GATEWAY_URL, else ws://<bind>:<port> from the "
                                      "config)")
    parser.add_argument("--port", type=_port, help="the local gateway's port (default: "
                                                   "CLAWGATE_GATEWAY_PORT, else the config's)")
    parser.add_argument("--token", help="the gateway token or password (default: "
                                        "CLAWGATE_GATEWAY_TOKEN, the config, "
                                        "<state>/gateway.token)")


def _remote(args: argparse.Namespace) -> tuple[str, str | None]:
    """The URL and credentials a client command uses."""
    from clawgate.client import gateway_token, gateway_url

    return (gateway_url(url=args.url, port=args.port), args.token or gateway_token())


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is out of range (0-65535)")
    return value


def _gateway(args: argparse.Namespace) -> int:
    # Start-up allocates objects that live as long as the process (modules, classes, pydantic
    # validators, plugins): the cyclic collector would walk them again and again for nothing.
    # It is off until the gateway listens; then they are frozen (moved out of every later
    # collection) and it is back on. A failed start turns it back on too.
    gc.disable()
    try:
        return _serve(args)
    finally:
        gc.enable()


def _settle() -> None:
    """The gateway listens: what start-up built stays, out of the collector's way, and the
    dataclass methods it compiled are saved for the next start."""
    codecache.release()
    for handler in logging.getLogger().handlers:  # one write per loop pass from now on
        if isinstance(handler, LoopBatchedHandler):
            handler.bind(asyncio.get_running_loop())
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)
    gc.enable()


def _serve(args: argparse.Namespace) -> int:
    from clawgate.gateway.app import Gateway

    level = os.environ.get("CLAWGATE_LOG_LEVEL", "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        raise ConfigError(f"CLAWGATE_LOG_LEVEL={level!r} is not a log level "
                          "(DEBUG, INFO, WARNING, ERROR)")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        handlers=[LoopBatchedHandler(sys.stderr)])
    # Files the gateway creates (store, WAL, token, workspaces) are the owner's alone.
    os.umask(0o077)
    # The store's writer thread hands every commit back to a busy event loop: with CPython's
    # 5 ms switch interval it waits up to 5 ms for the GIL each time (docs/architecture.md,
    # "Turn cost"); 0.5 ms gave +20-30% turns/s at 16 connections, the same at one.
    sys.setswitchinterval(GIL_SWITCH_S)
    loop_factory = event_loop_factory(os.environ.get("CLAWGATE_EVENT_LOOP", "auto"))
    settings = config_module.load()
    gateway = Gateway(settings, host=args.bind, port=args.port)
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(gateway.serve(on_ready=_settle))  # announces "listening on ..." once bound
    return 0


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The gateway's event loop, as uvicorn chooses its own (``--loop auto``): uvloop when it
    is installed (uvicorn[standard] brings it), else asyncio's; ``CLAWGATE_EVENT_LOOP`` says
    ``asyncio`` or ``uvloop`` instead. None: asyncio's default loop."""
    choice = choice.strip().lower()
    if choice not in ("auto", "asyncio", "uvloop"):
        raise ConfigError(f"CLAWGATE_EVENT_LOOP={choice!r} is not an event loop "
                          "(auto, asyncio, uvloop)")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("CLAWGATE_EVENT_LOOP=uvloop, but uvloop is not installed "
                              "(pip install uvloop)") from None
        return None
    return uvloop.new_event_loop


def _status(args: argparse.Namespace) -> int:
    from clawgate.client import call_remote

    url, token = _remote(args)
    result = call_remote("status", {}, url=url, token=token)
    if args.json:
        _print_json(result)
        return 0
    for name, value in result.items():
        if not isinstance(value, dict | list):
            print(f"{name}: {value}")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    """``http://127.0.0.1:PORT/<base>#token=TOKEN``: the token in the fragment, which the
    browser never sends to a server; the page moves it to its storage and out of the address
    bar."""
    import webbrowser
    from urllib.parse import quote

    from clawgate.client import gateway_token

    settings = config_module.load()
    gateway = settings.config.gateway
    if not gateway.control_ui.enabled:
        raise ConfigError("the Control UI is off (gateway.control_ui.enabled = false)",
                          path="gateway.control_ui.enabled")
    port = args.port if args.port is not None else gateway.port  # env override applied
    host = gateway.bind if gateway.bind not in ("", "0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    token = args.token or gateway_token()
    url = f"http://{host}:{port}{gateway.control_ui.base_path}"
    if token and gateway.auth.mode != "none":
        url += f"#token={quote(token, safe='')}"
    elif gateway.auth.mode != "none":
        print("clawgate: no token found (start the gateway once, or pass --token)",
              file=sys.stderr)
    print(url)
    if args.open and not webbrowser.open(url):
        print("clawgate: could not open a browser; open the link above", file=sys.stderr)
    return 0


def _call(args: argparse.Namespace) -> int:
    from clawgate.client import call_remote

    try:
        params = orjson.loads(args.params)
    except orjson.JSONDecodeError as exc:
        print(f"clawgate: error: --params is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(params, dict):
        print("clawgate: error: --params must be a JSON object", file=sys.stderr)
        return 2
    url, token = _remote(args)
    _print_json(call_remote(args.method, params, url=url, token=token))
    return 0


def _chat(args: argparse.Namespace) -> int:

    from clawgate.client import GatewayClient

    url, token = _remote(args)

    async def run() -> int:
        async with GatewayClient(url, token) as client:
            run_id = new_id()
            await client.call("chat.send", {"sessionKey": args.session, "message": args.message,
                                            "idempotencyKey": run_id})
            printed = ""
            async for event, payload in client.events():
                if event != "chat" or payload.get("runId") != run_id:
                    continue
                state = payload.get("state")
                text = _text_of(payload.get("message"))
                if text.startswith(printed):
                    sys.stdout.write(text[len(printed):])
                    sys.stdout.flush()
                    printed = text
                if state in ("final", "aborted", "error"):
                    sys.stdout.write("\n")
                    if state != "final":
                        print(f"clawgate: {state}: {payload.get('errorMessage', '')}",
                              file=sys.stderr)
                        return 1
                    return 0
        return 1

    return asyncio.run(run())


def _text_of(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _agent(args: argparse.Namespace) -> int:
    from clawgate.agents.turn import Submission
    from clawgate.runtime import Runtime

    settings = config_module.load()

    async def run() -> int:
        async with Runtime.open(settings, env=os.environ) as runtime:
            turn = await runtime.engine.submit(Submission(
                args.message, session_key=args.session, agent_id=args.agent, channel="cli"),
                follow=True)
            printed = ""
            async for event in turn.events():
                if event.stream == "assistant" and not args.json:
                    printed += str(event.data.get("delta", ""))
                    sys.stdout.write(str(event.data.get("delta", "")))
                    sys.stdout.flush()
            result = await turn.result()
            if printed and result.text.startswith(printed):  # what the stream did not carry
                sys.stdout.write(result.text[len(printed):])
        if args.json:
            _print_json({"runId": result.run_id, "sessionKey": result.session_key,
                         "status": result.status, "text": result.text,
                         "stopReason": result.stop_reason, "error": result.error,
                         "usage": result.usage})
        elif printed:
            sys.stdout.write("\n")
        elif result.text:
            print(result.text)
        if result.status != "ok":
            print(f"clawgate: run {result.status}: {result.error or result.stop_reason}",
                  file=sys.stderr)
            return 1
        return 0

    return asyncio.run(run())


def _sessions_list(args: argparse.Namespace) -> int:
    if args.remote:
        from clawgate.client import call_remote

        params: dict[str, Any] = {"limit": args.limit}
        if args.agent:
            params["agentId"] = args.agent
        if args.search:
            params["search"] = args.search
        url, token = _remote(args)
        result = call_remote("sessions.list", params, url=url, token=token)
        rows = result.get("sessions", [])
        total = result.get("totalCount", len(rows))
    else:
        from clawgate.sessions.listing import ListQuery
        from clawgate.sessions.store import SessionStore

        settings = config_module.load()

        async def listing() -> Any:
            # One metadata scan (no plugin code runs) gives every row's display model.
            snapshot = await PluginHost(settings).scan()
            store = SessionStore(settings.store_location())
            await store.open()
            try:
                return await store.list_sessions(
                    ListQuery(agent_id=args.agent, search=args.search, limit=args.limit),
                    display_model=snapshot.display_model)
            finally:
                await store.close()

        found = asyncio.run(listing())
        rows, total = list(found.rows), found.total
    if args.json:
        _print_json({"count": len(rows), "total": total, "sessions": rows})
        return 0
    print(f"{'KEY':<48}  {'UPDATED':<19}  MODEL")
    for row in rows:
        updated = row.get("updatedAt")
        when = _fmt_ms(updated) if isinstance(updated, int) else "-"
        print(f"{row['key']:<48}  {when:<19}  {row.get('model') or '-'}")
    print(f"{len(rows)} of {total} session(s)")
    return 0


def _sessions_check(args: argparse.Namespace) -> int:
    from clawgate.sessions.backend import check_file

    path = config_module.load().store_location()
    if isinstance(path, str):  # PostgreSQL checks its own pages (data checksums, amcheck)
        print("sessions check reads an SQLite file; the store is on PostgreSQL (use its "
              "amcheck / pg_amcheck)", file=sys.stderr)
        return 2
    problems = check_file(path)
    if not problems:
        print(f"{path}: ok")
        return 0
    print(f"{path}: database corrupt ({len(problems)} problem(s)); move it aside or restore a "
          "backup", file=sys.stderr)
    for problem in problems[:20]:
        print(f"  {problem}", file=sys.stderr)
    return 1
def _channels_status(args: argparse.Namespace) -> int:
    from clawgate.client import call_remote

    url, token = _remote(args)
    result = call_remote("channels.status", {"probe": args.probe}, url=url, token=token)
    if args.json:
        _print_json(result)
        return 0
    for cid in result.get("channelOrder", []):
        label = result.get("channelLabels", {}).get(cid, cid)
        summary = result.get("channels", {}).get(cid, {})
        rows = result.get("channelAccounts", {}).get(cid, [])
        print(f"{label} ({cid}): {len(rows)} account(s)"
              + (f" — {summary['error']}" if summary.get("error") else ""))
        for row in rows:
            state = "connected" if row.get("connected") else (
                "running" if row.get("running") else "stopped")
            line = f"  {row.get('accountId')}: {state}"
            if row.get("pendingDeliveries") or row.get("failedDeliveries"):
                line += (f", deliveries pending {row.get('pendingDeliveries', 0)}"
                         f" failed {row.get('failedDeliveries', 0)}")
            if row.get("lastError"):
                line += f" — {row['lastError']}"
            print(line)
            if "probe" in row:
                print(f"    probe: {orjson.dumps(row['probe']).decode()}")
    return 0


def _pairing_list(args: argparse.Namespace) -> int:
    from clawgate.client import call_remote

    params = {"channel": args.channel} if args.channel else {}
    url, token = _remote(args)
    requests = call_remote("channels.pairing.list", params, url=url,
                           token=token).get("requests", [])
    if args.json:
        _print_json({"requests": requests})
        return 0
    if not requests:
        print("no pending pairing requests")
    for r in requests:
        who = f"{r['id']}" + (f" ({r['name']})" if r.get("name") else "")
        print(f"{r['channel']}/{r['accountId']}  {r['code']}  {who}  expires "
              f"{_fmt_ms(int(r['expiresAt']))}")
    return 0


def _pairing_decide(args: argparse.Namespace) -> int:
    from clawgate.client import call_remote

    method = "channels.pairing.approve" if args.approve else "channels.pairing.deny"
    url, token = _remote(args)
    result = call_remote(method, {"channel": args.channel, "code": args.code}, url=url,
                         token=token)
    request = result.get("request", {})
    verb = "approved" if args.approve else "denied"
    print(f"{verb} {request.get('id')} on {request.get('channel')}/{request.get('accountId')}")
    return 0


def _fmt_ms(ms: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _load_generation() -> Generation:
    settings = config_module.load()

    async def build() -> Generation:
        host = PluginHost(settings)
        generation = await host.start(services=False)
        await host.aclose()
        return generation

    return asyncio.run(build())


def _plugins_list(args: argparse.Namespace) -> int:
    generation = _load_generation()
    rows = [r.as_dict() for r in generation.registry.records.values()]
    if args.json:
        _print_json({"generation": generation.id, "plan": generation.key, "plugins": rows})
        return 0
    width = max([len(r["id"]) for r in rows] + [2])
    print(f"{'ID':<{width}}  {'ORIGIN':<9}  {'STATUS':<10}  REASON")
    for row in rows:
        print(f"{row['id']:<{width}}  {row['origin']:<9}  {row['status']:<10}  {row['reason']}")
    return 0


def _plugins_inspect(args: argparse.Namespace) -> int:
    generation = _load_generation()
    record = generation.registry.record(args.plugin_id)
    if record is None:
        print(f"clawgate: error: no plugin {args.plugin_id!r}", file=sys.stderr)
        return 1
    detail: dict[str, Any] = record.as_dict()
    meta = generation.snapshot.by_id.get(args.plugin_id)
    if meta is not None and meta.decision is not None:
        detail["decision"] = {"enabled": meta.decision.enabled, "source": meta.decision.source,
                              "rule": meta.decision.rule, "reason": meta.decision.reason}
        detail["config"] = dict(meta.config)
    detail["diagnostics"] = [
        d.as_dict() for d in generation.registry.diagnostics if d.plugin_id == args.plugin_id
    ]
    _print_json(detail)
    return 0


def _plugins_reload(args: argparse.Namespace) -> int:
    from clawgate.client import call_remote

    url, token = _remote(args)
    result = call_remote("plugins.reload", {"force": True} if args.force else {}, url=url,
                         token=token)
    state = "reloaded" if result["changed"] else "unchanged"
    print(f"plugins {state}: generation {result['generation']}")
    for row in result["plugins"]:
        print(f"  {row['id']:<20} {row['status']:<10} {row['reason']}")
    return 0


def _plugins_doctor(args: argparse.Namespace) -> int:
    generation = _load_generation()
    registry = generation.registry
    diagnostics = [d.as_dict() for d in registry.diagnostics]
    warnings = list(generation.snapshot.warnings)
    broken = [r.as_dict() for r in registry.records.values() if r.status in ("error", "blocked")]
    refused = [
        {"origin": m.origin, "root": str(m.root), "pluginId": m.id, "status": m.status,
         "reason": m.reason}
        for m in generation.snapshot.plugins if m.status in ("blocked", "overridden", "error")
    ]
    # Every enabled plugin from outside the package: trusted code (docs/plugins.md).
    trusted = [{"pluginId": r.id, "origin": r.origin, "root": r.root, "status": r.status}
               for r in registry.records.values()
               if r.origin != "bundled" and r.status in ("loaded", "error")]
    ok = not broken and not any(d["level"] == "error" for d in diagnostics)
    if args.json:
        _print_json({"ok": ok, "broken": broken, "refused": refused, "diagnostics": diagnostics,
                     "warnings": warnings, "trusted": trusted})
    else:
        loaded = sum(r.status == "loaded" for r in registry.records.values())
        print(f"{loaded} plugin(s) loaded, {len(broken)} broken, {len(refused)} refused")
        for entry in trusted:
            print(f"  trusted  {entry['pluginId']} ({entry['origin']} {entry['root']}): "
                  f"{entry['status']}, runs in the gateway process with its rights")
        for item in refused:
            print(f"  refused  {item['pluginId'] or '?'} ({item['origin']} {item['root']}): "
                  f"{item['reason']}")
        for d in diagnostics:
            print(f"  {d['level']:<7}  {d['message']}")
        for w in warnings:
            print(f"  warn     {w}")
        print("ok" if ok else "problems found")
    return 0 if ok else 1


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
