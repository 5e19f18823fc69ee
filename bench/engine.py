"""Benchmark: the agent engine's own cost, over an offline provider with a fixed latency.

Everything runs in-process on a real plugin host (bundled plugins from disk) and a real SQLite
store in a temporary directory; the echo provider stands in for the model, with ``delay_ms``
of simulated latency before its first token. Measured:

- ``overhead``: wall time of ``engine.run`` minus the provider's configured delay, over
  sequential turns of one conversation, with delay 0 and 50 ms (p50, p99). The time asyncio
  itself overshoots a 50 ms sleep is reported alongside (it is counted as overhead);
- ``concurrent_4x4``: 4 turns on 4 sessions at once with a 500 ms provider (wall time);
- ``store``: single-message appends per second (sequential and 32 writers at once) and
  transcript reads per second (20-message transcripts);
- ``sessions_list``: a page of 50 among 1,000 / 5,000 / 10,000 sessions, median idle and median
  while 32 turns (50 ms provider) run, sampled in alternating rounds, and their ratio;
- ``memory``: resident memory before and after N turns (after a warm-up), with the growth
  after every 1,000 turns (a leak keeps climbing; caches level off);
- ``counters``: plugin metadata scans and request-path loads before and after all of it.

It prints one JSON document, then a ``verdict:`` line comparing the figures with the budgets
in DESIGN.md. Run: ``.venv/bin/python bench/engine.py [--quick]`` (``--quick``: fewer turns,
under a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import common
from clawgate import config
from clawgate.agents.engine import Engine
from clawgate.agents.turn import Submission
from clawgate.runtime import Runtime
from clawgate.sessions.listing import ListQuery
from clawgate.sessions.store import SessionStore

OVERHEAD_P50_BUDGET_MS = 3.0
WALL_4X4_BUDGET_S = 0.52
LIST_5000_BUDGET_MS = 5.0
LIST_BUSY_RATIO_BUDGET = 1.3
MEMORY_GROWTH_BUDGET_MB = 10.0
MEMORY_BUDGET_TURNS = 10_000
WATCHED = ("plugin_metadata_scans_total", "plugin_loads_on_request_total",
           "plugin_generation_builds_total")


@asynccontextmanager
async def engine_at(state: Path, *, delay_ms: float = 0,
                    max_concurrent: int = 32) -> AsyncIterator[Engine]:
    """A started engine over the bundled plugins, echo provider with ``delay_ms``."""
    data = {"plugins": {"entries": {"echo": {"config": {"delay_ms": delay_ms}}}},
            "engine": {"max_concurrent": max_concurrent}}
    settings = config.Settings(config.parse(data), state_dir=state,
                               config_path=state / "clawgate.toml")
    async with Runtime.open(settings) as runtime:
        engine = runtime.engine
        before = counters(engine)
        try:
            yield engine
        finally:
            await engine.aclose()
            COUNTER_CHECKS.append({"engine": state.name, "after_start": before,
                                   "at_end": counters(engine)})  # values in WATCHED order


# Per engine: the plugin counters once started and when it closed (the request path must
# neither scan nor load: the two must be equal).
COUNTER_CHECKS: list[dict[str, Any]] = []


def counters(engine: Engine) -> list[float]:
    found = engine.host.metrics.counters()
    return [found.get(name, 0) for name in WATCHED]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


async def measure_overhead(root: Path, delay_ms: float, turns: int) -> dict[str, Any]:
    async with engine_at(root / f"overhead-{delay_ms:g}", delay_ms=delay_ms) as engine:
        for n in range(20):  # warm-up: first-use costs (workspace reads, reader threads)
            await engine.run(Submission(f"warm-up {n}", session_key="warmup"))
        samples = []
        for n in range(turns):
            started = time.perf_counter()
            result = await engine.run(Submission(f"message number {n}",
                                                 session_key="conversation"))
            samples.append(time.perf_counter() - started - delay_ms / 1000)
            if result.status != "ok":
                raise RuntimeError(f"turn failed: {result}")
    return {
        "provider_delay_ms": delay_ms, "turns": turns,
        "p50_ms": ms(common.percentile(samples, 50)),
        "p99_ms": ms(common.percentile(samples, 99)),
        "mean_ms": ms(statistics.fmean(samples)),
        "min_ms": ms(min(samples)),
    }


async def sleep_overshoot(seconds: float, n: int = 50) -> float:
    """Median time ``asyncio.sleep(seconds)`` takes beyond ``seconds`` (counted as overhead)."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        samples.append(time.perf_counter() - started - seconds)
    return ms(statistics.median(samples))


async def measure_4x4(root: Path, repeats: int) -> dict[str, Any]:
    walls = []
    async with engine_at(root / "four", delay_ms=500, max_concurrent=4) as engine:
        await engine.run(Submission("warm-up", session_key="warmup"))
        for r in range(repeats):
            started = time.perf_counter()
            results = await asyncio.gather(*(
                engine.run(Submission(f"round {r}", session_key=f"parallel-{s}"))
                for s in range(4)))
            walls.append(time.perf_counter() - started)
            if any(res.status != "ok" for res in results):
                raise RuntimeError("a 4x4 turn failed")
    return {"provider_ms": 500, "sessions": 4, "repeats": repeats,
            "wall_s": [round(w, 4) for w in walls],
            "median_s": round(statistics.median(walls), 4), "max_s": round(max(walls), 4)}


async def measure_store(root: Path, appends: int, reads: int) -> dict[str, Any]:
    async with SessionStore(root / "store" / "clawgate.db") as store:
        key = "agent:main:writes"
        await store.ensure(key)
        started = time.perf_counter()
        for n in range(appends):
            await store.append(key, [{"role": "user", "content": f"message {n}"}])
        sequential = appends / (time.perf_counter() - started)

        writers = [f"agent:main:writer-{i}" for i in range(32)]
        await asyncio.gather(*(store.ensure(k) for k in writers))

        async def write(k: str, count: int) -> None:
            for n in range(count):
                await store.append(k, [{"role": "user", "content": f"message {n}"}])

        per_writer = max(1, appends // 32)
        started = time.perf_counter()
        await asyncio.gather(*(write(k, per_writer) for k in writers))
        concurrent = per_writer * 32 / (time.perf_counter() - started)

        short = "agent:main:reads"
        await store.ensure(short)
        await store.append(short, [{"role": "user" if n % 2 == 0 else "assistant",
                                    "content": f"message {n} " * 8} for n in range(20)])
        started = time.perf_counter()
        for _ in range(reads):
            await store.transcript(short)
        read_rate = reads / (time.perf_counter() - started)
    return {"appends_per_s": round(sequential), "appends_per_s_32_writers": round(concurrent),
            "transcript_reads_per_s": round(read_rate), "transcript_messages": 20,
            "appends": appends, "reads": reads}


async def add_sessions(store: SessionStore, count: int) -> None:
    """Create ``count`` sessions quickly: many concurrent ensures share group commits."""
    batch = 500
    for start in range(0, count, batch):
        keys = [f"agent:main:bulk-{uuid.uuid4().hex[:12]}" for _ in range(min(batch,
                                                                               count - start))]
        await asyncio.gather(*(store.ensure(k, label="bulk") for k in keys))


async def list_once(engine: Engine) -> float:
    started = time.perf_counter()
    page = await engine.list_sessions(ListQuery(limit=50))
    elapsed = time.perf_counter() - started
    if len(page.rows) != 50:
        raise RuntimeError("short sessions.list page")
    return elapsed


async def list_idle_and_busy(engine: Engine, rounds: int, per_round: int,
                             batch: int = 0) -> tuple[list[float], list[float], int]:
    """sessions.list samples, idle and while 32 turns are in flight, in alternating rounds so
    that both sides see the same background load."""
    idle: list[float] = []
    busy: list[float] = []
    for r in range(rounds):
        for _ in range(per_round):
            idle.append(await list_once(engine))
        taken = 0
        while taken < per_round:
            turns = asyncio.gather(*(engine.run(Submission(f"busy {r}.{batch}",
                                                           session_key=f"busy-{i}"))
                                     for i in range(32)))
            batch += 1
            await asyncio.sleep(0)  # let the 32 turns get admitted before measuring
            while not turns.done():
                busy.append(await list_once(engine))
                taken += 1
            if any(res.status != "ok" for res in await turns):
                raise RuntimeError("a busy turn failed")
    return idle, busy, batch


async def measure_listing(root: Path, sizes: tuple[int, ...], rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with engine_at(root / "listing", delay_ms=50) as engine:
        await asyncio.gather(*(engine.run(Submission("hello", session_key=f"busy-{i}"))
                               for i in range(32)))
        have = await engine.store.count()
        for size in sizes:
            started = time.perf_counter()
            await add_sessions(engine.store, size - have)
            created_s = time.perf_counter() - started
            have = await engine.store.count()
            idle, busy, batches = await list_idle_and_busy(engine, rounds, 20)
            idle_ms, busy_ms = ms(statistics.median(idle)), ms(statistics.median(busy))
            out[str(size)] = {
                "sessions": have, "create_s": round(created_s, 3),
                "idle_median_ms": idle_ms, "idle_p95_ms": ms(common.percentile(idle, 95)),
                "busy_median_ms": busy_ms, "busy_p95_ms": ms(common.percentile(busy, 95)),
                "busy_vs_idle": round(busy_ms / idle_ms, 3),
                "samples": {"idle": len(idle), "busy": len(busy)}, "busy_turn_batches": batches,
            }
    return out


async def measure_memory(root: Path, turns: int, warmup: int) -> dict[str, Any]:
    gc.collect()
    start = common.rss_kb().get("rss_kb", 0)
    async with engine_at(root / "memory", delay_ms=0) as engine:
        sessions = [f"mem-{i}" for i in range(16)]

        async def batch(n: int) -> None:
            results = await asyncio.gather(*(engine.run(Submission(f"turn {n}", session_key=s))
                                             for s in sessions))
            if any(r.status != "ok" for r in results):
                raise RuntimeError("a memory turn failed")

        for n in range(max(1, warmup // len(sessions))):
            await batch(n)
        gc.collect()
        warm = common.rss_kb().get("rss_kb", 0)
        curve: list[int] = []  # growth (kB) after every 1,000 turns: a leak keeps climbing
        batches = max(1, turns // len(sessions))
        every = max(1, 1_000 // len(sessions))
        started = time.perf_counter()
        for n in range(batches):
            await batch(n)
            if (n + 1) % every == 0:
                curve.append(common.rss_kb().get("rss_kb", 0) - warm)
        elapsed = time.perf_counter() - started
        gc.collect()
        end = common.rss_kb().get("rss_kb", 0)
        db_kb = sum(p.stat().st_size for p in (root / "memory").glob("clawgate.db*")) // 1024
        subscribers = engine.bus.subscribers
        remembered = len(engine._recent)
    done = max(1, turns // len(sessions)) * len(sessions)
    return {"turns": done, "warmup_turns": warmup, "sessions": len(sessions),
            "rss_start_kb": start, "rss_after_warmup_kb": warm, "rss_end_kb": end,
            "growth_mb": round((end - warm) / 1024, 2),
            "growth_since_start_mb": round((end - start) / 1024, 2),
            "growth_curve_kb_per_1000_turns": curve, "db_files_kb": db_kb,
            "turns_per_s": round(done / elapsed), "bus_subscribers_left": subscribers,
            "recent_results_kept": remembered}


async def main(quick: bool) -> None:
    turns = 100 if quick else 200
    memory_turns = 2_000 if quick else MEMORY_BUDGET_TURNS
    load_start = round(os.getloadavg()[0], 2)  # other processes on the machine skew timings
    with tempfile.TemporaryDirectory(prefix="clawgate-bench-engine-") as tmp:
        root = Path(tmp)
        overhead = {
            "delay_0ms": await measure_overhead(root, 0, turns),
            "delay_50ms": await measure_overhead(root, 50, turns),
            "asyncio_sleep_50ms_overshoot_median_ms": await sleep_overshoot(0.05, 20),
        }
        four = await measure_4x4(root, 3 if quick else 5)
        store = await measure_store(root, 1_000 if quick else 5_000, 1_000 if quick else 5_000)
        listing = await measure_listing(root, (1_000, 5_000, 10_000), 3 if quick else 8)
        memory = await measure_memory(root, memory_turns, 320)
    unchanged = all(c["after_start"] == c["at_end"] for c in COUNTER_CHECKS)
    document = {
        "benchmark": "engine",
        "mode": "quick" if quick else "full",
        "environment": {**common.environment(), "loadavg_1m_at_start": load_start,
                        "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "overhead": overhead,
        "concurrent_4x4": four,
        "store": store,
        "sessions_list": listing,
        "memory": memory,
        "counters": {"watched": list(WATCHED), "engines": COUNTER_CHECKS,
                     "unchanged": unchanged},
    }
    growth_label = f"rss growth over {memory['turns']} turns"
    budgets = [
        common.Budget("turn overhead p50 (50 ms provider)", f"< {OVERHEAD_P50_BUDGET_MS} ms",
                      overhead["delay_50ms"]["p50_ms"],
                      overhead["delay_50ms"]["p50_ms"] < OVERHEAD_P50_BUDGET_MS),
        common.Budget("4 turns x 4 sessions at 500 ms, median wall", f"< {WALL_4X4_BUDGET_S} s",
                      four["median_s"], four["median_s"] < WALL_4X4_BUDGET_S),
        common.Budget("sessions.list page of 50 among 5,000", f"< {LIST_5000_BUDGET_MS} ms",
                      listing["5000"]["idle_median_ms"],
                      listing["5000"]["idle_median_ms"] < LIST_5000_BUDGET_MS),
        common.Budget("sessions.list while 32 turns run vs idle (5,000)",
                      f"< {LIST_BUSY_RATIO_BUDGET}x", listing["5000"]["busy_vs_idle"],
                      listing["5000"]["busy_vs_idle"] < LIST_BUSY_RATIO_BUDGET),
        common.Budget(growth_label, f"< {MEMORY_GROWTH_BUDGET_MB} MB over "
                      f"{MEMORY_BUDGET_TURNS} turns", memory["growth_mb"],
                      memory["growth_mb"] < MEMORY_GROWTH_BUDGET_MB),
        common.Budget("plugin scans/loads/builds after start, every engine", "unchanged",
                      "unchanged" if unchanged else "changed", unchanged),
    ]
    common.report(document, budgets)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns (under a minute)")
    args = parser.parse_args()
    asyncio.run(main(args.quick))
