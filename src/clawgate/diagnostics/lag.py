"""Event-loop lag: how late the loop wakes up, and what blocked it when it was very late.

One task on the loop sleeps ``interval_s`` at a time and records how much later than asked it
woke (histogram ``event_loop_lag_seconds``). A watchdog thread watches the task's heartbeat:
once it is older than ``threshold_s`` the loop is stuck *right now*, so the thread takes the
loop thread's Python stack at that moment and asks ``describe`` what it is (the host names a
plugin's hook, tool or function). When the loop comes back, the stall is logged as a warning
naming that code, counted (``event_loop_stalls_total``) and written to the diagnostics
timeline (a ``diagnostic.event`` record named ``event_loop.stall``).

A coroutine that calls ``time.sleep`` (or any blocking call) stalls every connection, probe and
turn of the gateway; without this it happened silently.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from clawgate.diagnostics.metrics import Metrics
from clawgate.diagnostics.timeline import Timeline

log = logging.getLogger("clawgate.loop")

Describe = Callable[[FrameType], str | None]
IDLE = "nothing (the loop was waiting for I/O)"


class LagMonitor:
    """Measures the loop's lag and names what blocked it (run ``run()`` as a task)."""

    def __init__(self, metrics: Metrics, timeline: Timeline, *, describe: Describe | None = None,
                 threshold_s: float = 0.25, interval_s: float = 0.2) -> None:
        self.metrics = metrics
        self.timeline = timeline
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self._describe = describe
        self._beat = time.monotonic()
        self._culprit: str | None = None
        self._halt = threading.Event()
        metrics.inc("event_loop_stalls_total", 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set: measure, and let the watchdog thread sample stalls."""
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()
        watchdog = threading.Thread(target=self._watch, args=(loop_thread,), daemon=True,
                                    name="clawgate-loop-watchdog")
        self._halt.clear()
        self._beat = time.monotonic()
        watchdog.start()
        # A timer callback, not a task (no task, future and timeout per beat), five times a
        # second: the beat is most of an idle gateway's wake-ups (each ~0.1-0.2 ms of CPU from
        # idle); a stall longer than ``threshold_s`` is caught all the same.
        handle: asyncio.TimerHandle | None = None

        def beat() -> None:
            nonlocal handle
            woke = time.monotonic()
            lag = max(0.0, woke - self._beat - self.interval_s)
            self._beat = woke
            self.metrics.observe("event_loop_lag_seconds", lag)
            if lag > self.threshold_s and not stop.is_set():
                self._stalled(lag)
            handle = loop.call_later(self.interval_s, beat)

        handle = loop.call_later(self.interval_s, beat)
        try:
            await stop.wait()
        finally:
            handle.cancel()
            self._halt.set()
            await asyncio.to_thread(watchdog.join, 1.0)

    def _stalled(self, lag: float) -> None:
        culprit, self._culprit = self._culprit or "unknown code", None
        if culprit == IDLE:  # nothing of ours ran: the process did not get the CPU
            log.info("event loop woke %.0f ms late while idle (the machine is busy)",
                     lag * 1000)
            return
        self.metrics.inc("event_loop_stalls_total")
        self.timeline.event("diagnostic.event", "event_loop.stall",
                            attributes={"lagMs": round(lag * 1000, 1), "running": culprit})
        log.warning("event loop blocked for %.0f ms by %s (blocking calls in async code stall "
                    "every client; run them in a thread)", lag * 1000, culprit)

    def _watch(self, loop_thread: int) -> None:
        # Sleep until the last beat would be ``threshold_s`` old: while the loop beats the
        # thread wakes a few times a second, and a stall is sampled the moment it is one.
        sampled_beat = -1.0
        wait = self.threshold_s
        while not self._halt.wait(wait):
            beat = self._beat
            age = time.monotonic() - beat
            wait = max(0.01, self.threshold_s - age) if beat != sampled_beat \
                else self.threshold_s / 2
            if age > self.threshold_s and beat != sampled_beat:
                sampled_beat = beat  # one sample per stall
                frame = sys._current_frames().get(loop_thread)
                if frame is not None:
                    self._culprit = self._name(frame)

    def _name(self, frame: FrameType) -> str:
        if frame.f_code.co_name == "select" and frame.f_code.co_filename.endswith(
                "selectors.py"):
            return IDLE  # the loop is waiting for I/O: late only because it was not scheduled
        described = None
        if self._describe is not None:
            try:
                described = self._describe(frame)
            except Exception:  # naming must never break the watchdog
                described = None
        if described:
            return described
        return f"{frame.f_code.co_qualname} ({frame.f_code.co_filename}:{frame.f_lineno})"
