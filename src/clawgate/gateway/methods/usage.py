"""Usage reports: ``usage.status``, ``usage.cost`` and ``sessions.usage``, from the token usage
the store keeps per run (:mod:`clawgate.sessions.usage`).

Days are calendar days in the zone the caller asks for (``mode``: ``utc`` by default,
``gateway`` for the gateway's local zone, ``specific`` with ``timeZone`` or ``utcOffset``), over
``startDate``..``endDate`` or a ``range`` (default: the last 30 days). Costs are 0 and every run
counts in ``missingCostEntries`` until model prices are known; tokens are exact.
``usage.status`` reports providers' quota windows, which no clawgate provider exposes: an empty
list.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from clawgate.gateway.protocol import NoParams, Params, Tolerant, invalid, parse_params
from clawgate.gateway.rpc import READ, CallContext, CoreMethod
from clawgate.sessions import keys
from clawgate.sessions.usage import Bucket, MessageCounts
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

def zone(p: Window | SessionsUsageParams) -> tzinfo:
    if p.mode == "gateway":
        return datetime.now().astimezone().tzinfo or UTC
    if p.mode != "specific":
        return UTC
    if p.timeZone:
        try:
            return ZoneInfo(p.timeZone)
        except (ZoneInfoNotFoundError, ValueError):
            if not p.utcOffset:
                raise invalid("invalid timeZone: expected a valid IANA time zone") from None
    if p.utcOffset:
        offset = OFFSET.fullmatch(p.utcOffset.strip())
        if offset is None:
            raise invalid("invalid utcOffset: expected UTC-12:00 through UTC+14:00")
        total = (int(offset[2]) * 60 + int(offset[3] or 0)) * (1 if offset[1] == "+" else -1)
        if not -720 <= total <= 840:
            raise invalid("invalid utcOffset: expected UTC-12:00 through UTC+14:00")
        return timezone(timedelta(minutes=total))
    return UTC


def _day(text: str, field: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise invalid(f"invalid {field}: expected a valid YYYY-MM-DD calendar date") from None


def window(p: Window | SessionsUsageParams) -> tuple[tzinfo, int, int]:
    """(zone, start ms, end ms) of the asked window, both ends inclusive."""
    tz = zone(p)
    if (p.startDate is None) != (p.endDate is None):
        raise invalid("startDate and endDate must be provided together")
    today = datetime.now(tz).date()
    if p.startDate is not None and p.endDate is not None:
        first, last = _day(p.startDate, "startDate"), _day(p.endDate, "endDate")
        if first > last:
            raise invalid("startDate must not be after endDate")
    elif p.range == "all":
        return tz, 0, _ms(today + timedelta(days=1), tz) - 1
    else:
        days = RANGES.get(p.range or "", DEFAULT_DAYS)
        first, last = today - timedelta(days=days - 1), today
    return tz, _ms(first, tz), _ms(last + timedelta(days=1), tz) - 1


def _ms(day: date, tz: tzinfo) -> int:
    return int(datetime.combine(day, time(), tz).timestamp() * 1000)


def _label(ms: int, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).date().isoformat()


# -- totals ----------------------------------------------------------------------------------

def totals(input_tokens: int = 0, output_tokens: int = 0, runs: int = 0) -> dict[str, Any]:
    """OpenClaw's cost-usage totals; cost fields stay 0 while prices are unknown."""
    return {"input": input_tokens, "output": output_tokens, "cacheRead": 0, "cacheWrite": 0,
            "totalTokens": input_tokens + output_tokens, "totalCost": 0, "inputCost": 0,
            "outputCost": 0, "cacheReadCost": 0, "cacheWriteCost": 0,
            "missingCostEntries": runs}


def add(into: dict[str, Any], b: Bucket) -> None:
    into["input"] += b.input
    into["output"] += b.output
    into["totalTokens"] += b.input + b.output
    into["missingCostEntries"] += b.runs


def agent_scope(ctx: CallContext, agent_id: str | None, scope: str | None) -> str | None:
    """The agent a report covers (the default one unless asked), or None for all."""
    if scope == "all":
        if agent_id:
            raise invalid("agentScope=all cannot be combined with agentId")
        return None
    return ctx.gateway.runtime.engine.roster.get(agent_id).id


# -- methods ---------------------------------------------------------------------------------

async def usage_status(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "usage.status")
    return {"updatedAt": now_ms(), "providers": []}


async def usage_cost(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Tokens per day over the window, and their totals."""
    p = parse_params(Window, raw, "usage.cost")
    tz, start, end = window(p)
    agent = agent_scope(ctx, p.agentId, p.agentScope)
    buckets = await ctx.gateway.runtime.store.usage.buckets(start, end, agent_id=agent)
    daily: dict[str, dict[str, Any]] = {}
    total = totals()
    for b in buckets:
        add(daily.setdefault(_label(b.start_ms, tz), totals()), b)
        add(total, b)
    days = (datetime.fromtimestamp(end / 1000, tz).date()
            - datetime.fromtimestamp(start / 1000, tz).date()).days + 1
    return {"updatedAt": now_ms(), "days": days,
            "daily": [{"date": d, **t} for d, t in sorted(daily.items())], "totals": total}


def session_usage(buckets: list[Bucket], counts: MessageCounts | None,
                  tz: tzinfo) -> dict[str, Any]:
    """One session's usage summary: totals, activity span, per-model and per-day splits."""
    out = totals()
    models: dict[tuple[str, str], dict[str, Any]] = {}
    days: dict[str, int] = defaultdict(int)
    for b in buckets:
        add(out, b)
        entry = models.setdefault((b.provider or "unknown", b.model or "unknown"),
                                  {"provider": b.provider or "unknown",
                                   "model": b.model or "unknown", "count": 0,
                                   "totals": totals()})
        entry["count"] += b.runs
        add(entry["totals"], b)
        days[_label(b.start_ms, tz)] += b.input + b.output
    first = min(b.first_ms for b in buckets)
    last = max(b.last_ms for b in buckets)
    out.update(firstActivity=first, lastActivity=last, durationMs=max(0, last - first),
               activityDates=sorted(days),
               modelUsage=sorted(models.values(), key=lambda m: -m["totals"]["totalTokens"]),
               dailyBreakdown=[{"date": d, "tokens": t, "cost": 0}
                               for d, t in sorted(days.items())],
               messageCounts=(counts or MessageCounts()).wire())
    return out


async def sessions_usage(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Usage per session over the window (newest activity first, ``limit`` of them) and the
    aggregates of all of them."""
    p = parse_params(SessionsUsageParams, raw, "sessions.usage")
    if p.agentScope == "all" and (p.agentId or p.key):
        raise invalid("agentScope=all cannot be combined with key or agentId")
    engine, store = ctx.gateway.runtime.engine, ctx.gateway.runtime.store
    tz, start, end = window(p)
    key = None
    agent = None
    if p.key is not None:
        _, key = engine.session_key(p.key, p.agentId)
    else:
        agent = agent_scope(ctx, p.agentId, p.agentScope)
    buckets = await store.usage.buckets(start, end, agent_id=agent, key=key)
    by_key: dict[str, list[Bucket]] = defaultdict(list)
    for b in buckets:
        by_key[b.key].append(b)
    order = sorted(by_key, key=lambda k: -max(b.last_ms for b in by_key[k]))
    shown = order[:p.limit]
    counts = await store.usage.messages(shown, start, end)
    sessions = []
    for k in shown:
        entry = await store.get(k)
        row: dict[str, Any] = {"key": k, "scope": "instance", "agentId": keys.agent_of(k),
                               "usage": session_usage(by_key[k], counts.get(k), tz),
                               "hasContextWeight": False}
        if entry is not None:
            row.update(label=entry.label, sessionId=entry.session_id, updatedAt=entry.updated_at,
                       channel=entry.channel, chatType=entry.chat_type, origin=entry.origin,
                       modelOverride=entry.model_override,
                       providerOverride=entry.provider_override,
                       modelProvider=entry.model_provider, model=entry.model)
        sessions.append({k2: v for k2, v in row.items() if v is not None})
    return {"updatedAt": now_ms(), "startDate": _label(start, tz), "endDate": _label(end, tz),
            "sessions": sessions, "totals": _sum(buckets),
            "aggregates": aggregates(buckets, by_key, counts, tz), "creatorOptions": []}


def _sum(buckets: list[Bucket]) -> dict[str, Any]:
    out = totals()
    for b in buckets:
        add(out, b)
    return out


def aggregates(buckets: list[Bucket], by_key: dict[str, list[Bucket]],
               counts: dict[str, MessageCounts], tz: tzinfo) -> dict[str, Any]:
    """OpenClaw's usage aggregates: by model, provider, agent, day (message counts cover the
    sessions shown)."""
    models: dict[tuple[str, str], dict[str, Any]] = {}
    providers: dict[str, dict[str, Any]] = {}
    agents: dict[str, dict[str, Any]] = {}
    daily: dict[str, dict[str, Any]] = {}
    model_daily: dict[tuple[str, str, str], dict[str, Any]] = {}
    cost_daily: dict[str, dict[str, Any]] = {}
    for b in buckets:
        provider, model = b.provider or "unknown", b.model or "unknown"
        day = _label(b.start_ms, tz)
        m = models.setdefault((provider, model), {"provider": provider, "model": model,
                                                  "count": 0, "totals": totals()})
        m["count"] += b.runs
        add(m["totals"], b)
        pr = providers.setdefault(provider, {"provider": provider, "count": 0,
                                             "totals": totals()})
        pr["count"] += b.runs
        add(pr["totals"], b)
        add(agents.setdefault(keys.agent_of(b.key) or "unknown", totals()), b)
        d = daily.setdefault(day, {"date": day, "tokens": 0, "cost": 0, "messages": 0,
                                   "toolCalls": 0, "errors": 0})
        d["tokens"] += b.input + b.output
        d["errors"] += b.errors
        add(cost_daily.setdefault(day, totals()), b)
        md = model_daily.setdefault((day, provider, model), {
            "date": day, "provider": provider, "model": model, "tokens": 0, "cost": 0,
            "count": 0})
        md["tokens"] += b.input + b.output
        md["count"] += b.runs
    messages = MessageCounts()
    for c in counts.values():
        messages = MessageCounts(messages.user + c.user, messages.assistant + c.assistant,
                                 messages.tool_calls + c.tool_calls,
                                 messages.tool_results + c.tool_results,
                                 messages.errors + c.errors)

    def by_tokens(entry: dict[str, Any]) -> int:
        return -int(entry["totals"]["totalTokens"])

    return {
        "sessionCount": len(by_key), "messages": messages.wire(),
        "tools": {"totalCalls": messages.tool_calls, "uniqueTools": 0, "tools": []},
        "byModel": sorted(models.values(), key=by_tokens),
        "byProvider": sorted(providers.values(), key=by_tokens),
        "byAgent": [{"agentId": a, "totals": t} for a, t in sorted(agents.items())],
        "byChannel": [], "byCreator": [],
        "costDaily": [{"date": d, **t} for d, t in sorted(cost_daily.items())],
        "dailyLatency": [], "modelDaily": sorted(model_daily.values(),
                                                 key=lambda e: (e["date"], -e["tokens"])),
        "daily": [daily[d] for d in sorted(daily)],
    }


METHODS = (
    CoreMethod("usage.status", READ, usage_status),
    CoreMethod("usage.cost", READ, usage_cost),
    CoreMethod("sessions.usage", READ, sessions_usage),
)
