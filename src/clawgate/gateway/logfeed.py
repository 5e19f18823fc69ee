"""Pushed log lines: ``logs.subscribe`` connections get ``logs.appended`` events as the
gateway's log ring grows, instead of polling ``logs.tail``.

OpenClaw has no such push (its Control UI polls ``logs.tail``); this is clawgate's own, built
so a ``logs.tail`` reader needs nothing new: an event's payload is exactly a ``logs.tail``
answer of the ring (``{file, cursor, size, lines, truncated?, reset?}``) continuing from the
cursor the subscriber was last sent, and ``logs.subscribe`` answers with the first tail.

Bounded (I12), per client and in total: at most :data:`MAX_FOLLOWERS` connections follow at
once (another is refused, counted in ``logs_subscriptions_refused_total``); one push carries at
most :data:`PUSH_LINES` lines and :data:`PUSH_BYTES` bytes (a follower further behind gets the
rest in the next pushes, or ``reset`` when the ring dropped lines it never got); pushes leave at
most every :data:`PUSH_INTERVAL_S` (so a log line written *because* of a push cannot spin a
loop), and the hub's per-connection and total byte budgets close a reader that does not keep
up. Followers at the same cursor share one encoded event.

Records arrive on any thread (plugins, libraries); the ring's emit only schedules a wake-up on
the gateway's loop, at most one pending at a time.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any

from clawgate.diagnostics.metrics import Metrics
from clawgate.gateway.hub import Hub, Peer
from clawgate.gateway.logring import LogRing, tail_ring

EVENT = "logs.appended"
MAX_FOLLOWERS = 16
PUSH_LINES = 500
PUSH_BYTES = 256 * 1024
PUSH_INTERVAL_S = 0.25


class LogFeed:
    """Who follows the log ring, and the task that pushes them what is new."""

    def __init__(self, ring: LogRing, hub: Hub, metrics: Metrics) -> None:
        self.ring = ring
        self.hub = hub
        self.metrics = metrics
        self.followers: dict[Peer, int] = {}  # peer -> the ring cursor it was sent up to
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = threading.Event()  # a wake-up is scheduled and has not run yet
        metrics.gauge("logs_followers", lambda: len(self.followers))

    def follow(self, peer: Peer, limit: int, max_bytes: int) -> dict[str, Any] | None:
        """Start pushing to ``peer``; the ``logs.tail`` answer it starts from, or None (nothing
        changes) when :data:`MAX_FOLLOWERS` others already follow."""
        self._prune()
        if peer not in self.followers and len(self.followers) >= MAX_FOLLOWERS:
            self.metrics.inc("logs_subscriptions_refused_total")
            return None
        first = tail_ring(self.ring, None, limit, max_bytes)
        self.followers[peer] = int(first["cursor"])
        return first

    def unfollow(self, peer: Peer) -> None:
        self.followers.pop(peer, None)

    def _prune(self) -> None:
        """Forget connections that left the hub (their subscription ended with them)."""
        for peer in [p for p in self.followers if p not in self.hub.joined]:
            del self.followers[peer]

    def _notify(self) -> None:
        """Called by the ring on every record, on whatever thread logged it."""
        loop = self._loop
        if loop is None or not self.followers or self._pending.is_set():
            return
        self._pending.set()
        try:
            loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closing: nobody is left to push to
            self._pending.clear()

    def push(self) -> int:
        """Send every follower what it has not had yet; how many events were encoded."""
        self._prune()
        by_cursor: dict[int, list[Peer]] = defaultdict(list)
        for peer, cursor in self.followers.items():
            by_cursor[cursor].append(peer)
        events = 0
        behind = False
        for cursor, peers in by_cursor.items():
            answer = tail_ring(self.ring, cursor, PUSH_LINES, PUSH_BYTES)
            if not answer["lines"] and not answer.get("reset"):
                continue
            self.hub.broadcast(EVENT, answer, to=peers)
            events += 1
            behind = behind or bool(answer.get("truncated"))
            for peer in peers:
                self.followers[peer] = int(answer["cursor"])
        if behind:
            self._wake.set()  # the rest in the next push
        self.metrics.inc("logs_pushes_total", events)
        return events

    async def run(self, stop: asyncio.Event) -> None:
        """Push until ``stop`` is set (the gateway's lifespan owns this task)."""
        self._loop = asyncio.get_running_loop()
        self.ring.on_record = self._notify
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._wake_on(stop), name="logs-feed-stop")
                while not stop.is_set():
                    await self._wake.wait()
                    if stop.is_set():
                        break
                    # Coalesce: one push per interval however many lines came.
                    await asyncio.sleep(PUSH_INTERVAL_S)
                    if stop.is_set():  # (its wake-up must not be cleared below)
                        break
                    self._wake.clear()
                    self._pending.clear()
                    if self.followers:
                        self.push()
        finally:
            self.ring.on_record = None
            self._loop = None

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()
