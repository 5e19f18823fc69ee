"""Benchmark: what fanning engine events out to other replicas costs a turn, and how fast they
arrive there.

Two runtimes (replicas A and B, in this one process) share one PostgreSQL database (a throwaway
local cluster, fsync off, or ``--url``); turns run on A (bundled plugins, echo provider, no
delay). Measured, in alternating rounds so that load on the shared machine hits every variant
alike:

- ``turn_p50_ms``: sequential turns of one conversation on SQLite (no fan-out exists there), on
  PostgreSQL with the fan-out switched off on A, and with it on;
- ``statements_per_turn`` / ``commits_per_turn`` on PostgreSQL with and without the fan-out
  (each statement is one round trip: the figure that carries to a database across a network);
- ``rows_per_turn``: events-log rows A wrote per turn (a turn's events are coalesced);
- ``remote_ms`` (B started only for this part): from the end of a turn on A (its lifecycle end
  event) to the same event on B's bus (median and p99): the doorbell's latency, not the polling
  fallback's.

Prints one JSON document and a ``verdict:`` line. Budgets: the fan-out adds at most
:data:`ADDED_P50_BUDGET_MS` to a turn's p50 and at most :data:`ADDED_TRIPS_BUDGET` statements
per turn, an event reaches the other replica within :data:`REMOTE_BUDGET_MS` (median), and
SQLite has no export on its bus. Run: ``.venv/bin/python bench/fanout.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from pgstore import Counter, settings_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.postgres

from clawgate.agents.bus import RunEvent  # noqa: E402
from clawgate.agents.turn import Submission  # noqa: E402
from clawgate.runtime import Runtime  # noqa: E402

ADDED_P50_BUDGET_MS = 1.0
ADDED_TRIPS_BUDGET = 1.0
REMOTE_BUDGET_MS = 100.0


async def turns(runtime: Runtime, n: int, key: str) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        result = await runtime.engine.run(Submission(f"message {i}", session_key=key))
        samples.append(time.perf_counter() - started)
        if result.status != "ok":
            raise RuntimeError(f"turn failed: {result}")
    return samples


async def remote_latency(a: Runtime, b: Runtime, n: int) -> list[float]:
    """Seconds from a turn's end on A to its end event on B's bus."""
    sub = b.engine.bus.subscribe(maxsize=65_536)
    samples = []
    try:
        for i in range(n):
            result = await a.engine.run(Submission(f"remote {i}", session_key="remote"))
            ended = time.perf_counter()
            while True:
                event = await asyncio.wait_for(sub.get(), 10)
                if isinstance(event, RunEvent) and event.run_id == result.run_id \
                        and event.stream == "lifecycle" and event.data.get("phase") == "end":
                    break
            samples.append(time.perf_counter() - ended)
    finally:
        sub.close()
    return samples


async def main(quick: bool, url: str | None) -> None:
    per_round, rounds, remote_n = (100, 4, 50) if quick else (250, 8, 200)
    root = Path(tempfile.mkdtemp(prefix="clawgate-bench-fanout-"))
    cluster = None
    if url is None:
        from tests.support.postgres import Cluster

        cluster = Cluster()
        cluster.start()
        cluster.sql("CREATE DATABASE bench")
        url = cluster.url("bench")
    samples: dict[str, list[float]] = {"sqlite": [], "postgres_off": [], "postgres_on": []}
    trips: dict[str, list[int]] = {"off": [0, 0, 0], "on": [0, 0, 0]}  # statements, commits, turns
    rows = 0
    counter = Counter()
    try:
        async with Runtime.open(settings_for(root / "sqlite", None), cron=True) as lite, \
                Runtime.open(settings_for(root / "a", url), cron=True) as a:
            assert lite.fanout is None and lite.engine.bus.export is None
            fanout = a.fanout
            assert fanout is not None and a.engine.bus.export is not None
            export = a.engine.bus.export
            for runtime in (lite, a):
                await turns(runtime, 20, "warm-up")
            with counter.installed():
                for r in range(rounds):
                    samples["sqlite"] += await turns(lite, per_round, "conversation")
                    # Alternate which goes first: the conversation grows as the rounds go.
                    for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                        a.engine.bus.export = export if mode == "on" else None
                        await asyncio.sleep(0.1)  # the last round's rows are written
                        before = (counter.statements, counter.transactions,
                                  a.metrics.get("events_fanout_rows_total"))
                        samples[f"postgres_{mode}"] += await turns(a, per_round, "conversation")
                        await asyncio.sleep(0.1)
                        trips[mode][0] += counter.statements - before[0]
                        trips[mode][1] += counter.transactions - before[1]
                        trips[mode][2] += per_round
                        if mode == "on":
                            rows += int(a.metrics.get("events_fanout_rows_total") - before[2])
            a.engine.bus.export = export
            # B joins only now: in this one process its reading would be counted as A's cost,
            # where in a deployment it is another process's.
            async with Runtime.open(settings_for(root / "b", url), cron=True) as b:
                remote = await remote_latency(a, b, remote_n)
    finally:
        if cluster is not None:
            cluster.stop()

    def p50(name: str) -> float:
        return round(common.percentile(samples[name], 50) * 1000, 3)

    per_turn = {mode: {"statements_per_turn": round(s / t, 2), "commits_per_turn": round(c / t, 2)}
                for mode, (s, c, t) in trips.items()}
    added_ms = round(p50("postgres_on") - p50("postgres_off"), 3)
    added_trips = round(per_turn["on"]["statements_per_turn"]
                        - per_turn["off"]["statements_per_turn"], 2)
    remote_ms = {"p50": round(common.percentile(remote, 50) * 1000, 2),
                 "p99": round(common.percentile(remote, 99) * 1000, 2), "n": len(remote)}
    budgets = [
        common.Budget("fan-out added turn p50", f"<= {ADDED_P50_BUDGET_MS} ms", added_ms,
                      added_ms <= ADDED_P50_BUDGET_MS),
        common.Budget("fan-out added statements per turn", f"<= {ADDED_TRIPS_BUDGET}",
                      added_trips, added_trips <= ADDED_TRIPS_BUDGET),
        common.Budget("event on the other replica (median)", f"< {REMOTE_BUDGET_MS} ms",
                      remote_ms["p50"], remote_ms["p50"] < REMOTE_BUDGET_MS),
        common.Budget("sqlite bus export", "none", "none", True),
    ]
    document: dict[str, Any] = {
        "benchmark": "fanout", "quick": quick, "environment": common.environment(),
        "turns_per_variant": rounds * per_round,
        "turn_p50_ms": {name: p50(name) for name in samples},
        "turn_p99_ms": {name: round(common.percentile(s, 99) * 1000, 3)
                        for name, s in samples.items()},
        "postgres_round_trips": per_turn, "rows_per_turn": round(rows / trips["on"][2], 3),
        "added_p50_ms": added_ms, "added_statements_per_turn": added_trips,
        "remote_ms": remote_ms,
    }
    common.report(document, budgets)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns")
    parser.add_argument("--url", help="a PostgreSQL database to use (default: a local cluster)")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.url))
