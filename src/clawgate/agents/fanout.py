"""Fan-out between replicas: engine events produced here reach the buses of the other gateways
on the same PostgreSQL store, and theirs reach this one (so a UI on replica A sees a turn that
runs on replica B: ``agent``/``chat`` streams, ``sessions.changed``, ``session.message``).

Out: ``bus.export`` appends each local event to a bounded buffer (:data:`MAX_PENDING` events;
past that the oldest are dropped and counted in ``events_fanout_dropped_total``); one writer
task turns what accumulated during :data:`FLUSH_S` into one row of the events log — a turn's
many streaming deltas travel as a few rows, not one each — and that row's insert rings the
doorbell at its commit.

In: one reader task waits for the doorbell's ``events`` topic (or :data:`POLL_S`, the polling
fallback; rings of its own rows are ignored), reads the rows after its cursor that other
replicas wrote, and republishes their
events on the local bus with ``remote=True`` (so they are never exported again). Per-client
limits stay where they are: the hub disconnects a slow WebSocket client whatever replica the
event came from.

On SQLite (one process) nothing of this runs and the bus has no export.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from typing import Any

import orjson

from clawgate.agents.bus import Event, EventBus, MessageEvent, RunEvent, SessionEvent
from clawgate.diagnostics.metrics import Metrics
from clawgate.sessions import doorbell
from clawgate.sessions.events import READ_LIMIT, Cursor, EventLog
from clawgate.sessions.transcript import StoredMessage

log = logging.getLogger("clawgate.fanout")

FLUSH_S = 0.05  # events of this long travel as one row (the relay sends deltas as often)
MAX_PENDING = 8_192  # events waiting to be written (drop oldest past that)
POLL_S = 2.0  # the reader looks at the log this often without a ring
PRUNE_S = 60.0


def encode(event: Event) -> dict[str, Any]:
    """An event as JSON (the inverse of :func:`decode`)."""
    if isinstance(event, RunEvent):
        return {"k": "run", "run": event.run_id, "key": event.session_key,
                "stream": event.stream, "data": event.data, "seq": event.seq, "ts": event.ts}
    if isinstance(event, SessionEvent):
        return {"k": "session", "key": event.session_key, "change": event.change,
                "run": event.run_id, "fields": event.fields, "ts": event.ts}
    return {"k": "message", "key": event.session_key, "run": event.run_id, "ts": event.ts,
            "messages": [dataclasses.asdict(m) for m in event.messages]}


def decode(item: dict[str, Any]) -> Event:
    kind = item["k"]
    if kind == "run":
        return RunEvent(item["run"], item["key"], item["stream"], item["data"], item["seq"],
                        item["ts"])
    if kind == "session":
        return SessionEvent(item["key"], item["change"], item["run"], item["fields"],
                            item["ts"])
    if kind == "message":
        return MessageEvent(item["key"], tuple(StoredMessage(**m) for m in item["messages"]),
                            item["run"], item["ts"])
    raise ValueError(f"events log: unknown event kind {kind!r}")


class Fanout:
    """The events of one replica, out to the log and in from it. ``start()``/``stop()``."""

    def __init__(self, bus: EventBus, log_: EventLog, bell: doorbell.Doorbell, metrics: Metrics,
                 *, replica_id: str) -> None:
        self.bus = bus
        self.log = log_
        self.bell = bell
        self.metrics = metrics
        self.replica_id = replica_id
        self.poll_s = POLL_S
        self._pending: deque[Event] = deque(maxlen=MAX_PENDING)
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.cursor = Cursor()

    async def start(self) -> None:
        self.cursor = Cursor(await self.log.last_id())  # what happened before is not replayed
        subscription = self.bell.subscribe(doorbell.EVENTS)
        self.bus.export = self._collect
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write(), name="clawgate-fanout-out"),
                       loop.create_task(self._read(subscription), name="clawgate-fanout-in")]

    async def stop(self) -> None:
        """Stop both tasks, then write what is still pending (best effort, bounded)."""
        self.bus.export = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush(), 2.0)

    def _collect(self, event: Event) -> None:
        if len(self._pending) == MAX_PENDING:
            self.metrics.inc("events_fanout_dropped_total")
        self._pending.append(event)
        self._ready.set()

    async def _write(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(FLUSH_S)  # let the rest of this burst arrive
            self._ready.clear()
            await self._flush()

    async def _flush(self) -> None:
        batch = list(self._pending)
        self._pending.clear()
        if not batch:
            return
        body = orjson.dumps([encode(e) for e in batch]).decode()
        try:
            await self.log.append(self.replica_id, body, ring=True)
            self.metrics.inc("events_fanout_rows_total")
        except Exception as exc:  # the store is down: these events are lost to the others
            self.metrics.inc("events_fanout_dropped_total", len(batch))
            log.warning("fan-out: %d events not written (%s)", len(batch),
                        " ".join(str(exc).split()))

    async def _read(self, bell: doorbell.Bell) -> None:
        loop = asyncio.get_running_loop()
        pruned = loop.time()
        try:
            while True:
                rung = await bell.wait(self.poll_s)
                missed, bell.missed = bell.missed, False
                own = f"{self.replica_id}/"
                if rung and not missed and all(p.startswith(own) for p in rung):
                    continue  # only this replica's own rows: nothing to read
                try:
                    await self.pull()
                    if loop.time() - pruned > PRUNE_S:
                        pruned = loop.time()
                        await self.log.prune()
                except Exception as exc:  # the store is down: the next look catches up
                    log.warning("fan-out: reading the events log failed (%s)",
                                " ".join(str(exc).split()))
        finally:
            bell.close()

    async def pull(self) -> int:
        """Read the log past the cursor and publish other replicas' events; returns how many."""
        published = 0
        while True:
            rows = await self.log.since(self.cursor.floor)
            fresh = self.cursor.take(rows)
            for row in fresh:
                if row.replica == self.replica_id:
                    continue
                try:
                    events = [decode(item) for item in orjson.loads(row.body)]
                except Exception as exc:  # a row this version cannot read: skip it, loudly
                    log.warning("fan-out: event row %d unreadable (%s)", row.id, exc)
                    continue
                for event in events:
                    self.bus.publish(event, remote=True)
                published += len(events)
            if len(rows) < READ_LIMIT or not fresh:
                self.metrics.inc("events_fanout_received_total", published)
                return published
