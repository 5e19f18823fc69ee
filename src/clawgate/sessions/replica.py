"""This process's identity among the gateways sharing one store, and whether another is alive.

Every runtime names itself (``Replica.id``: host, pid and a random suffix, so a restarted
process is a new replica) and holds the store lease ``replica.<id>`` for as long as it lives.
A lease is released by the operating system or the database server when its holder dies
(:mod:`clawgate.sessions.leases`), so "is replica X alive?" is answered by trying to take X's
lease: whoever gets it knows X is gone. Rows that name an owner (a run, a channel account)
are taken over on that answer, never on a timer that a slow but live replica could miss.

On SQLite there is one process, which is always alive and always the owner.

The registry (:class:`Registry`, table ``replicas``) is what ``status`` shows: each replica's
row (host, pid, version, start, last heartbeat, the leases it owns), refreshed every
:data:`HEARTBEAT_S`; a row that went stale and whose replica's lease can be taken is pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson

from clawgate.sessions.leases import Lease

log = logging.getLogger("clawgate.replica")

_UNSAFE = re.compile(r"[^a-z0-9-]+")


class LeaseSource(Protocol):
    def lease(self, name: str) -> Lease: ...


def new_id() -> str:
    """A replica id: ``<host>-<pid>-<6 hex>``, lowercase, fit for a lease name."""
    host = _UNSAFE.sub("-", socket.gethostname().lower()).strip("-")[:32] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def lease_name(replica_id: str) -> str:
    return f"replica.{replica_id}"


class Replica:
    """One gateway process on a store: its id and the lease that says it is alive."""

    def __init__(self, store: LeaseSource, replica_id: str | None = None) -> None:
        self.id = replica_id or new_id()
        self._store = store
        self._lease = store.lease(lease_name(self.id))

    async def start(self) -> None:
        """Take this replica's own lease (nobody else can hold a fresh id's lease)."""
        if not await self._lease.acquire():
            raise RuntimeError(f"replica {self.id}: its liveness lease is held elsewhere")

    async def holding(self) -> bool:
        """Whether this replica still holds its lease (False after a lost connection)."""
        return await self._lease.check()

    async def alive(self, replica_id: str) -> bool:
        """Whether replica ``replica_id`` is alive: True for this one; for another, True when
        its lease cannot be taken (the probe lets go at once when it could)."""
        if replica_id == self.id:
            return True
        probe = self._store.lease(lease_name(replica_id))
        try:
            return not await probe.acquire()
        finally:
            await probe.release()

    async def stop(self) -> None:
        await self._lease.release()


# -- the registry ----------------------------------------------------------------------------

HEARTBEAT_S = 5.0  # how often a replica refreshes its row (seen_at, what it owns)
STALE_AFTER_MS = 20_000  # a row not refreshed for this long is probed, and pruned when dead

T = TypeVar("T")
Submit = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    """One gateway process as the ``replicas`` table shows it."""

    id: str
    host: str
    pid: int
    version: str
    started_at: int
    seen_at: int
    owns: tuple[str, ...]  # the lease names it held at its last heartbeat

    def wire(self, own_id: str) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid, "version": self.version,
                "startedAt": self.started_at, "seenAt": self.seen_at, "owns": list(self.owns),
                "self": self.id == own_id}


class ReplicaTable:
    """The ``replicas`` table, on the store's threads."""

    def __init__(self, write: Submit[Any], read: Submit[Any], clock: Callable[[], int]) -> None:
        self._write = write
        self._read = read
        self._clock = clock

    async def beat(self, replica_id: str, *, host: str, pid: int, version: str,
                   started_at: int, owns: Sequence[str]) -> None:
        """Insert or refresh this replica's row."""
        now = self._clock()
        owned = orjson.dumps(sorted(owns)).decode()

        def job(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO replicas (id, host, pid, version, started_at, seen_at, owns) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                      "seen_at = excluded.seen_at, owns = excluded.owns",
                      (replica_id, host, pid, version, started_at, now, owned))

        await self._write(job)

    async def rows(self) -> list[ReplicaRow]:
        found = await self._read(lambda c: c.execute(
            "SELECT id, host, pid, version, started_at, seen_at, owns FROM replicas "
            "ORDER BY started_at, id").fetchall())
        return [ReplicaRow(str(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), int(r[5]),
                           tuple(orjson.loads(r[6]))) for r in found]

    async def remove(self, replica_id: str) -> None:
        await self._write(lambda c: c.execute("DELETE FROM replicas WHERE id = ?",
                                              (replica_id,)))


class Registry:
    """This replica's row in ``replicas``: written at start, refreshed every
    :data:`HEARTBEAT_S` with what it owns (``owned()``: lease names), removed at a clean stop.
    Each heartbeat also prunes rows that went stale and whose replica is dead (its liveness
    lease can be taken), so a killed replica's row goes within :data:`STALE_AFTER_MS` plus a
    heartbeat."""

    def __init__(self, table: ReplicaTable, replica: Replica, *, version: str,
                 owned: Callable[[], Sequence[str]], clock: Callable[[], int]) -> None:
        self.table = table
        self.replica = replica
        self.version = version
        self.owned = owned
        self.heartbeat_s = HEARTBEAT_S
        self.started_at = clock()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._run(), name="clawgate-replica-heartbeat")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):  # the store may be gone; the row then goes stale
            await self.table.remove(self.replica.id)

    async def beat(self) -> None:
        await self.table.beat(self.replica.id, host=socket.gethostname(), pid=os.getpid(),
                              version=self.version, started_at=self.started_at,
                              owns=self.owned())

    async def rows(self) -> list[ReplicaRow]:
        """The live replicas (stale rows of dead ones are left out even before pruning)."""
        return [r for r in await self.table.rows()
                if r.id == self.replica.id or self._clock() - r.seen_at < STALE_AFTER_MS]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.beat()
                for row in await self.table.rows():
                    if self._clock() - row.seen_at > STALE_AFTER_MS \
                            and not await self.replica.alive(row.id):
                        await self.table.remove(row.id)
            except Exception as exc:  # the store is down: try again at the next beat
                log.warning("replica heartbeat failed (%s)", " ".join(str(exc).split()))
