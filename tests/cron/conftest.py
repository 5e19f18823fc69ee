"""Fixtures for the cron tests: a fake clock the test moves, a real store in tmp_path, and a
recording ``run_job``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from clawgate.config import CronConfig
from clawgate.cron.jobs import CronJob, RunOutcome
from clawgate.cron.scheduler import RunContext, Scheduler
from clawgate.sessions.store import SessionStore

# 2026-01-05T00:00:00Z, a Monday.
START_MS = 1_767_571_200_000
MINUTE = 60_000


class FakeClock:
    """A clock that moves only when the test says so. ``sleep_until`` waits on the caller's
    event; ``advance`` sets the events of the sleepers whose deadline it reaches."""

    def __init__(self, now: int = START_MS) -> None:
        self.now = now
        self._sleepers: list[tuple[int, asyncio.Event]] = []

    def now_ms(self) -> int:
        return self.now

    async def sleep_until(self, deadline_ms: int | None, wake: asyncio.Event) -> None:
        if deadline_ms is not None and deadline_ms <= self.now:
            await asyncio.sleep(0)
            return
        entry = None if deadline_ms is None else (deadline_ms, wake)
        if entry is not None:
            self._sleepers.append(entry)
        try:
            await wake.wait()
        finally:
            if entry is not None:
                self._sleepers.remove(entry)

    def advance(self, ms: int) -> int:
        self.now += ms
        for deadline, wake in list(self._sleepers):
            if deadline <= self.now:
                wake.set()
        return self.now

    def sleeping_until(self) -> list[int]:
        """The deadlines being slept on (to know the scheduler has settled)."""
        return sorted(d for d, _ in self._sleepers)


class Recorder:
    """A ``run_job`` that records each call and returns what ``reply`` says (an outcome, or an
    exception to raise). ``gate``, when set, holds every run until it is set."""

    def __init__(self) -> None:
        self.calls: list[tuple[CronJob, RunContext]] = []
        self.reply: Callable[[CronJob], RunOutcome] = lambda job: RunOutcome("ok", summary="done")
        self.gate: asyncio.Event | None = None
        self.active = 0
        self.peak = 0
        self.cancelled = 0

    async def __call__(self, job: CronJob, ctx: RunContext) -> RunOutcome:
        self.calls.append((job, ctx))
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self.reply(job)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.active -= 1

    def ids(self) -> list[str]:
        return [job.id for job, _ in self.calls]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(store_location: Path | str) -> Path | str:
    """The store's location: an SQLite file, or (the same test again) a PostgreSQL URL."""
    return store_location


@pytest.fixture
async def store(db_path: Path | str, anyio_backend: str) -> AsyncIterator[SessionStore]:
    async with SessionStore(db_path) as s:
        yield s


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


SchedulerFactory = Callable[..., Scheduler]


@pytest.fixture
async def make_scheduler(store: SessionStore, clock: FakeClock,
                         recorder: Recorder) -> AsyncIterator[SchedulerFactory]:
    """Build (not start) schedulers on the test's store and clock; all are stopped at the end."""
    made: list[Scheduler] = []

    def make(**options: Any) -> Scheduler:
        config = CronConfig(**options.pop("config", {}))
        scheduler = Scheduler(options.pop("store", store), options.pop("run_job", recorder),
                              config=config, clock=options.pop("clock", clock), **options)
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        await scheduler.stop()


def every(ms: int, **extra: Any) -> dict[str, Any]:
    """cron.add params of an isolated job running every ``ms``."""
    return {"name": extra.pop("name", "every"), "schedule": {"kind": "every", "everyMs": ms},
            "payload": {"kind": "agentTurn", "message": "tick", **extra.pop("payload", {})},
            **extra}
