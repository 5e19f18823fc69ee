"""The cron scheduler: one owned task that runs due jobs through the owner's ``run_job``.

The scheduler keeps only ``(nextRunAtMs, jobId)`` pairs in memory, in a heap; the jobs live in
the store (``store.cron``). Its task sleeps until the earliest next run or until something wakes
it (a job added, changed or removed, a run finished, a manual run asked for), then launches what
is due, up to ``max_concurrent_runs`` at once. Time comes from an injectable :class:`Clock`, so
tests move a fake clock instead of sleeping.

A run: claim the job in the store (so no second run can start, here or after a restart), call
``run_job(job, ctx)`` under a watchdog (``payload.timeoutSeconds``, else ``run_timeout_s``; a run
past it is cancelled and recorded as an error), then record the outcome and the job's next run in
one transaction. ``failure_threshold`` consecutive errors disable the job and ``notify(job)``
tells the owner. Stopping cancels the runs in progress and records them as interrupted.

At start-up, claims a killed process left are closed as interrupted runs, and jobs whose next run
passed while the gateway was down are moved to their next slot — not replayed in a burst — except
one-shots, which run once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from clawgate.config import CronConfig
from clawgate.cron.jobs import (
    AgentTurn,
    CronJob,
    RunEntry,
    RunOutcome,
    Transition,
    apply_outcome,
    interrupted,
    new_job,
    next_run_at,
    patch_job,
    run_entry,
)
from clawgate.cron.schedule import AtSchedule, CronInputError
from clawgate.errors import Unavailable
from clawgate.ids import new_id
from clawgate.sessions.cronstore import Claim, Doc
from clawgate.sessions.store import SessionStore

log = logging.getLogger("clawgate.cron")
RunMode = Literal["due", "force"]
MAX_MANUAL = 64  # manual runs waiting for a free slot; more are refused
LOAD_PAGE = 1_000  # jobs read at a time at start-up
MAX_SLEEP_MS = 60_000  # re-read the wall clock at least this often (it may jump)


class Clock(Protocol):
    """Where the scheduler's time comes from."""

    def now_ms(self) -> int:
        """Wall-clock time, epoch milliseconds."""
        ...

    async def sleep_until(self, deadline_ms: int | None, wake: asyncio.Event) -> None:
        """Return when the clock reaches ``deadline_ms`` (None: no deadline) or ``wake`` is set,
        whichever comes first; returning early is allowed (the caller checks again)."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        """Wall-clock time, epoch milliseconds."""
        return time.time_ns() // 1_000_000

    async def sleep_until(self, deadline_ms: int | None, wake: asyncio.Event) -> None:
        """Sleep on ``wake`` with a timeout; never longer than a minute."""
        delay = MAX_SLEEP_MS if deadline_ms is None else deadline_ms - self.now_ms()
        if delay <= 0:
            await asyncio.sleep(0)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(delay, MAX_SLEEP_MS) / 1000):
                await wake.wait()


@dataclass(frozen=True, slots=True)
class RunContext:
    """What ``run_job`` gets besides the job: the run's id, when and why it started, and
    ``delivering()`` to call before the reply is sent anywhere."""

    run_id: str
    started_ms: int
    mode: Literal["schedule", "due", "force"]
    _delivering: Callable[[], Awaitable[None]] = field(repr=False)

    async def delivering(self) -> None:
        """Record that delivery begins: if the gateway dies now, a one-shot is not replayed."""
        await self._delivering()


@dataclass(frozen=True, slots=True)
class RunResult:
    """The answer to ``run_now``: whether it ran, why not, and the run's entry."""

    ran: bool
    reason: Literal["not-found", "not-due", "already-running"] | None = None
    entry: RunEntry | None = None


@dataclass(slots=True)
class _Manual:
    job_id: str
    mode: RunMode
    future: asyncio.Future[RunResult]


Jobs = list[CronJob]
Entries = list[RunEntry]
RunJob = Callable[[CronJob, RunContext], Awaitable[RunOutcome]]
Notify = Callable[[CronJob], Awaitable[None]]
OnEvent = Callable[[dict[str, Any]], None]


class Scheduler:
    """Runs the jobs in ``store.cron``; also the API that adds, changes and removes them, so the
    schedule in memory follows every change. ``start()``/``stop()`` (or ``async with``)."""

    def __init__(self, store: SessionStore, run_job: RunJob, *,
                 config: CronConfig | None = None, clock: Clock | None = None,
                 notify: Notify | None = None, on_event: OnEvent | None = None,
                 agents: Collection[str] | None = None) -> None:
        self._store = store
        self._run_job = run_job
        self._config = config or CronConfig()
        self._clock: Clock = clock or SystemClock()
        self._notify = notify
        self._on_event = on_event
        self._agents = agents
        self._next: dict[str, int] = {}  # job id -> next run, for jobs waiting to run
        self._heap: list[tuple[int, str]] = []  # may hold stale pairs; _next decides
        self._running: dict[str, asyncio.Task[None]] = {}
        self._manual: collections.deque[_Manual] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Close claims left by a previous process, move missed runs to their next slot, load
        the schedule and start the task."""
        if self._task is not None:
            raise Unavailable("cron scheduler is already running")
        now = self._clock.now_ms()
        threshold = self._config.failure_threshold

        def recovered(doc: Doc, claim: Claim) -> tuple[Doc | None, Doc]:
            job = CronJob.from_doc(doc)
            transition, outcome = interrupted(job, started_ms=claim.started_at, now_ms=now,
                                              delivery_attempted=claim.delivery_at is not None,
                                              failure_threshold=threshold)
            nxt = transition.job.state.next_run_at_ms if transition.job else None
            entry = run_entry(job, outcome, started_ms=claim.started_at, ended_ms=now,
                              next_run_at_ms=nxt)
            return (transition.job.wire() if transition.job else None), dict(entry)

        closed = await self._store.cron.recover(now, recovered, keep=self._config.run_history)
        if closed:
            log.warning("cron: %d runs were interrupted by the last shutdown", closed)
        moved: dict[str, int | None] = {}
        offset = 0
        while page := await self._store.cron.list(include_disabled=False, limit=LOAD_PAGE,
                                                  offset=offset):
            offset += len(page)  # pages bound the memory a start-up with many jobs needs
            for doc in page:
                try:
                    job = CronJob.from_doc(doc)
                except CronInputError:  # one unreadable row must not stop every other job
                    log.exception("cron: job %s is unreadable and will not run", doc.get("id"))
                    continue
                at = job.state.next_run_at_ms
                if at is None or (at < now and not isinstance(job.schedule, AtSchedule)):
                    at = next_run_at(job, now)
                    moved[job.id] = at
                if at is not None:
                    self._next[job.id] = at
        if moved:
            await self._store.cron.reschedule(moved)
        self._heap = [(at, job_id) for job_id, at in self._next.items()]
        heapq.heapify(self._heap)
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="clawgate-cron")

    async def stop(self) -> None:
        """Cancel the runs in progress (recorded as interrupted) and end the task."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        await task
        for request in self._manual:
            if not request.future.done():
                request.future.set_exception(Unavailable("cron scheduler stopped"))
        self._manual.clear()
        self._next.clear()
        self._heap.clear()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- jobs -----------------------------------------------------------------------------------

    async def add(self, params: Mapping[str, Any]) -> CronJob:
        """``cron.add``: validate, store and schedule a new job."""
        job = new_job(params, now_ms=self._clock.now_ms(), agents=self._agents)
        doc = await self._store.cron.add(job.wire(), max_jobs=self._config.max_jobs)
        self._follow(doc)
        self._emit("added", job.id, nextRunAtMs=job.state.next_run_at_ms)
        return job

    async def update(self, job_id: str, patch: Mapping[str, Any]) -> CronJob:
        """``cron.update``: apply ``patch`` to the stored job (bad input changes nothing)."""
        now = self._clock.now_ms()

        def change(doc: Doc) -> Doc:
            return patch_job(CronJob.from_doc(doc), patch, now_ms=now, agents=self._agents).wire()

        job = CronJob.from_doc(await self._store.cron.update(job_id, change))
        self._follow(job.wire())
        self._emit("updated", job_id, nextRunAtMs=job.state.next_run_at_ms)
        return job

    async def remove(self, job_id: str) -> bool:
        """``cron.remove``: delete the job and its history (a run in progress finishes)."""
        removed = await self._store.cron.remove(job_id)
        self._next.pop(job_id, None)
        if removed:
            self._emit("removed", job_id)
        return removed

    async def get(self, job_id: str) -> CronJob | None:
        """``cron.get``."""
        doc = await self._store.cron.get(job_id)
        return None if doc is None else CronJob.from_doc(doc)

    async def list(self, *, include_disabled: bool = False) -> Jobs:
        """``cron.list``: jobs by next run."""
        docs = await self._store.cron.list(include_disabled=include_disabled)
        return [CronJob.from_doc(d) for d in docs]

    async def runs(self, job_id: str, limit: int = 50) -> Entries:
        """``cron.runs``: the job's newest finished runs first."""
        entries: Entries = await self._store.cron.runs(job_id, limit=limit)  # type: ignore[assignment]
        return entries

    async def run_now(self, job_id: str, mode: RunMode = "due") -> RunResult:
        """``cron.run``: run the job as soon as a slot is free and return how it went. ``due``
        runs it only if it is due; ``force`` runs it anyway (also when disabled)."""
        if mode not in ("due", "force"):
            raise CronInputError("mode", "must be due or force", method="cron.run")
        if self._task is None:
            raise Unavailable("cron scheduler is not running")
        if len(self._manual) >= MAX_MANUAL:
            raise Unavailable(f"cron: {MAX_MANUAL} manual runs are already waiting")
        future: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
        self._manual.append(_Manual(job_id, mode, future))
        self._wake.set()
        return await future

    def status(self) -> dict[str, Any]:
        """``cron.status``: whether jobs run automatically, how many wait, the next wake-up."""
        upcoming = min(self._next.values(), default=None)
        return {"enabled": self._config.enabled, "jobs": len(self._next) + len(self._running),
                "running": len(self._running), "nextWakeAtMs": upcoming}

    # -- the task -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        async with asyncio.TaskGroup() as runs:
            while not self._stopping:
                self._wake.clear()
                deadline = self._launch(runs)
                await self._clock.sleep_until(deadline, self._wake)
            for task in self._running.values():
                task.cancel()

    def _launch(self, runs: asyncio.TaskGroup) -> int | None:
        """Start what may start now; return when to look again (None: when woken)."""
        free = self._config.max_concurrent_runs - len(self._running)
        while free > 0 and self._manual:
            request = self._manual.popleft()
            if request.future.done():
                continue
            if request.job_id in self._running:
                request.future.set_result(RunResult(False, "already-running"))
                continue
            self._start(runs, request.job_id, request.mode, request)
            free -= 1
        if not self._config.enabled:
            return None
        now = self._clock.now_ms()
        while self._heap:
            at, job_id = self._heap[0]
            if self._next.get(job_id) != at or job_id in self._running:
                heapq.heappop(self._heap)
                continue
            if at > now or free <= 0:
                return at if free > 0 else None
            heapq.heappop(self._heap)
            del self._next[job_id]
            self._start(runs, job_id, "schedule", None)
            free -= 1
        return None

    def _start(self, runs: asyncio.TaskGroup, job_id: str, mode: Literal["schedule", "due",
               "force"], request: _Manual | None) -> None:
        self._next.pop(job_id, None)  # while it runs it waits for nothing; finish re-adds it
        self._running[job_id] = runs.create_task(self._run(job_id, mode, request),
                                                 name=f"clawgate-cron-run-{job_id}")

    async def _run(self, job_id: str, mode: Literal["schedule", "due", "force"],
                   request: _Manual | None) -> None:
        try:
            result = await self._claim_and_run(job_id, mode)
        except asyncio.CancelledError:
            if request is not None and not request.future.done():
                request.future.set_exception(Unavailable("cron scheduler stopped"))
            raise
        except Exception as exc:  # the store failed: the claim (if any) is recovered at start
            log.exception("cron: run of job %s failed", job_id)
            if request is not None and not request.future.done():
                request.future.set_exception(exc)
            return
        finally:
            self._running.pop(job_id, None)
            self._wake.set()
        if request is not None and not request.future.done():
            request.future.set_result(result)

    async def _claim_and_run(self, job_id: str,
                             mode: Literal["schedule", "due", "force"]) -> RunResult:
        run_id = new_id()
        started = self._clock.now_ms()
        doc = await self._store.cron.claim(job_id, run_id, started, force=mode == "force")
        if doc is None:
            current = await self._store.cron.get(job_id)
            if current is None:
                return RunResult(False, "not-found")
            self._follow(current)
            running = current.get("state", {}).get("runningAtMs") is not None
            return RunResult(False, "already-running" if running else "not-due")
        job = CronJob.from_doc(doc)
        self._emit("started", job_id, runAtMs=started)
        delivered: list[bool] = []

        async def delivering() -> None:
            delivered.append(True)
            await self._store.cron.delivering(run_id, self._clock.now_ms())

        ctx = RunContext(run_id=run_id, started_ms=started, mode=mode, _delivering=delivering)
        try:
            outcome = await self._watch(job, ctx)
        except asyncio.CancelledError:
            await self._finish(job, run_id, started, None, bool(delivered))
            raise
        return await self._finish(job, run_id, started, outcome, bool(delivered))

    async def _watch(self, job: CronJob, ctx: RunContext) -> RunOutcome:
        """``run_job`` under the watchdog: past its time it is cancelled and counts as an error."""
        limit_s = self._config.run_timeout_s
        if isinstance(job.payload, AgentTurn) and job.payload.timeout_seconds:
            limit_s = job.payload.timeout_seconds
        runner = asyncio.create_task(self._call(job, ctx), name=f"clawgate-cron-job-{job.id}")
        done = asyncio.Event()
        runner.add_done_callback(lambda _: done.set())
        deadline = ctx.started_ms + round(limit_s * 1000)
        timed_out = False
        try:
            while not runner.done():
                if self._clock.now_ms() >= deadline:
                    timed_out = True
                    break
                await self._clock.sleep_until(deadline, done)
        finally:
            if not runner.done():
                runner.cancel()
                await asyncio.wait([runner])  # unlike awaiting it, never eats our own cancel
        if timed_out:
            return RunOutcome("error", error=f"timed out after {limit_s:g} s (watchdog)")
        if runner.cancelled():  # run_job cancelled itself
            return RunOutcome("error", error="the run was cancelled")
        return runner.result()

    async def _call(self, job: CronJob, ctx: RunContext) -> RunOutcome:
        try:
            outcome = await self._run_job(job, ctx)
        except Exception as exc:
            return RunOutcome("error", error=f"{type(exc).__name__}: {exc}")
        if not isinstance(outcome, RunOutcome):
            return RunOutcome("error", error=f"run_job returned {type(outcome).__name__}")
        return outcome

    async def _finish(self, started_job: CronJob, run_id: str, started: int,
                      outcome: RunOutcome | None, delivery_attempted: bool) -> RunResult:
        """Record the run (``outcome`` None: interrupted by stop) and follow the job's new
        state. The transition is computed from the job as stored *now*."""
        ended = self._clock.now_ms()
        threshold = self._config.failure_threshold
        box: list[Transition] = []
        entries: list[RunEntry] = []

        def apply(doc: Doc | None) -> tuple[Doc | None, Doc]:
            current = started_job if doc is None else CronJob.from_doc(doc)
            if outcome is None:
                transition, result = interrupted(current, started_ms=started, now_ms=ended,
                                                 delivery_attempted=delivery_attempted,
                                                 failure_threshold=threshold)
            else:
                result = outcome
                transition = apply_outcome(current, outcome, started_ms=started, ended_ms=ended,
                                           failure_threshold=threshold)
            box.append(transition)
            nxt = transition.job.state.next_run_at_ms if transition.job else None
            entry = run_entry(current, result, started_ms=started, ended_ms=ended,
                              next_run_at_ms=nxt)
            entries.append(entry)
            return (None if doc is None or transition.job is None else transition.job.wire(),
                    dict(entry))

        doc = await self._store.cron.finish(run_id, ended, apply, keep=self._config.run_history)
        entry = entries[-1]
        if doc is not None:
            self._follow(doc)
        self._emit("finished", started_job.id, status=entry["status"], error=entry.get("error"),
                   summary=entry.get("summary"), runAtMs=started, durationMs=entry["durationMs"],
                   nextRunAtMs=entry.get("nextRunAtMs"))
        transition = box[-1]
        if transition.auto_disabled and transition.job is not None:
            log.warning("cron: job %s disabled after %d consecutive errors", started_job.id,
                        transition.job.state.consecutive_errors)
            if self._notify is not None:
                try:
                    await self._notify(transition.job)
                except Exception:
                    log.exception("cron: telling the owner that job %s was disabled failed",
                                  started_job.id)
        return RunResult(True, entry=entry)

    def _follow(self, doc: Doc) -> None:
        """Make the in-memory schedule match a stored job."""
        job_id = str(doc["id"])
        state = doc.get("state") or {}
        at = state.get("nextRunAtMs")
        if not doc.get("enabled") or at is None or state.get("runningAtMs") is not None:
            self._next.pop(job_id, None)
            return
        if self._next.get(job_id) == at:
            return
        self._next[job_id] = at
        heapq.heappush(self._heap, (at, job_id))
        if len(self._heap) > 2 * len(self._next) + 64:  # drop stale pairs (bounded heap)
            self._heap = [(t, j) for j, t in self._next.items()]
            heapq.heapify(self._heap)
        self._wake.set()

    def _emit(self, action: str, job_id: str, **fields: Any) -> None:
        if self._on_event is None:
            return
        event = {"jobId": job_id, "action": action,
                 **{k: v for k, v in fields.items() if v is not None}}
        try:
            self._on_event(event)
        except Exception:
            log.exception("cron: event listener failed")


