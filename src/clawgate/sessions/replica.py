"""This process's identity among the gateways sharing one store, and whether another is alive.

Every runtime names itself (``Replica.id``: host, pid and a random suffix, so a restarted
process is a new replica) and holds the store lease ``replica.<id>`` for as long as it lives.
A lease is released by the operating system or the database server when its holder dies
(:mod:`clawgate.sessions.leases`), so "is replica X alive?" is answered by trying to take X's
lease: whoever gets it knows X is gone. Rows that name an owner (a run, a channel account)
are taken over on that answer, never on a timer that a slow but live replica could miss.

On SQLite there is one process, which is always alive and always the owner.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from typing import Protocol

from clawgate.sessions.leases import Lease

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
