"""Leases: one holder at a time across every process on one store (``store.lease(name)``).

A lease is held by a live process and released when it dies — by the operating system or the
database server, not by a timer — so a replica killed with SIGKILL hands its leases over at
once, and a slow one never loses a lease it still holds:

- SQLite: an exclusive ``flock`` on ``<db>.lease-<name>`` (the kernel drops it with the
  process). Several processes on one SQLite file are still not a supported deployment; this
  keeps the one-holder rule true anyway;
- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a connection of its
  own; the server drops it when that connection ends. :meth:`Lease.check` asks the server
  whether the lock is still this connection's, so a holder whose connection was cut (a
  database restart) learns that it lost the lease.

Blocking calls run in a worker thread; one call at a time per lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
from pathlib import Path
from typing import Any, Protocol

from clawgate.sessions import postgres

_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class Lease(Protocol):
    """One named lease of a store."""

    name: str

    @property
    def held(self) -> bool:
        """Whether this process held the lease at the last acquire or check."""

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this process holds it now."""

    async def check(self) -> bool:
        """Whether the lease is still held (False once it was lost)."""

    async def release(self) -> None:
        """Give the lease up (safe when not held)."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"lease name {name!r}: lowercase letters, digits, _ . - (64 at most)")
    return name


def key(name: str) -> int:
    """The advisory-lock key of a lease (a signed 64-bit integer)."""
    return int.from_bytes(hashlib.sha256(f"clawgate-lease:{name}".encode()).digest()[:8],
                          "big", signed=True)


class FileLease:
    """A lease as an exclusive ``flock`` on a file next to the SQLite database."""

    def __init__(self, db: Path, name: str) -> None:
        self.name = check_name(name)
        self.path = db.with_name(f"{db.name}.lease-{name}")
        self._fd: int | None = None
        self._lock = asyncio.Lock()

    @property
    def held(self) -> bool:
        return self._fd is not None

    async def acquire(self) -> bool:
        async with self._lock:
            if self._fd is None:
                self._fd = await asyncio.to_thread(self._try)
            return self._fd is not None

    def _try(self) -> int | None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    async def check(self) -> bool:
        return self._fd is not None  # a lock on an open file is not lost

    async def release(self) -> None:
        async with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)  # closing drops the lock


class AdvisoryLease:
    """A lease as a PostgreSQL session-level advisory lock on a connection of its own."""

    def __init__(self, url: str, name: str) -> None:
        self.name = check_name(name)
        self.key = key(name)
        self._url = url
        self._conn: postgres.Connection | None = None
        self._held = False
        self._lock = asyncio.Lock()

    @property
    def held(self) -> bool:
        return self._held

    async def acquire(self) -> bool:
        async with self._lock:
            if not self._held:
                self._held = await asyncio.to_thread(self._try)
            return self._held

    def _try(self) -> bool:
        try:
            if self._conn is None or not self._conn.alive:
                self._drop()
                self._conn = postgres.connect(self._url)
            row = self._conn.execute("SELECT pg_try_advisory_lock(?)", (self.key,)).fetchone()
            return bool(row[0])
        except Exception:
            self._drop()
            return False

    async def check(self) -> bool:
        async with self._lock:
            if self._held:
                self._held = await asyncio.to_thread(self._still)
            return self._held

    def _still(self) -> bool:
        if self._conn is None:
            return False
        try:
            # A bigint advisory key shows as classid (high 32 bits), objid (low), objsubid 1.
            row = self._conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid::bigint = ? AND objid::bigint = ? "
                "AND objsubid = 1)",
                ((self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF)).fetchone()
            if bool(row[0]):
                return True
        except Exception:
            pass
        self._drop()
        return False

    async def release(self) -> None:
        async with self._lock:
            held, self._held = self._held, False
            await asyncio.to_thread(self._unlock if held else self._drop)

    def _unlock(self) -> None:
        # Unlocked before the connection ends: the server drops a closed connection's locks
        # only once its backend has noticed, and the next holder must not wait for that.
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.execute("SELECT pg_advisory_unlock(?)", (self.key,))
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def lease_for(location: Any, name: str) -> Lease:
    """The lease ``name`` of the store at ``location`` (a path or a PostgreSQL URL)."""
    if isinstance(location, str) and postgres.is_url(location):
        return AdvisoryLease(location, name)
    return FileLease(Path(location), name)
