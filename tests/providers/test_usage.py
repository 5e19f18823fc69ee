"""usage.cost and sessions.usage from stored runs: days, totals split as OpenClaw counts them,
runs without prices, aggregates, and the date range parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawgate import InvalidRequest
from clawgate.sessions.store import SessionStore
from clawgate.sessions.usage import DAY_MS, date_range

pytestmark = pytest.mark.anyio

DAY0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class Clock:
    def __init__(self) -> None:
        self.now = DAY0 + 3_600_000

    def __call__(self) -> int:
        return self.now


async def run(store: SessionStore, clock: Clock, run_id: str, key: str, *,
              usage: dict, cost: float | None, model: str = "m", provider: str = "p",
              status: str = "ok") -> None:
    await store.begin_run(run_id, key, [{"role": "user", "content": run_id}])
    await store.complete_run(run_id, key, [{"role": "assistant", "content": "ok"}],
                             status=status, usage=usage, cost=cost, model=model,  # type: ignore[arg-type]
                             provider=provider)


def usage(inp: int, out: int, read: int = 0, write: int = 0, cost: dict | None = None) -> dict:
    record = {"input": inp, "output": out, "total": inp + out, "cache_read": read,
              "cache_write": write}
    if cost is not None:
        record["cost"] = cost
    return record


async def test_reports_over_days_sessions_and_models(tmp_path: Path) -> None:
    clock = Clock()
    async with SessionStore(tmp_path / "db.sqlite", clock=clock) as store:
        for key, agent, channel in (("agent:main:a", "main", "slack"),
                                    ("agent:ops:b", "ops", None)):
            await store.ensure(key, agent_id=agent, **({"channel": channel} if channel else {}))
        await run(store, clock, "r1", "agent:main:a", usage=usage(1000, 100, read=600, write=200,
                  cost={"input": 0.0006, "output": 0.0015, "cache_read": 0.00018,
                        "cache_write": 0.00075, "total": 0.00303}), cost=0.00303)
        clock.now += DAY_MS  # the next day
        await run(store, clock, "r2", "agent:main:a", usage=usage(50, 10), cost=None,
                  model="free", status="error")
        await run(store, clock, "r3", "agent:ops:b", usage=usage(10, 5, cost={
            "input": 0.01, "output": 0.02, "cache_read": 0, "cache_write": 0, "total": 0.03}),
            cost=0.03, provider="q")
        await run(store, clock, "r4", "agent:ops:b", usage=usage(0, 0), cost=None)  # not counted

        start, end = date_range("2026-01-01", "2026-01-02", now_ms=clock.now)
        summary = await store.usage_cost(start, end)
        assert summary["days"] == 2 and [d["date"] for d in summary["daily"]] == [
            "2026-01-01", "2026-01-02"]
        first = summary["daily"][0]
        # OpenClaw counts input without the cached parts; totalTokens is everything.
        assert (first["input"], first["cacheRead"], first["cacheWrite"], first["output"]) == (
            200, 600, 200, 100)
        assert first["totalTokens"] == 1100 and first["totalCost"] == pytest.approx(0.00303)
        assert first["cacheWriteCost"] == pytest.approx(0.00075)
        totals = summary["totals"]
        assert totals["totalCost"] == pytest.approx(0.03303)
        assert totals["missingCostEntries"] == 1 and totals["output"] == 115

        report = await store.sessions_usage(start, end)
        assert [s["key"] for s in report["sessions"]] == ["agent:ops:b", "agent:main:a"]
        a = report["sessions"][1]
        assert (a["agentId"], a["channel"], a["usage"]["runs"], a["usage"]["errors"]) == (
            "main", "slack", 2, 1)
        aggregates = report["aggregates"]
        assert [(m["provider"], m["model"], m["count"]) for m in aggregates["byModel"]] == [
            ("p", "free", 1), ("p", "m", 1), ("q", "m", 1)]
        assert [p["provider"] for p in aggregates["byProvider"]] == ["p", "q"]
        assert [b["agentId"] for b in aggregates["byAgent"]] == ["main", "ops"]
        assert [c["channel"] for c in aggregates["byChannel"]] == ["slack"]
        assert [(d["date"], d["runs"], d["errors"]) for d in aggregates["daily"]] == [
            ("2026-01-01", 1, 0), ("2026-01-02", 2, 1)]
        assert report["totals"] == totals
        assert (report["startDate"], report["endDate"]) == ("2026-01-01", "2026-01-02")

        only = await store.sessions_usage(start, end, key="agent:main:a", limit=1)
        assert [s["key"] for s in only["sessions"]] == ["agent:main:a"]
        assert only["totals"]["totalCost"] == pytest.approx(0.00303)

        day_two = await store.usage_cost(*date_range("2026-01-02", "2026-01-02",
                                                     now_ms=clock.now))
        assert day_two["totals"]["output"] == 15


def test_date_range_defaults_and_errors() -> None:
    now = DAY0 + 5 * DAY_MS + 1234
    assert date_range(now_ms=now) == (DAY0 + 6 * DAY_MS - 30 * DAY_MS, DAY0 + 6 * DAY_MS)
    assert date_range(days=1, now_ms=now) == (DAY0 + 5 * DAY_MS, DAY0 + 6 * DAY_MS)
    with pytest.raises(InvalidRequest, match="dates like"):
        date_range("yesterday", now_ms=now)
    with pytest.raises(InvalidRequest, match="start first"):
        date_range("2026-02-01", "2026-01-01", now_ms=now)
    with pytest.raises(InvalidRequest, match="days must be"):
        date_range(days=0, now_ms=now)
