"""Cron and heartbeat methods in OpenClaw's shapes (reference §2.3, §9): ``cron.list``,
``.status``, ``.get``, ``.add``, ``.update``, ``.remove``, ``.run``, ``.runs``; ``wake``,
``last-heartbeat``, ``set-heartbeats``. Scopes as OpenClaw's ``method-scopes.ts``: reads need
``operator.read``, job changes ``operator.admin``, ``wake`` ``operator.write``.

Bad input is ``INVALID_REQUEST`` with a message that names the field (``details.field`` too)
and changes nothing; jobs are addressed by ``id`` or ``jobId``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from clawgate.cron.jobs import CronJob, job_id_of
from clawgate.cron.schedule import CronInputError
from clawgate.cron.service import CronService
from clawgate.errors import NotFound, RpcError, Unavailable
from clawgate.gateway.protocol import NoParams, Params, invalid, parse_params
from clawgate.gateway.rpc import ADMIN, READ, WRITE, CallContext, CoreMethod

_Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^/\\]+$")]


class ListParams(Params):
    includeDisabled: bool = False
    limit: int | None = Field(default=None, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class JobParams(Params):
    id: _Id | None = None
    jobId: _Id | None = None


class UpdateParams(JobParams):
    patch: dict[str, Any]


class RunParams(JobParams):
    mode: Literal["due", "force"] = "force"


class RunsParams(JobParams):
    limit: int = Field(default=50, ge=1, le=5000)
    offset: int = Field(default=0, ge=0)


class WakeParams(Params):
    mode: Literal["now", "next-heartbeat"]
    text: str = Field(min_length=1, max_length=4000)


class SetHeartbeatsParams(Params):
    enabled: bool


def _cron(ctx: CallContext) -> CronService:
    cron = ctx.gateway.runtime.cron
    if cron is None:
        raise Unavailable("this gateway runs no cron service")
    return cron


def _job_id(p: JobParams, method: str) -> str:
    try:
        return job_id_of(p.model_dump(exclude_none=True), method)
    except CronInputError as exc:
        raise _invalid_field(exc) from None


def _invalid_field(exc: CronInputError) -> RpcError:
    method = f"invalid {exc.method} params: " if exc.method else ""
    return invalid(f"{method}{exc}", field=exc.field)


async def cron_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(ListParams, raw, "cron.list")
    store = _cron(ctx).engine.store.cron
    limit = -1 if p.limit is None else p.limit + 1  # one more says whether there are more
    docs = await store.list(include_disabled=p.includeDisabled, limit=limit, offset=p.offset)
    more = p.limit is not None and len(docs) > p.limit
    jobs = [CronJob.from_doc(d).wire() for d in docs[:p.limit]]
    return {"jobs": jobs, "offset": p.offset, "limit": p.limit, "hasMore": more,
            "nextOffset": p.offset + len(jobs) if more else None}


async def cron_status(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "cron.status")
    return await _cron(ctx).status()


async def cron_get(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(JobParams, raw, "cron.get")
    job_id = _job_id(p, "cron.get")
    job = await _cron(ctx).scheduler.get(job_id)
    if job is None:
        raise NotFound(f"unknown cron job id: {job_id}")
    return job.wire()


async def cron_add(ctx: CallContext, raw: Any) -> dict[str, Any]:
    if raw is not None and not isinstance(raw, dict):
        raise invalid("invalid cron.add params: must be an object")
    scheduler = _cron(ctx).scheduler
    try:
        job = await scheduler.add(raw or {})
    except CronInputError as exc:
        raise _invalid_field(exc) from None
    return job.wire()


async def cron_update(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(UpdateParams, raw, "cron.update")
    job_id = _job_id(p, "cron.update")
    try:
        job = await _cron(ctx).scheduler.update(job_id, p.patch)
    except CronInputError as exc:
        raise _invalid_field(exc) from None
    return job.wire()


async def cron_remove(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(JobParams, raw, "cron.remove")
    removed = await _cron(ctx).scheduler.remove(_job_id(p, "cron.remove"))
    return {"ok": True, "removed": removed}


async def cron_run(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Run the job now (``force``, the default, also when it is not due or is disabled) and
    answer when the run has finished, with its ``cron.runs`` entry."""
    p = parse_params(RunParams, raw, "cron.run")
    job_id = _job_id(p, "cron.run")
    result = await _cron(ctx).scheduler.run_now(job_id, p.mode)
    if result.reason == "not-found":
        raise NotFound(f"unknown cron job id: {job_id}")
    out: dict[str, Any] = {"ok": True, "ran": result.ran}
    if result.reason is not None:
        out["reason"] = result.reason
    if result.entry is not None:
        out["entry"] = dict(result.entry)
    return out


async def cron_runs(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(RunsParams, raw, "cron.runs")
    job_id = _job_id(p, "cron.runs")
    store = _cron(ctx).engine.store.cron
    entries = await store.runs(job_id, limit=p.limit, offset=p.offset)
    return {"entries": entries, "offset": p.offset, "limit": p.limit,
            "hasMore": len(entries) == p.limit}


async def wake(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Queue ``text`` as a system event on the default agent's main session; ``now`` runs its
    heartbeat at once."""
    p = parse_params(WakeParams, raw, "wake")
    if not p.text.strip():
        raise invalid("invalid wake params: text: must not be blank", field="text")
    return _cron(ctx).wake(p.text, p.mode)


async def last_heartbeat(ctx: CallContext, raw: Any) -> dict[str, Any] | None:
    parse_params(NoParams, raw, "last-heartbeat")
    return _cron(ctx).heartbeats.last


async def set_heartbeats(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(SetHeartbeatsParams, raw, "set-heartbeats")
    _cron(ctx).heartbeats.set_enabled(p.enabled)
    return {"ok": True, "enabled": p.enabled}


METHODS = (
    CoreMethod("cron.list", READ, cron_list),
    CoreMethod("cron.status", READ, cron_status),
    CoreMethod("cron.get", READ, cron_get),
    CoreMethod("cron.runs", READ, cron_runs),
    CoreMethod("cron.add", ADMIN, cron_add),
    CoreMethod("cron.update", ADMIN, cron_update),
    CoreMethod("cron.remove", ADMIN, cron_remove),
    CoreMethod("cron.run", ADMIN, cron_run),
    CoreMethod("wake", WRITE, wake),
    CoreMethod("last-heartbeat", READ, last_heartbeat),
    CoreMethod("set-heartbeats", ADMIN, set_heartbeats),
)
