"""Token and cost reports from the runs table: ``usage.cost`` and ``sessions.usage``.

Each ended run stores its usage (``{"input", "output", "total", "cache_read", "cache_write",
"cost": {...}}``, input counting the cached tokens) and ``cost_usd``; these jobs sum them in SQL
over a date range (UTC days of ``ended_at``). The wire shapes follow OpenClaw's
``CostUsageSummary`` and ``SessionsUsageResult``: token totals split as OpenClaw counts them
(``input`` without the cached parts), costs by token kind, and ``missingCostEntries`` for runs
whose model had no prices.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict

from clawgate.errors import InvalidRequest

DAY_MS = 86_400_000
DEFAULT_DAYS = 30
MAX_DAYS = 3660
MAX_SESSIONS = 1000


class UsageTotals(TypedDict):
    """OpenClaw's CostUsageTotals."""

    input: int
    output: int
    cacheRead: int
    cacheWrite: int
    totalTokens: int
    totalCost: float
    inputCost: float
    outputCost: float
    cacheReadCost: float
    cacheWriteCost: float
    missingCostEntries: int


# One aggregate row: runs, the five token sums, the five cost sums, runs without a price,
# runs that ended in error.
_SUMS = """
    COUNT(*),
    COALESCE(SUM(json_extract(r.usage, '$.input')), 0),
    COALESCE(SUM(json_extract(r.usage, '$.output')), 0),
    COALESCE(SUM(json_extract(r.usage, '$.cache_read')), 0),
    COALESCE(SUM(json_extract(r.usage, '$.cache_write')), 0),
    COALESCE(SUM(r.cost_usd), 0),
    COALESCE(SUM(json_extract(r.usage, '$.cost.input')), 0),
    COALESCE(SUM(json_extract(r.usage, '$.cost.output')), 0),
    COALESCE(SUM(json_extract(r.usage, '$.cost.cache_read')), 0),
    COALESCE(SUM(json_extract(r.usage, '$.cost.cache_write')), 0),
    COALESCE(SUM(CASE WHEN r.cost_usd IS NULL THEN 1 ELSE 0 END), 0),
    COALESCE(SUM(CASE WHEN r.status = 'error' THEN 1 ELSE 0 END), 0)
"""
_COUNTED = ("r.ended_at >= ? AND r.ended_at < ? AND r.usage IS NOT NULL "
            "AND json_extract(r.usage, '$.total') > 0")


def date_range(start_date: str | None = None, end_date: str | None = None,
               days: int | None = None, *, now_ms: int,
               method: str = "usage.cost") -> tuple[int, int]:
    """[start, end) in epoch ms for inclusive UTC dates ``YYYY-MM-DD``; by default the last
    ``days`` (30) days up to today."""
    today = datetime.fromtimestamp(now_ms / 1000, tz=UTC).date()
    try:
        end = date.fromisoformat(end_date) if end_date else today
        if start_date:
            start = date.fromisoformat(start_date)
        else:
            span = DEFAULT_DAYS if days is None else days
            if isinstance(span, bool) or not isinstance(span, int) or not 1 <= span <= MAX_DAYS:
                raise InvalidRequest(f"days must be an integer from 1 to {MAX_DAYS}",
                                     method=method)
            start = end - timedelta(days=span - 1)
    except ValueError:
        raise InvalidRequest("startDate and endDate must be dates like 2026-01-31",
                             method=method) from None
    if start > end or (end - start).days >= MAX_DAYS:
        raise InvalidRequest(f"the date range must be 1 to {MAX_DAYS} days, start first",
                             method=method)
    return _ms(start), _ms(end + timedelta(days=1))


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()


def totals(row: tuple[Any, ...] | sqlite3.Row | None) -> UsageTotals:
    """UsageTotals from one ``_SUMS`` row (starting at its run count)."""
    values = tuple(row) if row is not None else (0,) * 12
    _, inp, out, read, write, cost, c_in, c_out, c_read, c_write, missing, _ = values[:12]
    return UsageTotals(
        input=max(0, int(inp) - int(read) - int(write)), output=int(out), cacheRead=int(read),
        cacheWrite=int(write), totalTokens=int(inp) + int(out), totalCost=_usd(cost),
        inputCost=_usd(c_in), outputCost=_usd(c_out), cacheReadCost=_usd(c_read),
        cacheWriteCost=_usd(c_write), missingCostEntries=int(missing))


def _usd(value: Any) -> float:
    return round(float(value or 0), 9)


def cost_summary(c: sqlite3.Connection, start_ms: int, end_ms: int,
                 now_ms: int) -> dict[str, Any]:
    """``usage.cost``: ``{updatedAt, days, daily: [UsageTotals + date], totals}``."""
    rows = c.execute(
        f"SELECT r.ended_at / {DAY_MS} AS day, {_SUMS} FROM runs r WHERE {_COUNTED} "
        "GROUP BY day ORDER BY day", (start_ms, end_ms)).fetchall()
    total = c.execute(f"SELECT {_SUMS} FROM runs r WHERE {_COUNTED}",
                      (start_ms, end_ms)).fetchone()
    daily = [{"date": _day(int(r[0]) * DAY_MS), **totals(tuple(r)[1:])} for r in rows]
    return {"updatedAt": now_ms, "days": (end_ms - start_ms) // DAY_MS, "daily": daily,
            "totals": totals(total)}


def sessions_usage(c: sqlite3.Connection, start_ms: int, end_ms: int, now_ms: int, *,
                   key: str | None = None, limit: int = 100) -> dict[str, Any]:
    """``sessions.usage``: per-session totals (most expensive first, then most tokens), the
    overall totals, and aggregates by model, provider, agent, channel and day."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_SESSIONS:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_SESSIONS}",
                             method="sessions.usage")
    where = _COUNTED if key is None else f"{_COUNTED} AND r.key = ?"
    params: list[Any] = [start_ms, end_ms] if key is None else [start_ms, end_ms, key]
    join = "FROM runs r LEFT JOIN sessions s ON s.key = r.key"
    sessions = c.execute(
        f"SELECT r.key, s.label, s.session_id, s.updated_at, s.agent_id, s.channel, s.model, "
        f"s.model_provider, {_SUMS} {join} WHERE {where} GROUP BY r.key, s.key "
        "ORDER BY COALESCE(SUM(r.cost_usd), 0) DESC, "
        "SUM(json_extract(r.usage, '$.total')) DESC, r.key LIMIT ?",
        (*params, limit)).fetchall()
    entries = []
    for r in sessions:
        entry: dict[str, Any] = {"key": r[0]}
        for name, value in zip(("label", "sessionId", "updatedAt", "agentId", "channel",
                                "model", "modelProvider"), tuple(r)[1:8], strict=True):
            if value is not None:
                entry[name] = value
        entry["usage"] = {**totals(tuple(r)[8:]), "runs": int(r[8]), "errors": int(r[19])}
        entries.append(entry)

    def grouped(columns: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in c.execute(
            f"SELECT {columns}, {_SUMS} {join} WHERE {where} GROUP BY {columns} "
            f"ORDER BY {columns}", params).fetchall()]

    by_model = [{"provider": r[0], "model": r[1], "count": int(r[2]), "totals": totals(r[2:])}
                for r in grouped("r.provider, r.model")]
    by_provider = [{"provider": r[0], "count": int(r[1]), "totals": totals(r[1:])}
                   for r in grouped("r.provider")]
    by_agent = [{"agentId": r[0], "totals": totals(r[1:])} for r in grouped("s.agent_id")]
    by_channel = [{"channel": r[0], "totals": totals(r[1:])} for r in grouped("s.channel")
                  if r[0] is not None]
    daily = [{"date": _day(int(r[0]) * DAY_MS), "tokens": t["totalTokens"],
              "cost": t["totalCost"], "runs": int(r[1]), "errors": int(r[12])}
             for r in grouped(f"r.ended_at / {DAY_MS}") for t in [totals(r[1:])]]
    total = c.execute(f"SELECT {_SUMS} {join} WHERE {where}", params).fetchone()
    return {"updatedAt": now_ms, "startDate": _day(start_ms), "endDate": _day(end_ms - 1),
            "sessions": entries, "totals": totals(total),
            "aggregates": {"byModel": by_model, "byProvider": by_provider, "byAgent": by_agent,
                           "byChannel": by_channel, "daily": daily}}


def session_details(c: sqlite3.Connection, keys: Sequence[str], start_ms: int,
                    end_ms: int) -> dict[str, dict[str, Any]]:
    """Per session of ``keys``, what OpenClaw's usage view shows of one session besides its
    totals: ``firstActivity``/``lastActivity``/``durationMs`` (its counted runs' span),
    ``activityDates``, ``modelUsage`` (totals per provider and model), ``dailyBreakdown``
    (tokens and cost per UTC day) and ``messageCounts`` (its transcript messages in the
    window, archived ones included)."""
    if not keys:
        return {}
    marks = ", ".join("?" for _ in keys)
    where = f"{_COUNTED} AND r.key IN ({marks})"
    params = (start_ms, end_ms, *keys)
    out: dict[str, dict[str, Any]] = {
        k: {"modelUsage": [], "dailyBreakdown": [], "activityDates": [],
            "messageCounts": {"total": 0, "user": 0, "assistant": 0, "toolCalls": 0,
                              "toolResults": 0, "errors": 0}} for k in keys}
    for key, first, last in c.execute(
            f"SELECT r.key, MIN(r.started_at), MAX(r.ended_at) FROM runs r WHERE {where} "
            "GROUP BY r.key", params):
        out[key].update(firstActivity=int(first), lastActivity=int(last),
                        durationMs=max(0, int(last) - int(first)))
    for r in c.execute(f"SELECT r.key, r.provider, r.model, {_SUMS} FROM runs r WHERE {where} "
                       "GROUP BY r.key, r.provider, r.model ORDER BY r.provider, r.model",
                       params):
        out[r[0]]["modelUsage"].append({"provider": r[1], "model": r[2], "count": int(r[3]),
                                        "totals": totals(tuple(r)[3:])})
    for r in c.execute(f"SELECT r.key, r.ended_at / {DAY_MS} AS day, {_SUMS} FROM runs r "
                       f"WHERE {where} GROUP BY r.key, day ORDER BY day", params):
        day, sums = _day(int(r[1]) * DAY_MS), totals(tuple(r)[2:])
        out[r[0]]["dailyBreakdown"].append({"date": day, "tokens": sums["totalTokens"],
                                            "cost": sums["totalCost"]})
        out[r[0]]["activityDates"].append(day)
    for key, role, count, calls, errors in c.execute(
            "SELECT key, role, COUNT(*), SUM(CASE WHEN tool_calls IS NOT NULL THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN stop_reason IN ('error', 'timeout', 'aborted') THEN 1 ELSE 0 END) "
            "FROM messages "
            f"WHERE key IN ({marks}) AND created_at >= ? AND created_at < ? "
            "GROUP BY key, role", (*keys, start_ms, end_ms)):
        counts = out[key]["messageCounts"]
        if role == "user":
            counts["user"] = int(count)
        elif role == "assistant":
            counts.update(assistant=int(count), toolCalls=int(calls or 0),
                          errors=int(errors or 0))
        elif role == "tool":
            counts["toolResults"] = int(count)
        counts["total"] = counts["user"] + counts["assistant"] + counts["toolResults"]
    return out
