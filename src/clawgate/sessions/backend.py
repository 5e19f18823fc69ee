"""Where a session store keeps its data: the :class:`Backend` seam and the embedded SQLite one.

A backend opens connections (creating and migrating the database), names the writer's
transaction start and classifies storage failures; ``SessionStore`` runs the same jobs on the
same threads over any backend. :class:`SqliteBackend` is the default (one WAL file, 0600 in a
0700 directory, ``PRAGMA quick_check`` before use); ``postgresql://`` locations get
:class:`~clawgate.sessions.postgres.PostgresBackend`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Protocol

from clawgate.errors import Unavailable
from clawgate.sessions import listing, postgres
from clawgate.sessions.checkpointer import BACKSTOP_PAGES, Checkpointer
from clawgate.sessions.schema import migrate

log = logging.getLogger("clawgate.store")
BUSY_TIMEOUT_MS = 5_000


def _connect(path: Path) -> sqlite3.Connection:
    # Autocommit mode: transactions are explicit (BEGIN / SAVEPOINT / COMMIT) on every connection.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


class Backend(Protocol):
    """Where a store keeps its data: opens connections and knows its storage failures."""

    kind: str  # "sqlite" or "postgres"
    where: str  # what messages name: the file, or the URL without its password
    begin: str  # how the writer starts a transaction

    def open_writer(self) -> sqlite3.Connection:
        """The write connection, the database created and migrated (blocking)."""

    def reopen_writer(self) -> sqlite3.Connection:
        """A new write connection after the last one was lost."""

    def open_reader(self) -> sqlite3.Connection:
        """A read-only connection for one reader thread."""

    def alive(self, conn: sqlite3.Connection) -> bool:
        """False once the connection is lost (it is then opened again)."""

    def committed(self) -> None:
        """The writer committed a transaction (on the writer thread)."""

    def close_writer(self, conn: sqlite3.Connection) -> None:
        """Close the write connection for good (the store is closing)."""

    def storage_error(self, exc: BaseException) -> Unavailable | None:
        """``store_unavailable`` for a failure of the storage itself, else None."""


class SqliteBackend:
    """The embedded default: one SQLite file (WAL), created 0600 in a 0700 directory."""

    kind = "sqlite"
    begin = "BEGIN IMMEDIATE"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._checkpointer: Checkpointer | None = None  # started by the first commit

    def open_writer(self) -> sqlite3.Connection:
        try:
            private_dir(self.path.parent)
            if not self.path.exists():  # created 0600 here, so its WAL and SHM files are too
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = _connect(self.path)
            try:
                found = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
                if found != ["ok"]:
                    problems = [p for text in found for p in text.splitlines() if p.strip()]
                    raise corrupt(self.path, f"{problems[0]}; {len(problems)} problem(s)")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise Unavailable(f"{self.path}: cannot enable WAL (journal_mode={mode})")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                migrate(conn, path=self.path)
                # The WAL is copied back by the checkpoint thread (sessions/checkpointer.py)
                # once the writer commits; the writer's own checkpoint is only the backstop.
                conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
                for suffix in ("", "-wal", "-shm"):
                    private_file(self.path.with_name(self.path.name + suffix))
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise storage_error(exc, self.path) or corrupt(self.path, exc) from exc
        return conn

    def reopen_writer(self) -> sqlite3.Connection:
        conn = _connect(self.path)
        conn.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")
        return conn

    def open_reader(self) -> sqlite3.Connection:
        conn = _connect(self.path)
        conn.execute("PRAGMA query_only = ON")
        conn.create_function(listing.FOLD_FUNCTION, 1, listing.fold, deterministic=True)
        return conn

    def alive(self, conn: sqlite3.Connection) -> bool:
        return True  # a file does not hang up

    def committed(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self.path)
        self._checkpointer.committed()

    def close_writer(self, conn: sqlite3.Connection) -> None:
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()  # first, so that the writer's close removes the WAL
        conn.close()

    def storage_error(self, exc: BaseException) -> Unavailable | None:
        return storage_error(exc, self.path)


def backend_for(location: Path | str) -> Backend:
    """The backend of a store location: a ``postgresql://`` URL, ``sqlite:PATH`` or a path."""
    if isinstance(location, str):
        if postgres.is_url(location):
            return postgres.PostgresBackend(location)
        location = Path(location.removeprefix("sqlite:"))
    return SqliteBackend(Path(location))


def storage_error(exc: BaseException, path: Path) -> Unavailable | None:
    """The ``store_unavailable`` error for an SQLite failure of the storage itself (disk full,
    corrupt file, I/O error), or None for any other error."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == sqlite3.SQLITE_FULL:
        return Unavailable(f"disk full: the session store {path} cannot write ({exc})",
                           reason="store_unavailable")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return corrupt(path, exc)
    if code in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
        return Unavailable(f"the session store {path} cannot write: {exc}",
                           reason="store_unavailable")
    return None


def corrupt(path: Path, why: object) -> Unavailable:
    """The error for a database file that fails its integrity check."""
    why = " ".join(str(why).split())  # one line, whatever SQLite said
    return Unavailable(f"database corrupt: {path} ({why}); move it aside or restore a backup, "
                       "then start again (`clawgate sessions check` reports the damage)",
                       reason="store_unavailable")


def check_file(path: Path) -> list[str]:
    """``PRAGMA integrity_check`` of the database at ``path``, opened read-only: the problems
    found (empty when it is sound). Blocking."""
    if not path.exists():
        return [f"{path} does not exist"]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [f"{path}: {exc}"]
    problems = [str(r[0]) for r in rows]
    return [] if problems == ["ok"] else problems


def private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700), or take group and other access away from it (warning)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    _private(path, 0o700)


def private_file(path: Path) -> None:
    """Take group and other access away from ``path`` if it exists (with a warning)."""
    if path.exists():
        _private(path, 0o600)


def _private(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & 0o077:
        try:
            path.chmod(mode)
        except OSError as exc:
            log.warning("%s is readable by others (mode %o) and cannot be fixed: %s", path,
                        current, exc)
            return
        log.warning("%s was readable by others (mode %o); changed to %o", path, current, mode)
