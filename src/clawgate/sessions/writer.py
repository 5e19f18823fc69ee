"""The store's writer thread: the only write connection, group commit with a savepoint per job.

Write jobs reach the thread through a queue: jobs submitted in one pass of an event loop go as
one hand-off, and each caller's future resolves once its job has been **committed**. One
failing job rolls back alone and raises to its own caller; a lost connection (PostgreSQL)
fails the batch in flight with ``store_unavailable`` and is opened again for the next one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from clawgate.errors import Unavailable
from clawgate.sessions.backend import Backend

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], Any]
MAX_BATCH = 128  # jobs in one transaction at most


@dataclass(frozen=True, slots=True)
class _Task:
    fn: Job
    future: asyncio.Future[Any]  # of the submitting loop; settled on that loop


Outcome = tuple[asyncio.Future[Any], bool, Any]  # (future, succeeded, value or error)


def _settle(outcomes: list[Outcome]) -> None:
    """On the loop: hand each job's result or error to its (still waiting) caller."""
    for future, ok, value in outcomes:
        if future.done():  # the caller went away (cancelled)
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Writer:
    """The thread that owns the write connection and commits queued jobs in order."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        # Why the last write failed for a storage reason (disk full, corrupt, I/O, connection
        # lost), until a commit succeeds again; /ready reports it.
        self.failure: str | None = None
        # Each item is one hand-off: the jobs submitted during one pass of the event loop.
        self._queue: queue.SimpleQueue[list[_Task] | None] = queue.SimpleQueue()
        # Submitted on a loop, not yet handed off (a store normally serves one loop).
        self._pending: dict[asyncio.AbstractEventLoop, list[_Task]] = {}
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        # Daemon so a process that never calls close() can still exit; nothing committed is lost.
        self._thread = threading.Thread(target=self._run, name="clawgate-db-writer", daemon=True)

    async def start(self) -> None:
        self._thread.start()
        try:
            await asyncio.wrap_future(self._ready)
        except BaseException:
            # Opening failed or the opener was cancelled: don't leave the thread waiting.
            self._queue.put(None)
            raise

    async def submit(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's next transaction; returns after that commit.

        Jobs submitted during one pass of the event loop reach the writer as one hand-off
        (one queue put, one thread wake-up) and their results come back in one callback per
        committed batch, so concurrent turns share the cost of a thread switch."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._hand_off, loop)
        pending.append(_Task(fn, future))
        return await future

    def _hand_off(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        loops = list(self._pending) if loop is None else [loop]
        for each in loops:
            batch = self._pending.pop(each, None)
            if batch:
                self._queue.put(batch)

    async def stop(self) -> None:
        """Finish the queued jobs, then close the connection and end the thread."""
        self._hand_off()
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)

    def _run(self) -> None:
        try:
            conn: sqlite3.Connection | None = self._backend.open_writer()
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        self._ready.set_result(None)
        try:
            stopping = False
            while not stopping:
                items = [self._queue.get()]
                while sum(len(i) for i in items if i is not None) < MAX_BATCH:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stopping = None in items
                tasks = [t for i in items if i is not None for t in i]
                if conn is None and tasks:
                    conn = self._reconnect(tasks)
                if conn is not None and tasks:
                    conn = self._commit(conn, tasks)
                    if not self._backend.alive(conn):
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None  # lost: opened again for the next batch
        finally:
            if conn is not None:
                self._backend.close_writer(conn)

    def _reconnect(self, batch: list[_Task]) -> sqlite3.Connection | None:
        try:
            return self._backend.reopen_writer()
        except Exception as exc:
            error = self._storage(exc) or exc
            self._reply([(t.future, False, error) for t in batch])
            return None

    def _storage(self, exc: BaseException) -> Unavailable | None:
        error = self._backend.storage_error(exc)
        if error is not None:
            self.failure = str(error)
        return error

    def _begin(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """Start the batch's transaction; a connection found lost here had nothing of this
        batch sent yet, so the batch goes on a new one."""
        try:
            conn.execute(self._backend.begin)
        except Exception:
            if self._backend.alive(conn):
                raise
            with contextlib.suppress(Exception):
                conn.close()
            conn = self._backend.reopen_writer()
            conn.execute(self._backend.begin)
        return conn

    def _commit(self, conn: sqlite3.Connection, batch: list[_Task]) -> sqlite3.Connection:
        # A job whose caller was cancelled before it ran is skipped (as an unstarted
        # concurrent future would be); one cancelled later still commits, unheard.
        live = [t for t in batch if not t.future.cancelled()]
        if not live:
            return conn
        outcomes: list[tuple[_Task, bool, Any]] = []
        # A batch of one needs no savepoint: its transaction is its job's (two statements
        # fewer, which on PostgreSQL are two round trips).
        alone = len(live) == 1
        try:
            conn = self._begin(conn)
            for task in live:
                if not alone:
                    conn.execute("SAVEPOINT job")
                try:
                    value = task.fn(conn)
                except Exception as exc:
                    if alone:
                        conn.execute("ROLLBACK")
                    else:
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                    outcomes.append((task, False, self._storage(exc) or exc))
                else:
                    if not alone:
                        conn.execute("RELEASE job")
                    outcomes.append((task, True, value))
            if conn.in_transaction:
                conn.execute("COMMIT")
                self._backend.committed()
        except Exception as exc:
            # The transaction itself failed (disk full, I/O error): nothing in it was committed.
            # Every caller hears of it and the writer lives on to serve the next batch.
            with contextlib.suppress(Exception):
                if self._backend.alive(conn) and conn.in_transaction:
                    conn.rollback()
            error = self._storage(exc) or exc
            self._reply([(t.future, False, error) for t in live])
            return conn
        if not any(isinstance(v, Unavailable) for _t, ok, v in outcomes if not ok):
            self.failure = None  # a commit went through: the store can write again
        self._reply([(t.future, ok, value) for t, ok, value in outcomes])
        return conn

    def _reply(self, outcomes: list[Outcome]) -> None:
        """One wake-up of each waiting loop per committed batch, however many jobs it held."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, settled)
