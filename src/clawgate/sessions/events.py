"""The events log: engine events one replica hands to the others (table ``events``).

A row is a batch of events (``body``: JSON written by :mod:`clawgate.agents.fanout`) from one
replica; appending it rings the doorbell's ``events`` topic (payload ``<replica>/<id>``) in the
same statement, so the ring goes out when the row commits. On PostgreSQL rows are written on a
connection of their own (:class:`SideWriter`). Rows are read by id and pruned by age: the log is
a hand-over, not a history (a replica that was away for longer than :data:`KEEP_MS` has missed
them, as a WebSocket client that reconnects has).

Ids come from a sequence and are taken before commit, so rows can become visible out of order
(replica A takes 5, B takes 6, B commits first). :class:`Cursor` therefore remembers the ids
below its high-water mark it has not seen yet ("holes") for :data:`HOLE_S` seconds and reads
them again; an id that never appears (a rolled-back insert) is given up after that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from clawgate.sessions import doorbell
from clawgate.sessions.backend import Backend

T = TypeVar("T")
Submit = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]

KEEP_MS = 300_000  # rows older than this are pruned
HOLE_S = 10.0  # how long an unseen id below the high-water mark is waited for
MAX_HOLES = 4_096
READ_LIMIT = 512  # rows per read


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    replica: str
    body: str


class Cursor:
    """Which rows of the log a reader has seen: a high-water mark and the holes below it."""

    def __init__(self, after: int = 0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.after = after
        self.holes: dict[int, float] = {}  # id -> when it was found missing
        self.lost = 0  # holes given up on
        self._clock = clock

    @property
    def floor(self) -> int:
        """Read rows with ids above this (the oldest hole's predecessor, else the mark)."""
        return min(self.holes) - 1 if self.holes else self.after

    def take(self, rows: list[Row]) -> list[Row]:
        """The rows not seen before, in id order; advances the mark and tracks holes."""
        now = self._clock()
        fresh = []
        for row in sorted(rows, key=lambda r: r.id):
            if row.id <= self.after:
                if self.holes.pop(row.id, None) is not None:
                    fresh.append(row)
                continue
            for missing in range(self.after + 1, row.id):
                if len(self.holes) < MAX_HOLES:
                    self.holes[missing] = now
            self.after = row.id
            fresh.append(row)
        for hole, since in list(self.holes.items()):
            if now - since > HOLE_S:
                del self.holes[hole]
                self.lost += 1
        return fresh


class SideWriter:
    """A write connection of the log's own (PostgreSQL), in a thread of its own: its one
    autocommit statement per row never waits behind a batch of turns in the store's writer,
    and no turn waits behind it. A lost connection is opened again for the next row."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._conn: sqlite3.Connection | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, "clawgate-db-events")

    async def __call__(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, fn)

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is not None and not self._backend.alive(self._conn):
            self._drop()
        if self._conn is None:
            self._conn = self._backend.reopen_writer()
        try:
            return fn(self._conn)
        except Exception as exc:
            error = self._backend.storage_error(exc)
            if not self._backend.alive(self._conn):
                self._drop()
            if error is not None:
                raise error from exc
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._pool.shutdown(wait=True)
        self._drop()


class EventLog:
    """The ``events`` table: rows written by ``write`` (the store's writer, or on PostgreSQL a
    :class:`SideWriter`), read on the store's readers."""

    def __init__(self, write: Submit[Any], read: Submit[Any], clock: Callable[[], int]) -> None:
        self._write = write
        self._read = read
        self._clock = clock

    async def append(self, replica: str, body: str, *, ring: bool) -> int:
        """Add a row (and ring ``events`` at its commit when ``ring``: PostgreSQL only);
        returns its id."""
        now = self._clock()

        def job(c: sqlite3.Connection) -> int:
            insert = "INSERT INTO events (replica, created_at, body) VALUES (?, ?, ?) " \
                "RETURNING id, replica"
            if not ring:
                return int(c.execute(insert, (replica, now, body)).fetchone()[0])
            # One statement, one round trip: the ring (``events:<replica>/<id>``, so a replica
            # can tell its own rows' rings) is sent when this statement's transaction commits.
            row = c.execute(
                f"WITH e AS ({insert}) SELECT id, pg_notify('{doorbell.CHANNEL}', "
                f"'{doorbell.EVENTS}:' || replica || '/' || id) FROM e",
                (replica, now, body)).fetchone()
            return int(row[0])

        result: int = await self._write(job)
        return result

    async def last_id(self) -> int:
        row = await self._read(lambda c: c.execute("SELECT MAX(id) FROM events").fetchone())
        return 0 if row is None or row[0] is None else int(row[0])

    async def since(self, after: int, limit: int = READ_LIMIT) -> list[Row]:
        """Rows with ids above ``after``, in id order (at most ``limit``)."""
        rows = await self._read(lambda c: c.execute(
            "SELECT id, replica, body FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit)).fetchall())
        return [Row(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def prune(self, keep_ms: int = KEEP_MS) -> int:
        """Forget rows older than ``keep_ms``; returns how many."""
        cutoff = self._clock() - keep_ms

        def job(c: sqlite3.Connection) -> int:
            return int(c.execute("DELETE FROM events WHERE created_at < ?", (cutoff,)).rowcount)

        result: int = await self._write(job)
        return result
