"""The doorbell: a small "look now" between the gateways sharing one store.

A ring carries a topic and a short payload (an id, a session key), never data: whoever hears
it reads what changed from the store. A ring is a hint, so losing one only adds latency —
every subscriber also looks on its own every few seconds (``Bell.wait(within)`` returns on
the timeout too), and a dead listening connection costs nothing but that delay.

- PostgreSQL: ``NOTIFY`` on one channel (:data:`CHANNEL`, payload ``<topic>:<payload>``); one
  dedicated ``LISTEN`` connection per process, in a thread of its own, reconnecting with
  backoff. A ring made inside a write job (:func:`notify_sql`) is sent by the server at that
  transaction's commit, never before; :meth:`PgDoorbell.ring` is such a job on its own. After a
  reconnect every subscriber is woken (rings may have been lost meanwhile).
- SQLite (one process): :class:`LocalDoorbell` hands a ring to the process's own subscribers.

Topics: :data:`EVENTS` (a new row of the events log, payload its id) and :data:`SESSION_FREE`
(a session's run ended on some replica, payload the session key: a replica waiting to run the
next queued turn of that session looks again). Every subscription is a bounded queue; when it
is full the oldest payload is dropped and ``Bell.missed`` is set, which tells the subscriber to
look at everything (a ring is only ever a hint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from clawgate.sessions import postgres

log = logging.getLogger("clawgate.doorbell")

CHANNEL = "clawgate"
EVENTS = "events"
SESSION_FREE = "session.free"
TOPICS = frozenset({EVENTS, SESSION_FREE})
MAX_PAYLOAD = 512  # bytes; NOTIFY allows 8000, a doorbell needs an id
BELL_QUEUE = 256  # payloads one subscription holds before it drops the oldest
LISTEN_WAIT_S = 0.5  # how long the listening thread blocks before it checks for stop
RECONNECT_MAX_S = 10.0

Write = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]


def check(topic: str, payload: str) -> str:
    """The wire text of a ring; a clear error for an unknown topic or a long payload."""
    if topic not in TOPICS:
        raise ValueError(f"doorbell topic {topic!r}: one of {', '.join(sorted(TOPICS))}")
    text = f"{topic}:{payload}"
    if len(text.encode()) > MAX_PAYLOAD:
        raise ValueError(f"doorbell payload of {topic!r}: at most {MAX_PAYLOAD} bytes "
                         "(ring an id; the data stays in the store)")
    return text


def notify_sql() -> str:
    """The statement that rings inside a write job (parameter: :func:`check`'s text)."""
    return f"SELECT pg_notify('{CHANNEL}', ?)"


class Bell:
    """One subscription to a topic: a bounded queue of payloads."""

    def __init__(self, owner: _Bells, topic: str, maxsize: int) -> None:
        self.topic = topic
        self.missed = False  # payloads were dropped (or rings lost): look at everything
        self._owner = owner
        self._queue: deque[str] = deque(maxlen=maxsize)
        self._event = asyncio.Event()

    def offer(self, payload: str | None) -> None:
        """Queue ``payload`` (None: "look at everything", after a reconnect)."""
        if payload is None:
            self.missed = True
        else:
            if len(self._queue) == self._queue.maxlen:
                self.missed = True
            self._queue.append(payload)
        self._event.set()

    async def wait(self, within: float | None) -> list[str]:
        """The payloads rung since the last call — at once if there are some, else after the
        next ring or ``within`` seconds (then empty: time to look anyway)."""
        if not self._queue and not self.missed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), within)
        self._event.clear()
        out = list(self._queue)
        self._queue.clear()
        return out

    def close(self) -> None:
        self._owner.unsubscribe(self)


class _Bells:
    """The subscriptions of one process, by topic."""

    def __init__(self) -> None:
        self._by_topic: dict[str, set[Bell]] = {}

    def subscribe(self, topic: str, maxsize: int = BELL_QUEUE) -> Bell:
        check(topic, "")
        bell = Bell(self, topic, maxsize)
        self._by_topic.setdefault(topic, set()).add(bell)
        return bell

    def unsubscribe(self, bell: Bell) -> None:
        self._by_topic.get(bell.topic, set()).discard(bell)

    def deliver(self, text: str | None) -> None:
        """On the loop: hand a ring (``topic:payload``; None wakes every subscriber)."""
        if text is None:
            for bells in self._by_topic.values():
                for bell in bells:
                    bell.offer(None)
            return
        topic, _, payload = text.partition(":")
        for bell in self._by_topic.get(topic, ()):
            bell.offer(payload)


class Doorbell(Protocol):
    """What the gateway uses: ``start``/``stop``, ``ring`` after a commit, ``subscribe``."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ring(self, topic: str, payload: str) -> None: ...

    def subscribe(self, topic: str, maxsize: int = BELL_QUEUE) -> Bell: ...


class LocalDoorbell(_Bells):
    """One process (SQLite): a ring reaches this process's subscribers, nothing else."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ring(self, topic: str, payload: str) -> None:
        self.deliver(check(topic, payload))


class PgDoorbell(_Bells):
    """``LISTEN``/``NOTIFY`` on the store's PostgreSQL database."""

    def __init__(self, url: str, write: Write) -> None:
        super().__init__()
        self._url = url
        self._write = write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listening = threading.Event()  # set while the LISTEN connection is up
        self.reconnects = 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._listen, name="clawgate-doorbell",
                                        daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            await asyncio.to_thread(thread.join)

    async def ring(self, topic: str, payload: str) -> None:
        """Ring after the current writes: a job of its own on the store's writer, so it goes
        out when that batch commits."""
        text = check(topic, payload)
        await self._write(lambda c: c.execute(notify_sql(), (text,)))

    def _hand(self, text: str | None) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody listens
                loop.call_soon_threadsafe(self.deliver, text)

    def _listen(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            conn: postgres.Connection | None = None
            try:
                conn = postgres.connect(self._url)
                conn.raw.execute(f"LISTEN {CHANNEL}")
                if self.reconnects:
                    self._hand(None)  # rings may have been lost while it was down
                self.listening.set()
                delay = 0.5
                while not self._stop.is_set():
                    for note in conn.raw.notifies(timeout=LISTEN_WAIT_S):
                        self._hand(note.payload)
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("doorbell: the LISTEN connection failed (%s); reconnecting in "
                            "%.1f s (subscribers poll meanwhile)", " ".join(str(exc).split()),
                            delay)
                self._stop.wait(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
            finally:
                self.listening.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
            self.reconnects += 1
