"""The in-process event bus: the engine publishes run and session events; surfaces subscribe.

Publishing never blocks and never grows memory without bound: every subscription has a bounded
queue, and a subscriber that falls behind is marked ``overflowed`` (and stops receiving) so the
surface that owns it can disconnect the slow client. Subscriptions may filter by run id or
session key, so a streamed HTTP completion only wakes for its own run.

Replicas. On a shared store every event published here is also handed to ``bus.export``
(:mod:`clawgate.agents.fanout` writes it to the events log for the other replicas); events
that came from another replica are published with ``remote=True``: local subscribers get
them, the export does not (an event is fanned out once, by the replica that produced it).
Without an export (SQLite) publishing costs one attribute test more.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from clawgate.sessions.transcript import StoredMessage

# ``run_status`` carries a run's start-up phase (``preparing_context``, ``starting_model``) and
# ``usage`` its running output-token count after each model call (OpenClaw's streams).
Stream = Literal["lifecycle", "assistant", "tool", "run_status", "usage",
                 "compaction"]
SessionChange = Literal["created", "send", "start", "end", "patch", "reset", "delete", "inject",
                        "command", "compact"]


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One event of one run. ``seq`` counts per run, from 1."""

    run_id: str
    session_key: str
    stream: Stream
    data: dict[str, Any]
    seq: int
    ts: int = field(default_factory=lambda: int(time.time() * 1000))

    def payload(self) -> dict[str, Any]:
        """The OpenClaw ``agent`` event payload."""
        return {"runId": self.run_id, "seq": self.seq, "stream": self.stream, "ts": self.ts,
                "data": self.data, "sessionKey": self.session_key}


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A session changed: a message was admitted (``send``), a run started or ended, a field
    was patched, the session was reset, deleted or created. ``run_id`` names the run when one
    is involved; ``fields`` carries what changed (a patch's wire fields, a run's status)."""

    session_key: str
    change: SessionChange
    run_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    ts: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """Messages just committed to a session's transcript, in transcript order (published by
    whoever stored them, after the commit: the runner for a turn, the engine for an inject)."""

    session_key: str
    messages: tuple[StoredMessage, ...]
    run_id: str | None = None
    ts: int = field(default_factory=lambda: int(time.time() * 1000))


Event = RunEvent | SessionEvent | MessageEvent


class Subscription:
    """A bounded mailbox of events; iterate it, or ``get()`` one event at a time."""

    def __init__(self, bus: EventBus, *, run_id: str | None, session_key: str | None,
                 maxsize: int, sessions: bool = False,
                 streams: frozenset[Stream] | None = None,
                 when: Callable[[Event], bool] | None = None) -> None:
        self.run_id = run_id
        self.session_key = session_key
        self.sessions = sessions  # session events too, not only run events
        self.streams = streams  # the run-event streams it wants (None: all)
        # A last test, run at publish time: what fails it never wakes the reader.
        self.when = when
        if maxsize < 1:
            raise ValueError("a subscription's mailbox holds at least one event")
        self.overflowed = False
        self._bus = bus
        self._max = maxsize
        # One slot more than the bound, for wake()'s marker (None), which never overflows.
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize + 1)
        self._woken = False

    def wants(self, event: Event) -> bool:
        if isinstance(event, RunEvent):
            if self.streams is not None and event.stream not in self.streams:
                return False
        elif not self.sessions:
            return False
        return (self.run_id is None or event.run_id == self.run_id) and (
            self.session_key is None or event.session_key == self.session_key
        ) and (self.when is None or self.when(event))

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        if self._queue.qsize() >= self._max + self._woken:
            self.overflowed = True
            return
        self._queue.put_nowait(event)

    def wake(self) -> None:
        """Wake a reader waiting in :meth:`next` (once): after the events queued before it,
        it gets None. A turn's end calls it, so its reader needs no second thing to wait on."""
        if not self._woken:
            self._woken = True
            self._queue.put_nowait(None)

    async def next(self) -> Event | None:
        """The next event, or None once :meth:`wake` was called and what came before is read."""
        return await self._queue.get()

    async def get(self) -> Event:
        while (event := await self._queue.get()) is None:
            pass  # a wake-up marker: only next() readers care
        return event

    @property
    def queued(self) -> int:
        """Events waiting in the mailbox."""
        return self._queue.qsize()

    def get_nowait(self) -> Event | None:
        """The next queued event, or None when there is none (or only the wake-up marker)."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of run events to subscriptions, indexed by run id for cheap per-run streams."""

    def __init__(self) -> None:
        self._by_run: dict[str, set[Subscription]] = {}
        self._others: set[Subscription] = set()
        # The run-event streams some subscription of ``_others`` takes (None: every stream),
        # kept with ``_others`` so that ``listens`` is a lookup, not a walk.
        self._other_streams: frozenset[Stream] | None = frozenset()
        # Called with every local event (never with a remote one); set by the fan-out.
        self.export: Callable[[Event], None] | None = None

    def subscribe(self, *, run_id: str | None = None, session_key: str | None = None,
                  maxsize: int = 1024, sessions: bool = False,
                  streams: frozenset[Stream] | None = None,
                  when: Callable[[Event], bool] | None = None) -> Subscription:
        """A mailbox of run events (of ``run_id`` / ``session_key`` when given; of the
        ``streams`` given, e.g. only ``lifecycle``: a run's text deltas then never reach it),
        and of session and message events too with ``sessions=True``; with ``when``, only of
        the events it passes (tested as they are published, so the rest cost no wake-up)."""
        sub = Subscription(self, run_id=run_id, session_key=session_key, maxsize=maxsize,
                           sessions=sessions, streams=streams, when=when)
        if run_id is not None:
            self._by_run.setdefault(run_id, set()).add(sub)
        else:
            self._others.add(sub)
            self._index_streams()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.run_id is not None:
            subs = self._by_run.get(sub.run_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_run[sub.run_id]
        else:
            self._others.discard(sub)
            self._index_streams()

    def _index_streams(self) -> None:
        wanted: set[Stream] = set()
        for sub in self._others:
            if sub.streams is None:
                self._other_streams = None
                return
            wanted |= sub.streams
        self._other_streams = frozenset(wanted)

    def listens(self, run_id: str, stream: Stream) -> bool:
        """Whether a run event of ``run_id`` on ``stream`` could reach anyone (the export, a
        subscription to the run, or one taking that stream), so a publisher can skip building
        it: a turn's text deltas are most of its events, and usually nobody follows them."""
        if self.export is not None or run_id in self._by_run:
            return True
        streams = self._other_streams
        return streams is None or stream in streams

    def publish(self, event: Event, *, remote: bool = False) -> None:
        """Hand ``event`` to its subscribers (and to the export unless it is ``remote``:
        produced by another replica)."""
        if self.export is not None and not remote:
            self.export(event)
        if isinstance(event, RunEvent):
            for sub in self._by_run.get(event.run_id, ()):
                if sub.wants(event):
                    sub.offer(event)
        for sub in self._others:
            if sub.wants(event):
                sub.offer(event)

    @property
    def subscribers(self) -> int:
        return len(self._others) + sum(len(s) for s in self._by_run.values())
