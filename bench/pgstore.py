"""Benchmark: the session store on PostgreSQL against SQLite, one gateway process.

The same engine (bundled plugins, echo provider with no delay) runs on each backend; measured:

- ``turn``: sequential turns of one conversation, p50 and p99 of ``engine.run``;
- ``throughput``: turns per second with 16 sessions at once;
- ``round_trips``: SQL statements the store sends per turn (the figure that carries to bigger
  machines and to a database across a network: each is one round trip on PostgreSQL) and
  writer transactions per turn;
- ``sessions_list``: a page of 50 among N sessions (median of 50 calls).

PostgreSQL is ``--url`` or, by default, a throwaway local cluster (the tests' fixture, fsync
off: the figures show the store's own cost, not the disk's). Prints one JSON document and a
``verdict:`` line; budgets: the PostgreSQL ``sessions.list`` budget of issue 17 (< 10 ms) and
the per-turn overhead budget of DESIGN.md (p50 < 3 ms) for each backend (reported, not
raised). Run: ``.venv/bin/python bench/pgstore.py [--quick] [--url postgresql://...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import common

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.postgres

from clawgate import config  # noqa: E402
from clawgate.agents.turn import Submission  # noqa: E402
from clawgate.runtime import Runtime  # noqa: E402
from clawgate.sessions import postgres  # noqa: E402
from clawgate.sessions.listing import ListQuery  # noqa: E402

LIST_BUDGET_MS = 10.0
OVERHEAD_BUDGET_MS = 3.0


class Counter:
    """Counts statements the PostgreSQL adapter sends (bench instrumentation only)."""

    def __init__(self) -> None:
        self.statements = 0
        self.transactions = 0

    @contextmanager
    def installed(self) -> Iterator[None]:
        original = postgres.Connection.execute
        counter = self

        def execute(conn: postgres.Connection, sql: str, params: Any = None) -> Any:
            counter.statements += 1
            if sql == "COMMIT":
                counter.transactions += 1
            return original(conn, sql, params)

        postgres.Connection.execute = execute  # type: ignore[method-assign]
        try:
            yield
        finally:
            postgres.Connection.execute = original  # type: ignore[method-assign]


def settings_for(state: Path, location: str | None) -> config.Settings:
    data: dict[str, Any] = {"plugins": {"entries": {"echo": {"config": {"delay_ms": 0}}}},
                            "engine": {"max_concurrent": 32}}
    if location is not None:
        data["store"] = {"url": location}
    return config.Settings(config.parse(data), state_dir=state,
                           config_path=state / "clawgate.toml")


async def measure(state: Path, location: str | None, turns: int, sessions: int,
                  counter: Counter | None) -> dict[str, Any]:
    async with Runtime.open(settings_for(state, location)) as runtime:
        engine, store = runtime.engine, runtime.store
        for n in range(20):
            await engine.run(Submission(f"warm-up {n}", session_key="warmup"))
        samples = []
        before = (counter.statements, counter.transactions) if counter else (0, 0)
        for n in range(turns):
            started = time.perf_counter()
            result = await engine.run(Submission(f"message {n}", session_key="conversation"))
            samples.append(time.perf_counter() - started)
            if result.status != "ok":
                raise RuntimeError(f"turn failed: {result}")
        trips = None
        if counter is not None:
            trips = {"statements_per_turn": round((counter.statements - before[0]) / turns, 2),
                     "commits_per_turn": round((counter.transactions - before[1]) / turns, 2)}
        started = time.perf_counter()
        rounds = max(1, turns // 16)
        for r in range(rounds):
            await asyncio.gather(*(engine.run(Submission(f"r{r}", session_key=f"par-{s}"))
                                   for s in range(16)))
        rate = rounds * 16 / (time.perf_counter() - started)
        for n in range(sessions):
            await store.ensure(f"agent:main:s{n}", label=f"session {n}")
        lists = []
        for _ in range(50):
            started = time.perf_counter()
            page = await store.list_sessions(ListQuery(limit=50))
            lists.append(time.perf_counter() - started)
            assert len(page.rows) == 50
    return {"turn_p50_ms": round(common.percentile(samples, 50) * 1000, 3),
            "turn_p99_ms": round(common.percentile(samples, 99) * 1000, 3),
            "turns_per_s_16": round(rate, 1), "round_trips": trips,
            "sessions_list_ms": round(statistics.median(lists) * 1000, 3),
            "sessions": sessions}


async def main(quick: bool, url: str | None) -> None:
    turns, sessions = (200, 2_000) if quick else (1_000, 10_000)
    root = Path(tempfile.mkdtemp(prefix="clawgate-bench-pg-"))
    cluster = None
    if url is None:
        from tests.support.postgres import Cluster

        cluster = Cluster()
        cluster.start()
        cluster.sql("CREATE DATABASE bench")
        url = cluster.url("bench")
    try:
        sqlite = await measure(root / "sqlite", None, turns, sessions, None)
        counter = Counter()
        with counter.installed():
            pg = await measure(root / "pg", url, turns, sessions, counter)
    finally:
        if cluster is not None:
            cluster.stop()
    budgets = [
        common.Budget("postgres sessions.list page of 50", f"< {LIST_BUDGET_MS} ms",
                      pg["sessions_list_ms"], pg["sessions_list_ms"] < LIST_BUDGET_MS),
        common.Budget("sqlite turn p50 (echo, no delay)", f"< {OVERHEAD_BUDGET_MS} ms",
                      sqlite["turn_p50_ms"], sqlite["turn_p50_ms"] < OVERHEAD_BUDGET_MS),
        common.Budget("postgres turn p50 (echo, no delay)", f"< {OVERHEAD_BUDGET_MS} ms",
                      pg["turn_p50_ms"], pg["turn_p50_ms"] < OVERHEAD_BUDGET_MS),
    ]
    common.report({"benchmark": "pgstore", "quick": quick, "environment": common.environment(),
                   "postgres_url": postgres.redact(url) if cluster is None else "local cluster",
                   "sqlite": sqlite, "postgres": pg}, budgets)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns and sessions")
    parser.add_argument("--url", help="a PostgreSQL database to use (default: a local cluster)")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.url))
