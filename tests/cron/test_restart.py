"""A gateway killed (SIGKILL) in the middle of a cron run: the restart records the run as
interrupted, runs the job again only at its next slot, and never runs it twice at once."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clawgate.cron.scheduler import Scheduler
from clawgate.sessions.store import SessionStore
from tests.support.poll import until

from .conftest import MINUTE, FakeClock, Recorder, every

pytestmark = pytest.mark.anyio

CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from clawgate.cron.scheduler import Scheduler
    from clawgate.sessions.store import SessionStore

    async def hang(job, ctx):
        print("running", job.id, flush=True)
        await asyncio.Event().wait()

    async def main():
        store = SessionStore(Path(sys.argv[1]))
        await store.open()
        scheduler = Scheduler(store, hang)
        await scheduler.start()
        job = await scheduler.add({"name": "report", "schedule": {"kind": "every",
                                   "everyMs": 60000}, "payload": {"kind": "agentTurn",
                                   "message": "go"}})
        await scheduler.run_now(job.id, "force")  # never returns: killed while it runs

    asyncio.run(main())
""")


def _run_and_kill(db: Path) -> str:
    """Start the child, wait until its run is in progress, SIGKILL it; the job's id."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        line = _line(proc, 30)
        assert line.startswith("running "), line
        return line.split()[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


def _line(proc: subprocess.Popen[str], within_s: float) -> str:
    assert proc.stdout is not None
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], end - time.monotonic())
        if ready:
            return proc.stdout.readline()
    raise TimeoutError("the child printed nothing")


async def test_a_run_killed_with_the_process_is_not_replayed_or_doubled(tmp_path: Path) -> None:
    db = tmp_path / "clawgate.db"
    job_id = await asyncio.to_thread(_run_and_kill, db)

    clock = FakeClock(time.time_ns() // 1_000_000)
    recorder = Recorder()
    async with SessionStore(db) as store:
        stored = await store.cron.get(job_id)
        assert stored is not None and "runningAtMs" in stored["state"]  # the dead claim
        scheduler = Scheduler(store, recorder, clock=clock)
        await scheduler.start()
        try:
            [entry] = await store.cron.runs(job_id)
            assert entry["status"] == "error" and "interrupted" in entry["error"]
            job = await scheduler.get(job_id)
            assert job is not None and job.state.running_at_ms is None
            assert recorder.calls == []
            # A new job on the same store runs normally; the old one at its next slot, once.
            other = await scheduler.add(every(MINUTE))
            due = max(job.state.next_run_at_ms or 0, other.state.next_run_at_ms or 0)
            clock.advance(due - clock.now)
            await until(lambda: len(recorder.calls) == 2 and scheduler.status()["running"] == 0)
            assert sorted(recorder.ids()) == sorted([job_id, other.id])
        finally:
            await scheduler.stop()
