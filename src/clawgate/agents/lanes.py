"""Lanes: at most one active run per session, a global cap on concurrent runs, and a bounded
queue per session with OpenClaw's queue modes.

- ``followup`` (default): queue behind the active run.
- ``collect``: wait for a quiet window, then coalesce every queued message into one run.
- ``interrupt``: abort the active run, drop the queue, run the newest message.
- ``steer``: hand the message to the active run, which takes it at its next model/tool
  boundary; with no active run it runs normally.

A session's queue holds at most ``cap`` runs; beyond that the drop policy refuses the new
message (``new``, a QueueFullError) or drops the oldest queued one (``old``). Each session with
work has one worker task, owned by the Lanes object and awaited on close; idle sessions cost
nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from clawgate.errors import QueueFullError
from clawgate.types import QueueMode, RunStatus


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a run ended. ``suppressed``: the turn's reply filter dropped a non-empty reply (an
    acknowledged heartbeat), so ``text`` is empty on purpose."""

    run_id: str
    session_key: str
    status: RunStatus
    text: str = ""
    stop_reason: str = ""
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    tool_calls: tuple[dict[str, Any], ...] = ()
    merged_into: str | None = None
    suppressed: bool = False


@dataclass(eq=False)
class Run:
    """One unit of agent work for one session. Mutable: it moves through the lane."""

    run_id: str
    session_key: str
    messages: list[dict[str, Any]]
    mode: QueueMode = "followup"
    payload: Any = None  # what the runner needs (agent, client tools, ...); opaque to lanes
    status: RunStatus = "queued"
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    started_at_perf: float | None = None  # perf_counter when the runner began
    cancel_reason: str | None = None
    done: asyncio.Future[RunResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    task: asyncio.Task[RunResult] | None = None
    merged_ids: list[str] = field(default_factory=list)  # runs coalesced or steered into this
    front: bool = False  # taken over from a dead replica: runs before the lane's other runs
    deferred: bool = False  # a front run arrived while this one waited for its claim
    ending: bool = False  # the runner is recording its end: it is not cancelled any more
    _steered: list[dict[str, Any]] = field(default_factory=list)

    def inject(self, message: dict[str, Any]) -> None:
        """Steer: give the active run a message to take at its next boundary."""
        self._steered.append(message)

    def take_injected(self) -> list[dict[str, Any]]:
        taken, self._steered = self._steered, []
        return taken

    def resolve(self, result: RunResult) -> None:
        if not self.done.done():
            self.done.set_result(result)


Runner = Callable[[Run], Coroutine[Any, Any, RunResult]]


@dataclass(eq=False)
class _Lane:
    key: str
    queue: deque[Run] = field(default_factory=deque)
    active: Run | None = None
    worker: asyncio.Task[None] | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class Lanes:
    """Per-session serialization and a global concurrency cap over a ``runner``."""

    def __init__(
        self,
        runner: Runner,
        *,
        max_concurrent: int = 32,
        cap: int = 20,
        drop: Literal["new", "old"] = "new",
        collect_window_s: float = 0.5,
        cancelled: Runner | None = None,
        dropped: Callable[[Run], None] | None = None,
        claim: Callable[[Run], Coroutine[Any, Any, bool]] | None = None,
    ) -> None:
        self._runner = runner
        # Several replicas on one store: awaited before a run takes a slot, it returns once the
        # run's session is claimed for this process (agents/claims.py). None: this process
        # owns every session.
        self._claim = claim
        self._cancelled = cancelled
        self._dropped = dropped  # told at once when a queued run is cancelled
        self._slots = asyncio.Semaphore(max_concurrent)
        self._cap = cap
        self._drop = drop
        self._window = collect_window_s
        self._lanes: dict[str, _Lane] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self.running = 0
        self.peak_running = 0

    # -- admission -------------------------------------------------------------------------

    def submit(self, run: Run, *, front: bool = False) -> Run:
        """Queue ``run`` by its mode. Raises QueueFullError when the queue is full.

        ``front``: a run taken over from a dead replica, whose turn had begun there (or queued
        before this replica's own): it goes before the lane's queued runs, and a run waiting
        for its claim steps back behind it (its claim would wait for it)."""
        lane = self._lanes.get(run.session_key)
        if lane is None:
            lane = self._lanes[run.session_key] = _Lane(run.session_key)
        if front:
            run.front = True
            at = next((i for i, q in enumerate(lane.queue) if not q.front), len(lane.queue))
            lane.queue.insert(at, run)
            waiting = lane.active
            if waiting is not None and waiting.status == "queued":
                waiting.deferred = True
            self._wake(lane)
            return run
        if run.mode == "steer" and lane.active is not None and lane.active.status == "running":
            active = lane.active
            for message in run.messages:
                active.inject(message)
            active.merged_ids.append(run.run_id)
            run.status = active.status
            active.done.add_done_callback(_follow(run))
            return run
        if run.mode == "interrupt":
            for queued in list(lane.queue):
                self._cancel_queued(lane, queued, "superseded by a newer message")
            if lane.active is not None:
                self._cancel_active(lane.active, "interrupted by a newer message")
        # Aborted runs stay queued until the worker records them; they hold no place.
        live = [queued for queued in lane.queue if queued.cancel_reason is None]
        if len(live) >= self._cap:
            if self._drop == "new":
                raise QueueFullError(
                    f"session {run.session_key!r} already has {len(live)} queued "
                    f"messages (cap {self._cap})",
                    session_key=run.session_key,
                )
            self._cancel_queued(lane, live[0], "dropped: queue full")
        lane.queue.append(run)
        self._wake(lane)
        return run

    def _wake(self, lane: _Lane) -> None:
        lane.arrived.set()
        if lane.worker is None:
            lane.worker = asyncio.get_running_loop().create_task(
                self._work(lane), name=f"lane:{lane.key}"
            )
            self._workers.add(lane.worker)
            lane.worker.add_done_callback(self._workers.discard)

    def abort(self, session_key: str, run_id: str | None = None) -> list[str]:
        """Abort the session's queued runs, then its active one (or only ``run_id``)."""
        lane = self._lanes.get(session_key)
        if lane is None:
            return []
        aborted: list[str] = []
        for queued in list(lane.queue):
            if run_id is None or queued.run_id == run_id:
                if queued.cancel_reason is None:
                    self._cancel_queued(lane, queued, "aborted")
                    aborted.append(queued.run_id)
        active = lane.active
        if active is not None and (run_id is None or active.run_id == run_id):
            if active.cancel_reason is None and not active.ending:  # an ending run has ended
                self._cancel_active(active, "aborted")
                aborted.append(active.run_id)
        return aborted

    # -- inspection ------------------------------------------------------------------------

    def active(self, session_key: str) -> Run | None:
        lane = self._lanes.get(session_key)
        return None if lane is None else lane.active

    def queued(self, session_key: str) -> tuple[Run, ...]:
        lane = self._lanes.get(session_key)
        return () if lane is None else tuple(lane.queue)

    def idle(self, session_key: str) -> bool:
        """True when a run submitted for the session now would start at once: nothing active
        or queued there, and a free global slot."""
        lane = self._lanes.get(session_key)
        return (lane is None or (lane.active is None and not lane.queue)) and \
            not self._slots.locked()

    def keys(self) -> list[str]:
        """Sessions that have a lane now (a run active or queued)."""
        return list(self._lanes)

    def active_keys(self) -> list[str]:
        return [k for k, lane in self._lanes.items() if lane.active is not None]

    async def aclose(self, deadline_s: float = 10.0) -> None:
        """Let active and queued runs finish for up to ``deadline_s``, then abort the rest."""
        if self._workers:
            _, pending = await asyncio.wait(list(self._workers), timeout=deadline_s)
            if pending:
                for key in list(self._lanes):
                    self.abort(key)
                await asyncio.gather(*pending, return_exceptions=True)

    # -- the worker ------------------------------------------------------------------------

    async def _work(self, lane: _Lane) -> None:
        try:
            while lane.queue:
                head = lane.queue[0]
                if head.cancel_reason is None and head.mode == "collect" and self._window > 0:
                    await self._quiet(lane)
                run = lane.queue.popleft()
                if run.cancel_reason is not None:
                    await self._finish_cancelled(run)
                    continue
                if run.mode == "collect":
                    self._coalesce(lane, run)
                if self._claim is not None and not await self._claimed(lane, run):
                    continue
                async with self._slots:
                    if run.cancel_reason is not None:  # aborted while waiting for a slot
                        await self._finish_cancelled(run)
                        lane.active = None  # set by a claim
                        run.resolve(RunResult(run.run_id, run.session_key, "aborted",
                                              stop_reason=run.cancel_reason))
                        continue
                    await self._execute(lane, run)
        finally:
            lane.worker = None
            if not lane.queue and lane.active is None:
                self._lanes.pop(lane.key, None)

    async def _execute(self, lane: _Lane, run: Run) -> None:
        lane.active = run
        run.status = "running"
        run.started_at = time.monotonic()
        self.running += 1
        self.peak_running = max(self.peak_running, self.running)
        run.task = asyncio.get_running_loop().create_task(
            self._runner(run), name=f"run:{run.run_id}"
        )
        try:
            result = await asyncio.shield(run.task)
        except asyncio.CancelledError:
            worker = asyncio.current_task()
            if worker is None or not worker.cancelling():
                # Only the run was cancelled, before its first step: the runner never saw it,
                # so record it as an abort that never started and keep serving the lane.
                result = await self._never_started(run)
            else:
                # The lane itself is being torn down: stop the run and let it record the abort
                # (or its end, when it is recording that already).
                if not run.ending:
                    run.task.cancel()
                run.resolve(await _settle(run))
                raise
        except Exception as exc:  # the runner records its own errors; this is a last resort
            result = RunResult(run.run_id, run.session_key, "error", error=str(exc))
        finally:
            self.running -= 1
            lane.active = None
        run.status = result.status
        run.resolve(result)

    async def _claimed(self, lane: _Lane, run: Run) -> bool:
        """Wait for the run's claim; it is the lane's active run meanwhile, so an abort finds
        it. False when it was cancelled while waiting (recorded) or cannot be claimed here."""
        assert self._claim is not None
        lane.active = run
        try:
            claimed = await self._claim(run)
        except Exception as exc:  # not this replica's run any more (taken over): not ours
            lane.active = None
            run.status = "error"
            run.resolve(RunResult(run.run_id, run.session_key, "error", error=str(exc)))
            return False
        if not claimed and run.cancel_reason is None:  # deferred: behind the front runs
            run.deferred = False
            lane.active = None
            # A front run deferred by a later front run still goes first (session order).
            at = 0 if run.front else next(
                (i for i, q in enumerate(lane.queue) if not q.front), len(lane.queue))
            lane.queue.insert(at, run)
            return False
        if run.cancel_reason is not None:
            await self._finish_cancelled(run)
            lane.active = None
            run.status = "aborted"
            run.resolve(RunResult(run.run_id, run.session_key, "aborted",
                                  stop_reason=run.cancel_reason))
            return False
        return True

    async def _quiet(self, lane: _Lane) -> None:
        while True:
            lane.arrived.clear()
            try:
                await asyncio.wait_for(lane.arrived.wait(), self._window)
            except TimeoutError:
                return

    def _coalesce(self, lane: _Lane, run: Run) -> None:
        while lane.queue and lane.queue[0].mode == "collect" and not lane.queue[0].cancel_reason:
            later = lane.queue.popleft()
            run.messages.extend(later.messages)
            run.merged_ids.append(later.run_id)
            run.done.add_done_callback(_follow(later))

    def _cancel_queued(self, lane: _Lane, run: Run, reason: str) -> None:
        run.cancel_reason = reason
        run.status = "aborted"
        run.resolve(RunResult(run.run_id, run.session_key, "aborted", stop_reason=reason))
        # The run stays queued so the worker records it (its message is durable already).
        if self._dropped is not None:
            self._dropped(run)

    def _cancel_active(self, run: Run, reason: str) -> None:
        run.cancel_reason = reason
        if run.task is not None and not run.ending:
            run.task.cancel(reason)

    async def _finish_cancelled(self, run: Run) -> None:
        if self._cancelled is not None:
            try:
                await self._cancelled(run)
            except Exception:  # recording an abort must never stop the lane
                pass

    async def _never_started(self, run: Run) -> RunResult:
        await self._finish_cancelled(run)
        return RunResult(run.run_id, run.session_key, "aborted",
                         stop_reason=run.cancel_reason or "aborted")


def _follow(run: Run) -> Callable[[asyncio.Future[RunResult]], None]:
    """A done-callback resolving ``run`` with the result of the run it was merged into."""

    def resolve(done: asyncio.Future[RunResult]) -> None:
        if not done.cancelled():
            run.resolve(_merged(done.result(), run))

    return resolve


def _merged(result: RunResult, run: Run) -> RunResult:
    return RunResult(run.run_id, run.session_key, result.status, result.text, result.stop_reason,
                     result.error, result.usage, result.tool_calls, merged_into=result.run_id)


async def _settle(run: Run) -> RunResult:
    assert run.task is not None
    try:
        return await run.task
    except BaseException as exc:
        return RunResult(run.run_id, run.session_key, "aborted", error=str(exc))
