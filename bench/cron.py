"""Benchmark: the cron scheduler with 10,000 jobs on a real SQLite store.

Everything runs in-process on the real clock; ``run_job`` does nothing but note when it was
called, so the figures are the scheduler's and the store's own. Measured:

- ``load``: adding 10,000 jobs (a mix of cron expressions in several zones and ``every`` jobs,
  none due during the run) through ``Scheduler.add``, and ``Scheduler.start`` reading them back
  (recover, parse, reschedule, build the heap);
- ``memory``: what the scheduler keeps for them (tracemalloc, after start, the store's own
  caches excluded as far as possible) and the process's resident memory;
- ``tick``: one pass of the scheduler loop with 10,000 jobs waiting and none due, the cost of
  computing one job's next run, and the process CPU used while the scheduler idles for 2 s;
- ``lateness``: 100 one-shots due at the same instant: how late each ``run_job`` call starts
  after that instant (p50/p99/max), with ``max_concurrent_runs`` 1 (the default) and 8, and the
  throughput of those runs (claim, run, record: two store transactions each).
- ``wired``: the same 100 one-shots through the gateway's cron service (``CronService`` over a
  real runtime and engine, echo provider): each run is an isolated agent turn on a fresh
  session, so lateness is measured at the turn's start (its ``lifecycle`` start event) and the
  throughput is of whole turns (admission, run, record). Informative (no budget): it is the
  engine's cost per turn that sets it, serialized by ``max_concurrent_runs``.

Prints one JSON document, then a ``verdict:`` line. Run: ``.venv/bin/python bench/cron.py
[--quick]`` (``--quick``: 2,000 jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import common
from clawgate.agents.bus import RunEvent
from clawgate.config import CronConfig, Settings, parse
from clawgate.cron.jobs import CronJob, RunOutcome, next_run_at
from clawgate.cron.schedule import iso_ms
from clawgate.cron.scheduler import RunContext, Scheduler
from clawgate.runtime import Runtime
from clawgate.sessions.store import SessionStore

LATENESS_P99_BUDGET_MS = 1_000.0
MEMORY_BUDGET_MB = 10.0
TICK_BUDGET_MS = 1.0
DUE_AT_ONCE = 100
# Common shapes, limited to a month six months away so that none fires during the benchmark.
FAR = (time.gmtime().tm_mon + 5) % 12 + 1
EXPRESSIONS = [
    (f"0 * * {FAR} *", "Europe/Berlin"), (f"*/5 * * {FAR} *", "UTC"),
    (f"30 9 * {FAR} 1-5", "America/New_York"), (f"0 0 1 {FAR} *", "Asia/Tokyo"),
    (f"15 2 * {FAR} *", "Europe/Berlin"), (f"0 30 6 * {FAR} *", None),
]


def job_params(i: int) -> dict[str, Any]:
    if i % 4 == 3:
        schedule: dict[str, Any] = {"kind": "every", "everyMs": 3_600_000 * (1 + i % 24)}
    else:
        expr, tz = EXPRESSIONS[i % len(EXPRESSIONS)]
        schedule = {"kind": "cron", "expr": expr, **({"tz": tz} if tz else {})}
    return {"name": f"job {i}", "schedule": schedule,
            "payload": {"kind": "agentTurn", "message": f"task {i}"}}


async def add_jobs(scheduler: Scheduler, count: int, start: int = 0) -> float:
    """Add ``count`` jobs, 200 at a time (concurrent adds share group commits)."""
    began = time.perf_counter()
    for first in range(start, start + count, 200):
        await asyncio.gather(*(scheduler.add(job_params(i))
                               for i in range(first, min(first + 200, start + count))))
    return time.perf_counter() - began


async def nothing(job: CronJob, ctx: RunContext) -> RunOutcome:
    return RunOutcome("ok")


async def measure_load_and_memory(root: Path, count: int) -> dict[str, Any]:
    db = root / "load.db"
    async with SessionStore(db) as store:
        loader = Scheduler(store, nothing, config=CronConfig(max_jobs=count))
        await loader.start()
        add_s = await add_jobs(loader, count)
        await loader.stop()
    async with SessionStore(db) as store:
        timed = Scheduler(store, nothing, config=CronConfig(max_jobs=count))
        began = time.perf_counter()
        await timed.start()
        start_s = time.perf_counter() - began
        await timed.stop()
    async with SessionStore(db) as store:
        gc.collect()
        rss_before = common.rss_kb().get("rss_kb", 0)
        tracemalloc.start()
        scheduler = Scheduler(store, nothing, config=CronConfig(max_jobs=count))
        await scheduler.start()
        await asyncio.sleep(0.05)  # let the loop drop its finished futures (they hold results)
        gc.collect()
        retained, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = common.rss_kb().get("rss_kb", 0)
        tick = await measure_tick(scheduler, store)
        await scheduler.stop()
    return {
        "jobs": count,
        "add_s": round(add_s, 3), "adds_per_s": round(count / add_s),
        "start_s": round(start_s, 3),
        "memory": {"scheduler_retained_mb": round(retained / 2**20, 2),
                   "start_peak_mb": round(peak / 2**20, 2),
                   "rss_growth_mb": round((rss_after - rss_before) / 1024, 2),
                   "rss_mb": round(rss_after / 1024, 1)},
        "tick": tick,
    }


async def measure_tick(scheduler: Scheduler, store: SessionStore) -> dict[str, Any]:
    waiting = scheduler.status()["jobs"]
    group = asyncio.TaskGroup()
    passes = []
    async with group:
        for _ in range(2_000):
            began = time.perf_counter()
            scheduler._launch(group)  # one loop pass: nothing is due
            passes.append((time.perf_counter() - began) * 1000)
    docs = await store.cron.list()
    jobs = [CronJob.from_doc(d) for d in docs[::max(1, len(docs) // 300)]]  # every kind
    now = time.time_ns() // 1_000_000
    began = time.perf_counter()
    for job in jobs:
        next_run_at(job, now)
    next_us = (time.perf_counter() - began) / len(jobs) * 1e6
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(2.0)  # the scheduler idles with all jobs waiting
    idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    return {"waiting_jobs": waiting, "loop_pass_ms": common.summarize(passes, digits=4),
            "next_run_us": round(next_us, 1), "idle_cpu_percent": round(idle_cpu, 2)}


async def measure_lateness(root: Path, background: int, concurrency: int) -> dict[str, Any]:
    calls: list[float] = []
    finished = asyncio.Event()
    count = [0]

    async def note(job: CronJob, ctx: RunContext) -> RunOutcome:
        calls.append(time.time())
        return RunOutcome("ok")

    def on_event(event: dict[str, Any]) -> None:
        if event["action"] == "finished" and event["jobId"] in once:
            count[0] += 1
            if count[0] == DUE_AT_ONCE:
                finished.set()

    once: set[str] = set()
    db = root / f"late-{concurrency}.db"
    async with SessionStore(db) as store:
        scheduler = Scheduler(store, note, on_event=on_event, config=CronConfig(
            max_concurrent_runs=concurrency, max_jobs=background + DUE_AT_ONCE))
        await scheduler.start()
        try:
            await add_jobs(scheduler, background)
            due_ms = (time.time_ns() // 1_000_000) + 1_500
            added = await asyncio.gather(*(scheduler.add({
                "name": f"once {i}", "schedule": {"kind": "at", "at": iso_ms(due_ms)},
                "payload": {"kind": "agentTurn", "message": "now"}}) for i in range(DUE_AT_ONCE)))
            once.update(job.id for job in added)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), 60)
            done = time.time()
        finally:
            await scheduler.stop()
    late = [max(0.0, t * 1000 - due_ms) for t in calls]
    return {"max_concurrent_runs": concurrency, "due_at_once": DUE_AT_ONCE,
            "other_jobs": background, "ran": len(calls),
            "lateness_ms": {"p50": round(common.percentile(late, 50), 2),
                            "p99": round(common.percentile(late, 99), 2),
                            "max": round(max(late), 2)},
            "finished": count[0],
            "runs_per_s": round(count[0] / max(1e-9, done - due_ms / 1000), 1)}


async def measure_wired(root: Path, concurrency: int) -> dict[str, Any]:
    state = root / f"wired-{concurrency}"
    settings = Settings(parse({"heartbeat": {"every": "0m"},
                               "cron": {"max_concurrent_runs": concurrency}}), state,
                        state / "clawgate.toml")
    started: list[int] = []
    finished = asyncio.Event()
    done: list[str] = []
    once: set[str] = set()

    def on_event(name: str, event: dict[str, Any]) -> None:
        if name == "cron" and event["action"] == "finished" and event["jobId"] in once:
            done.append(event["jobId"])
            if len(done) == DUE_AT_ONCE:
                finished.set()

    async with Runtime.open(settings, cron=True) as runtime:
        cron = runtime.cron
        assert cron is not None
        cron.listen(on_event)
        sub = runtime.engine.bus.subscribe(maxsize=65_536)

        async def starts() -> None:
            while True:
                event = await sub.get()
                if isinstance(event, RunEvent) and event.stream == "lifecycle" and \
                        event.data.get("phase") == "start" and ":cron:" in event.session_key:
                    started.append(event.ts)

        reader = asyncio.create_task(starts())
        try:
            due_ms = (time.time_ns() // 1_000_000) + 1_500
            added = await asyncio.gather(*(cron.scheduler.add({
                "name": f"turn {i}", "schedule": {"kind": "at", "at": iso_ms(due_ms)},
                "payload": {"kind": "agentTurn", "message": f"report {i}"}})
                for i in range(DUE_AT_ONCE)))
            once.update(job.id for job in added)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), 120)
            end = time.time()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            sub.close()
    late = [max(0.0, float(ts - due_ms)) for ts in started]
    return {"max_concurrent_runs": concurrency, "due_at_once": DUE_AT_ONCE,
            "turns_started": len(started), "finished": len(done),
            "turn_start_lateness_ms": {"p50": round(common.percentile(late, 50), 2),
                                       "p99": round(common.percentile(late, 99), 2),
                                       "max": round(max(late, default=0.0), 2)},
            "runs_per_s": round(len(done) / max(1e-9, end - due_ms / 1000), 1)}


async def main(quick: bool) -> None:
    count = 2_000 if quick else 10_000
    load_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="clawgate-bench-cron-") as tmp:
        root = Path(tmp)
        load = await measure_load_and_memory(root, count)
        serial = await measure_lateness(root, count - DUE_AT_ONCE, 1)
        parallel = await measure_lateness(root, count - DUE_AT_ONCE, 8)
        wired = [await measure_wired(root, 1), await measure_wired(root, 8)]
    document = {
        "benchmark": "cron",
        "mode": "quick" if quick else "full",
        "environment": {**common.environment(), "loadavg_1m_at_start": load_start,
                        "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "load": load,
        "lateness": [serial, parallel],
        "wired": wired,
    }
    memory = load["memory"]["scheduler_retained_mb"]
    tick = load["tick"]["loop_pass_ms"]["p95"]
    p99 = serial["lateness_ms"]["p99"]
    budgets = [
        common.Budget(f"lateness p99, {DUE_AT_ONCE} due at once among {count} jobs "
                      "(max_concurrent_runs 1)", f"< {LATENESS_P99_BUDGET_MS:g} ms", p99,
                      p99 < LATENESS_P99_BUDGET_MS and serial["ran"] == DUE_AT_ONCE),
        common.Budget(f"scheduler memory for {count} jobs", f"< {MEMORY_BUDGET_MB:g} MB",
                      memory, memory < MEMORY_BUDGET_MB),
        common.Budget(f"loop pass with {count} jobs waiting, p95", f"< {TICK_BUDGET_MS:g} ms",
                      tick, tick < TICK_BUDGET_MS),
    ]
    common.report(document, budgets)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs instead of 10,000")
    args = parser.parse_args()
    asyncio.run(main(args.quick))
