"""Usage reports: ``usage.status``, ``usage.cost`` and ``sessions.usage``, over the store's
reports from the runs table (:mod:`clawgate.sessions.usage`: tokens and costs per run; runs of
models without prices count in ``missingCostEntries``).

Params follow OpenClaw's: ``startDate``..``endDate`` or a ``range`` (default: the last 30
days); days are UTC days (``mode``, ``timeZone`` and ``utcOffset`` are checked as OpenClaw
checks them, and the store buckets by UTC day). ``usage.status`` reports providers' quota
windows, which no clawgate provider exposes: an empty list.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from clawgate.gateway.protocol import NoParams, Params, Tolerant, invalid, parse_params
from clawgate.gateway.rpc import READ, CallContext, CoreMethod
from clawgate.sessions.usage import MAX_DAYS, MAX_SESSIONS, date_range
from clawgate.types import now_ms

Day = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
RANGES = {"7d": 7, "30d": 30, "90d": 90, "1y": 365}
DEFAULT_DAYS = 30
OFFSET = re.compile(r"UTC([+-])(\d{1,2})(?::([0-5]\d))?")


class Window(Tolerant):
    """The date window every usage method takes (OpenClaw's ``usage.cost`` takes any object)."""

    startDate: str | None = None
    endDate: str | None = None
    mode: Literal["utc", "gateway", "specific"] | None = None
    range: Literal["7d", "30d", "90d", "1y", "all"] | None = None
    utcOffset: str | None = None
    timeZone: str | None = None
    agentId: str | None = None
    agentScope: Literal["all"] | None = None


class SessionsUsageParams(Params):
    key: Annotated[str, Field(min_length=1)] | None = None
    agentId: Annotated[str, Field(min_length=1)] | None = None
    agentScope: Literal["all"] | None = None
    creatorKey: Annotated[str, Field(min_length=1)] | None = None
    startDate: Day | None = None
    endDate: Day | None = None
    mode: Literal["utc", "gateway", "specific"] | None = None
    range: Literal["7d", "30d", "90d", "1y", "all"] | None = None
    groupBy: Literal["instance", "family"] | None = None
    includeHistorical: bool = False
    utcOffset: Annotated[str, Field(pattern=r"^UTC[+-]\d{1,2}(?::[0-5]\d)?$")] | None = None
    timeZone: Annotated[str, Field(min_length=1)] | None = None
    limit: int = Field(default=50, ge=1)
    includeContextWeight: bool = False


# -- the window ------------------------------------------------------------------------------

def check_zone(p: Window | SessionsUsageParams) -> None:
    """Refuse a ``timeZone``/``utcOffset`` OpenClaw would refuse (days are UTC here)."""
    if p.mode != "specific":
        return
    if p.timeZone:
        try:
            ZoneInfo(p.timeZone)
            return
        except (ZoneInfoNotFoundError, ValueError):
            if not p.utcOffset:
                raise invalid("invalid timeZone: expected a valid IANA time zone") from None
    if p.utcOffset:
        offset = OFFSET.fullmatch(p.utcOffset.strip())
        total = None if offset is None else \
            (int(offset[2]) * 60 + int(offset[3] or 0)) * (1 if offset[1] == "+" else -1)
        if total is None or not -720 <= total <= 840:
            raise invalid("invalid utcOffset: expected UTC-12:00 through UTC+14:00")


def window(p: Window | SessionsUsageParams) -> tuple[int, int]:
    """[start, end) in epoch ms: UTC days ``startDate``..``endDate`` (both or neither) or the
    ``range`` up to today (default: the last 30 days)."""
    check_zone(p)
    if (p.startDate is None) != (p.endDate is None):
        raise invalid("startDate and endDate must be provided together")
    days = MAX_DAYS if p.range == "all" else RANGES.get(p.range or "", DEFAULT_DAYS)
    return date_range(p.startDate, p.endDate, None if p.startDate else days, now_ms=now_ms(),
                      method="usage")


def agent_scope(ctx: CallContext, agent_id: str | None, scope: str | None) -> None:
    """Check the agent params (an unknown agent is an error). Reports cover every agent: the
    store's usage reports are not split by agent yet (``byAgent`` in the aggregates is)."""
    if scope == "all" and agent_id:
        raise invalid("agentScope=all cannot be combined with agentId")
    if agent_id:
        ctx.gateway.runtime.engine.roster.get(agent_id)


# -- methods ---------------------------------------------------------------------------------

async def usage_status(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "usage.status")
    return {"updatedAt": now_ms(), "providers": []}


async def usage_cost(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Tokens and costs per UTC day over the window, and their totals."""
    p = parse_params(Window, raw, "usage.cost")
    start, end = window(p)
    agent_scope(ctx, p.agentId, p.agentScope)
    return await ctx.gateway.runtime.store.usage_cost(start, end)


async def sessions_usage(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Usage per session over the window (most expensive first, ``limit`` of them) and the
    aggregates (by model, provider, agent, channel, day)."""
    p = parse_params(SessionsUsageParams, raw, "sessions.usage")
    if p.agentScope == "all" and (p.agentId or p.key):
        raise invalid("agentScope=all cannot be combined with key or agentId")
    start, end = window(p)
    key = None
    if p.key is not None:
        _, key = ctx.gateway.runtime.engine.session_key(p.key, p.agentId)
    else:
        agent_scope(ctx, p.agentId, p.agentScope)
    store = ctx.gateway.runtime.store
    report = await store.sessions_usage(start, end, key=key, limit=min(p.limit, MAX_SESSIONS))
    sessions = report["sessions"]
    details = await store.session_usage_details([e["key"] for e in sessions], start, end)
    for entry in sessions:
        entry["usage"].update(details.get(entry["key"], {}))
    daily = (await store.usage_cost(start, end))["daily"] if key is None else []
    return {**report, "aggregates": {**report["aggregates"], **extras(sessions, daily)},
            "creatorOptions": []}


def extras(sessions: list[dict[str, Any]], daily: list[dict[str, Any]]) -> dict[str, Any]:
    """The parts of OpenClaw's usage aggregates the store's report leaves to the caller:
    session and message counts (of the sessions shown), per-day totals (``costDaily``), and
    the empty lists of what clawgate does not record (tool stats, creators, latency)."""
    counts = {"total": 0, "user": 0, "assistant": 0, "toolCalls": 0, "toolResults": 0,
              "errors": 0}
    for entry in sessions:
        for name, value in entry["usage"].get("messageCounts", {}).items():
            counts[name] = counts.get(name, 0) + value
    return {"sessionCount": len(sessions), "messages": counts,
            "tools": {"totalCalls": counts["toolCalls"], "uniqueTools": 0, "tools": []},
            "byCreator": [], "costDaily": daily, "dailyLatency": [], "modelDaily": []}


METHODS = (
    CoreMethod("usage.status", READ, usage_status),
    CoreMethod("usage.cost", READ, usage_cost),
    CoreMethod("sessions.usage", READ, sessions_usage),
)
