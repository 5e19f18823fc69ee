"""Cron jobs in OpenClaw's wire shape: the model, ``cron.add``/``cron.update`` validation, the
next run of a job, what a finished run does to it, and ``cron.runs`` entries.

Everything here is pure (no I/O, no clock): the scheduler passes times in, and the same
functions run inside store transactions (``sessions.cronstore``), so a job edited while it runs
is updated from its current row, not from a stale copy.

Rules that follow OpenClaw (``oc:src/cron/service/jobs.ts``, ``timer.ts``):

- ``sessionTarget: "main"`` needs a ``systemEvent`` payload, ``"isolated"`` an ``agentTurn``;
  channel delivery is for isolated jobs only (a main job may still have a webhook).
- ``at`` jobs default to ``deleteAfterRun: true``; ``every`` jobs get ``anchorMs`` = creation
  time; top-of-hour cron jobs get ``staggerMs`` = 5 minutes unless one is given.
- An ``every`` job runs ``everyMs`` after its last run's start, else on its anchor grid.
- After an error the next run waits at least the backoff (30 s, 1 min, 5 min, 15 min, 60 min by
  consecutive errors); ``failure_threshold`` consecutive errors disable the job
  (``state.autoDisabled``) and the owner is told; any other outcome resets the count.
- A one-shot that ran ``ok`` is deleted only when its delivery is confirmed (``delivered`` or
  ``not-requested``); otherwise, and after ``skipped``, it stays, disabled, for the owner to see.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict, TypeVar

from pydantic import Field, StringConstraints, ValidationError, ValidationInfo, field_validator

from clawgate.cron.schedule import (
    MAX_TEXT,
    AtSchedule,
    CronInputError,
    CronSchedule,
    EverySchedule,
    Schedule,
    Wire,
    default_stagger,
    next_run,
)
from clawgate.ids import new_id
from clawgate.sessions.keys import SessionKey, normalize_agent_id

SessionTarget = Literal["main", "isolated"]
WakeMode = Literal["now", "next-heartbeat"]
RunStatus = Literal["ok", "error", "skipped"]
DeliveryMode = Literal["none", "announce", "webhook"]
DeliveryStatus = Literal["delivered", "not-delivered", "unknown", "not-requested"]
ERROR_BACKOFF_MS = (30_000, 60_000, 5 * 60_000, 15 * 60_000, 60 * 60_000)
CONFIRMED: frozenset[DeliveryStatus] = frozenset({"delivered", "not-requested"})
M = TypeVar("M", bound=Wire)

_Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT)]
_Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
_Short = Annotated[str, StringConstraints(max_length=2_000)]
_Ms = Annotated[int, Field(ge=0)]
# Tagged unions: pydantic's error locations name the tag after the field; messages leave it out.
_UNIONS = frozenset({"schedule", "payload"})
_TAGS = frozenset({"at", "every", "cron", "systemEvent", "agentTurn"})


class SystemEvent(Wire):
    """A main-session job's payload: text enqueued as a system event."""

    kind: Literal["systemEvent"]
    text: _Text


class AgentTurn(Wire):
    """An isolated job's payload: one agent turn with this message."""

    kind: Literal["agentTurn"]
    message: _Text
    model: _Short | None = None
    thinking: _Short | None = None
    timeout_seconds: int | None = Field(default=None, ge=0, le=7 * 86_400)


Payload = Annotated[SystemEvent | AgentTurn, Field(discriminator="kind")]


class Delivery(Wire):
    """Where an isolated run's reply goes: ``none``, ``announce`` to a channel (``channel``
    ``last`` or an id, ``to`` a target) or a ``webhook`` POST to the URL in ``to``."""

    mode: DeliveryMode
    channel: _Short | None = None
    to: _Short | None = Field(default=None, validate_default=True)
    account_id: _Short | None = None
    best_effort: bool | None = None

    @field_validator("to")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("mode") == "webhook" and not _is_http_url(value):
            raise ValueError("webhook delivery needs an http(s) URL")
        return value.strip() if value is not None else None


class AutoDisabled(Wire):
    """Why and when the scheduler disabled a job."""

    reason: Literal["consecutive-failures"]
    at_ms: _Ms
    consecutive_errors: _Ms


class JobState(Wire):
    """A job's run state (``state`` on the wire)."""

    next_run_at_ms: _Ms | None = None
    running_at_ms: _Ms | None = None
    last_run_at_ms: _Ms | None = None
    last_status: RunStatus | None = None
    last_error: str | None = None
    last_duration_ms: _Ms | None = None
    consecutive_errors: _Ms = 0
    last_delivered: bool | None = None
    last_delivery_status: DeliveryStatus | None = None
    last_delivery_error: str | None = None
    auto_disabled: AutoDisabled | None = None


class CronJob(Wire):
    """One job, as ``cron.list``/``cron.get`` return it."""

    id: str
    agent_id: str | None = None
    name: _Name
    description: _Short | None = None
    enabled: bool
    delete_after_run: bool | None = None
    created_at_ms: _Ms
    updated_at_ms: _Ms
    schedule: Schedule
    session_target: SessionTarget
    wake_mode: WakeMode
    payload: Payload
    delivery: Delivery | None = None
    state: JobState = JobState()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CronJob:
        """A job from its stored (wire) document (written by this module, so its cron
        expression is not parsed again)."""
        return _validate(cls, doc, "cron", stored=True)


class JobCreate(Wire):
    """``cron.add`` params. ``sessionTarget`` defaults from the payload kind, ``wakeMode`` to
    ``now``."""

    name: _Name
    agent_id: str | None = None
    description: _Short | None = None
    enabled: bool = True
    delete_after_run: bool | None = None
    schedule: Schedule
    session_target: SessionTarget | None = None
    wake_mode: WakeMode = "now"
    payload: Payload
    delivery: Delivery | None = None


class SystemEventPatch(Wire):
    kind: Literal["systemEvent"]
    text: _Text | None = None


class AgentTurnPatch(Wire):
    kind: Literal["agentTurn"]
    message: _Text | None = None
    model: _Short | None = None
    thinking: _Short | None = None
    timeout_seconds: int | None = Field(default=None, ge=0, le=7 * 86_400)


class DeliveryPatch(Wire):
    mode: DeliveryMode | None = None
    channel: _Short | None = None
    to: _Short | None = None
    account_id: _Short | None = None
    best_effort: bool | None = None


class JobPatch(Wire):
    """``cron.update`` ``patch``: every field optional; ``agentId``/``description`` null clears."""

    name: _Name | None = None
    agent_id: str | None = None
    description: _Short | None = None
    enabled: bool | None = None
    delete_after_run: bool | None = None
    schedule: Schedule | None = None
    session_target: SessionTarget | None = None
    wake_mode: WakeMode | None = None
    payload: Annotated[SystemEventPatch | AgentTurnPatch, Field(discriminator="kind")] | None = None
    delivery: DeliveryPatch | None = None


class RunEntry(TypedDict, total=False):
    """One ``cron.runs`` entry (OpenClaw's ``CronRunLogEntry``)."""

    ts: int
    jobId: str
    action: Literal["finished"]
    status: RunStatus
    error: str
    summary: str
    delivered: bool
    deliveryStatus: DeliveryStatus
    deliveryError: str
    sessionId: str
    sessionKey: str
    runAtMs: int
    durationMs: int
    nextRunAtMs: int
    model: str
    provider: str
    usage: dict[str, int]
    jobName: str


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What the owner's ``run_job`` reports about one run."""

    status: RunStatus
    error: str | None = None
    summary: str | None = None
    delivery_status: DeliveryStatus = "not-requested"
    delivery_error: str | None = None
    session_id: str | None = None
    session_key: str | None = None
    model: str | None = None
    provider: str | None = None
    usage: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """A job after a run: ``job`` None means deleted; ``auto_disabled`` says this run disabled
    it (so the owner must be told)."""

    job: CronJob | None
    auto_disabled: bool = False


# -- create and patch -----------------------------------------------------------------------------


def new_job(params: Mapping[str, Any], *, now_ms: int, job_id: str | None = None,
            agents: Collection[str] | None = None) -> CronJob:
    """A job from ``cron.add`` params, with its first ``nextRunAtMs``. Bad input raises
    :class:`CronInputError` naming the field. ``agents``, when given, are the known agent ids."""
    create = _validate(JobCreate, params, "cron.add")
    schedule = create.schedule
    if isinstance(schedule, EverySchedule) and schedule.anchor_ms is None:
        schedule = schedule.model_copy(update={"anchor_ms": now_ms})
    if isinstance(schedule, CronSchedule) and schedule.stagger_ms is None:
        schedule = schedule.model_copy(update={"stagger_ms": default_stagger(schedule.expr)})
    target = create.session_target or (
        "main" if isinstance(create.payload, SystemEvent) else "isolated")
    delete = create.delete_after_run
    if delete is None and isinstance(schedule, AtSchedule):
        delete = True
    job = CronJob(
        id=job_id or new_id(), agent_id=_agent(create.agent_id, agents, "cron.add"),
        name=create.name, description=create.description, enabled=create.enabled,
        delete_after_run=delete, created_at_ms=now_ms, updated_at_ms=now_ms, schedule=schedule,
        session_target=target, wake_mode=create.wake_mode, payload=create.payload,
        delivery=create.delivery,
    )
    _check_spec(job, "cron.add")
    return _with_state(job, next_run_at_ms=next_run_at(job, now_ms))


def patch_job(job: CronJob, patch: Mapping[str, Any], *, now_ms: int,
              agents: Collection[str] | None = None) -> CronJob:
    """``job`` with a ``cron.update`` patch applied (OpenClaw's merge rules). The next run is
    recomputed when the schedule changes or the job is enabled; re-enabling clears the error
    count and ``autoDisabled``. Bad input raises :class:`CronInputError`; ``job`` is unchanged."""
    p = _validate(JobPatch, patch, "cron.update", prefix="patch")
    given = p.model_fields_set
    update: dict[str, Any] = {"updated_at_ms": now_ms}
    for name in ("name", "enabled", "delete_after_run", "session_target", "wake_mode"):
        if getattr(p, name) is not None:
            update[name] = getattr(p, name)
    if "description" in given:
        update["description"] = p.description
    if "agent_id" in given:
        update["agent_id"] = _agent(p.agent_id, agents, "cron.update")
    if p.schedule is not None:
        update["schedule"] = _patched_schedule(job.schedule, p.schedule)
    if p.payload is not None:
        update["payload"] = _patched_payload(job.payload, p.payload)
    if p.delivery is not None:
        update["delivery"] = _patched_delivery(job.delivery, p.delivery)
    merged = job.model_copy(update=update)
    if merged.session_target == "main" and (merged.delivery is None
                                            or merged.delivery.mode != "webhook"):
        merged = merged.model_copy(update={"delivery": None})
    merged = CronJob.from_doc(merged.wire())  # the whole job checked again, as stored
    _check_spec(merged, "cron.update")
    state = merged.state
    if not merged.enabled:
        return _with_state(merged, next_run_at_ms=None)
    if not job.enabled:  # re-enabled: a fresh start
        state = state.model_copy(update={"consecutive_errors": 0, "auto_disabled": None})
        merged = merged.model_copy(update={"state": state})
    if not job.enabled or p.schedule is not None or state.next_run_at_ms is None:
        return _with_state(merged, next_run_at_ms=next_run_at(merged, now_ms))
    return merged


def _patched_schedule(old: AtSchedule | EverySchedule | CronSchedule,
                      new: AtSchedule | EverySchedule | CronSchedule
                      ) -> AtSchedule | EverySchedule | CronSchedule:
    if not isinstance(new, CronSchedule) or new.stagger_ms is not None:
        return new
    # No staggerMs in the patch: keep the previous cron schedule's, else the default.
    stagger = old.stagger_ms if isinstance(old, CronSchedule) else default_stagger(new.expr)
    return new.model_copy(update={"stagger_ms": stagger})


def _patched_payload(old: SystemEvent | AgentTurn,
                     patch: SystemEventPatch | AgentTurnPatch) -> SystemEvent | AgentTurn:
    if patch.kind != old.kind:  # a new kind needs its required field
        need = "text" if patch.kind == "systemEvent" else "message"
        if getattr(patch, need) is None:
            raise CronInputError(f"patch.payload.{need}",
                                 f"a {patch.kind} payload needs {need}", method="cron.update")
    base = old.wire() if patch.kind == old.kind else {}
    return _validate(SystemEvent if patch.kind == "systemEvent" else AgentTurn,  # type: ignore[return-value]
                     {**base, **patch.wire()}, "cron.update", prefix="patch.payload")


def _patched_delivery(old: Delivery | None, patch: DeliveryPatch) -> Delivery:
    doc = old.wire() if old is not None else {"mode": "none"}
    for name, value in patch.wire().items():
        doc[name] = value
    for name in ("channel", "to", "accountId"):  # an empty string clears the field
        if isinstance(doc.get(name), str) and not doc[name].strip():
            del doc[name]
    return _validate(Delivery, doc, "cron.update", prefix="patch.delivery")


def _check_spec(job: CronJob, method: str) -> None:
    if job.session_target == "main" and not isinstance(job.payload, SystemEvent):
        raise CronInputError("payload.kind", 'sessionTarget "main" needs a systemEvent payload',
                             method=method)
    if job.session_target == "isolated" and not isinstance(job.payload, AgentTurn):
        raise CronInputError("payload.kind",
                             'sessionTarget "isolated" needs an agentTurn payload', method=method)
    if (job.session_target == "main" and job.delivery is not None
            and job.delivery.mode not in ("none", "webhook")):
        raise CronInputError("delivery.mode",
                             'channel delivery needs sessionTarget "isolated"', method=method)


def _agent(raw: str | None, agents: Collection[str] | None, method: str) -> str | None:
    if raw is None:
        return None
    agent = normalize_agent_id(raw)
    if not raw.strip() or (agents is not None and agent not in agents):
        raise CronInputError("agentId", f"unknown agent {raw!r}", method=method)
    return agent


def job_id_of(params: Mapping[str, Any], method: str) -> str:
    """The job named by ``id`` or ``jobId`` in RPC params."""
    value = params.get("id", params.get("jobId"))
    if not isinstance(value, str) or not value.strip():
        raise CronInputError("id", "a job id is required", method=method)
    return value.strip()


# -- runs -----------------------------------------------------------------------------------------


def next_run_at(job: CronJob, now_ms: int) -> int | None:
    """When the job runs next, seen at ``now_ms``. A one-shot stays due at its time until it has
    run (so one in the past runs once, at start-up or when added)."""
    if not job.enabled:
        return None
    schedule = job.schedule
    if isinstance(schedule, AtSchedule):
        return schedule.at_ms
    if isinstance(schedule, EverySchedule):
        last = job.state.last_run_at_ms
        if last is not None and last + schedule.every_ms > now_ms:
            return last + schedule.every_ms
        if schedule.anchor_ms is None:
            schedule = schedule.model_copy(update={"anchor_ms": job.created_at_ms})
    return next_run(schedule, now_ms, job.id)


def backoff_ms(consecutive_errors: int) -> int:
    """The least wait before the next run after ``consecutive_errors`` errors in a row."""
    if consecutive_errors <= 0:
        return 0
    return ERROR_BACKOFF_MS[min(consecutive_errors, len(ERROR_BACKOFF_MS)) - 1]


def apply_outcome(job: CronJob, outcome: RunOutcome, *, started_ms: int, ended_ms: int,
                  failure_threshold: int) -> Transition:
    """The job after a run that started at ``started_ms`` and ended with ``outcome``.
    ``failure_threshold`` 0 never disables."""
    errors = job.state.consecutive_errors + 1 if outcome.status == "error" else 0
    state = job.state.model_copy(update={
        "running_at_ms": None, "last_run_at_ms": started_ms, "last_status": outcome.status,
        "last_error": outcome.error if outcome.status != "ok" else None,
        "last_duration_ms": max(0, ended_ms - started_ms), "consecutive_errors": errors,
        "last_delivered": _delivered(outcome.delivery_status),
        "last_delivery_status": outcome.delivery_status,
        "last_delivery_error": outcome.delivery_error,
    })
    ran = job.model_copy(update={"state": state})
    if outcome.status == "error" and 0 < failure_threshold <= errors:
        auto = AutoDisabled(reason="consecutive-failures", at_ms=ended_ms,
                            consecutive_errors=errors)
        off = state.model_copy(update={"next_run_at_ms": None, "auto_disabled": auto})
        return Transition(ran.model_copy(update={"enabled": False, "state": off}), True)
    if isinstance(job.schedule, AtSchedule) and outcome.status != "error":
        if (outcome.status == "ok" and job.delete_after_run
                and outcome.delivery_status in CONFIRMED):
            return Transition(None)
        done = ran.model_copy(update={"enabled": False})
        return Transition(_with_state(done, next_run_at_ms=None))
    upcoming = next_run_at(ran, ended_ms)
    if outcome.status == "error" and upcoming is not None:
        upcoming = max(upcoming, ended_ms + backoff_ms(errors))
    return Transition(_with_state(ran, next_run_at_ms=upcoming))


def interrupted(job: CronJob, *, started_ms: int, now_ms: int, delivery_attempted: bool,
                failure_threshold: int) -> tuple[Transition, RunOutcome]:
    """The job after a run that a stopped or killed gateway left unfinished; it counts as an
    error. A one-shot that had started delivering is disabled, not replayed (its reply may have
    gone out already), with delivery status ``unknown``."""
    if isinstance(job.schedule, AtSchedule) and delivery_attempted:
        outcome = RunOutcome("error", error="interrupted after a delivery attempt; not replayed",
                             delivery_status="unknown")
        t = apply_outcome(job, outcome, started_ms=started_ms, ended_ms=now_ms,
                          failure_threshold=failure_threshold)
        if t.job is not None and t.job.enabled:
            off = t.job.model_copy(update={"enabled": False})
            t = Transition(_with_state(off, next_run_at_ms=None), t.auto_disabled)
        return t, outcome
    outcome = RunOutcome("error", error="interrupted: the gateway stopped during the run",
                         delivery_status="unknown" if delivery_attempted else "not-requested")
    return apply_outcome(job, outcome, started_ms=started_ms, ended_ms=now_ms,
                         failure_threshold=failure_threshold), outcome


def run_entry(job: CronJob, outcome: RunOutcome, *, started_ms: int, ended_ms: int,
              next_run_at_ms: int | None) -> RunEntry:
    """The ``cron.runs`` entry of a finished run."""
    entry: RunEntry = {
        "ts": ended_ms, "jobId": job.id, "action": "finished", "status": outcome.status,
        "deliveryStatus": outcome.delivery_status, "runAtMs": started_ms,
        "durationMs": max(0, ended_ms - started_ms), "jobName": job.name,
    }
    delivered = _delivered(outcome.delivery_status)
    if delivered is not None:
        entry["delivered"] = delivered
    optional = {"error": outcome.error, "summary": outcome.summary,
                "deliveryError": outcome.delivery_error, "sessionId": outcome.session_id,
                "sessionKey": outcome.session_key, "nextRunAtMs": next_run_at_ms,
                "model": outcome.model, "provider": outcome.provider,
                "usage": dict(outcome.usage) or None}
    entry.update({k: v for k, v in optional.items() if v is not None})  # type: ignore[typeddict-item]
    return entry


def session_key(job: CronJob, default_agent: str, run_id: str | None = None) -> str:
    """An isolated job's session key, ``agent:<a>:cron:<jobId>``, or with ``run_id`` the key of
    one run's fresh session, ``agent:<a>:cron:<jobId>:run:<runId>``."""
    return str(SessionKey(kind="cron", agent_id=job.agent_id or default_agent, job_id=job.id,
                          run_id=run_id))


def _delivered(status: DeliveryStatus) -> bool | None:
    return {"delivered": True, "not-delivered": False}.get(status)


def _with_state(job: CronJob, **fields: Any) -> CronJob:
    return job.model_copy(update={"state": job.state.model_copy(update=fields)})


def _is_http_url(value: str | None) -> bool:
    text = (value or "").strip().lower()
    return text.startswith(("http://", "https://")) and len(text.split("//", 1)[1]) > 0


# -- validation errors ----------------------------------------------------------------------------


def _validate(model: type[M], data: Any, method: str, prefix: str = "",
              stored: bool = False) -> M:
    """``model`` from ``data``; the first problem raises CronInputError naming its field."""
    if not isinstance(data, Mapping):
        raise CronInputError(prefix or "params", "must be an object", method=method)
    try:
        return model.model_validate(dict(data), context={"stored": stored})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CronInputError(_dotted(prefix, first["loc"]), _message(first),
                             method=method) from None


def _dotted(prefix: str, loc: tuple[int | str, ...]) -> str:
    parts: list[str] = [prefix] if prefix else []
    previous: int | str = ""
    for part in loc:
        if not (previous in _UNIONS and part in _TAGS):  # pydantic puts the tag in the loc
            parts.append(str(part))
        previous = part
    return ".".join(parts)


def _message(error: Any) -> str:
    kind, msg = error["type"], str(error["msg"])
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    return msg.removeprefix("Value error, ")
