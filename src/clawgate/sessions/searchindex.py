"""The sessions search index (SQLite's ``sessions_fts``) is filled in batches, off the turn.

Indexing a new session's trigrams inside its admission made every new session's transaction
write an FTS5 segment: a fifth of a new-session turn's store time. Since migration 12 a new
session only records its rowid in ``sessions_fts_pending`` (one small b-tree insert);
:func:`flush` indexes every pending row in one transaction, so a batch of sessions writes one
segment. Searches stay exact meanwhile: ``listing`` matches pending rows by scanning them
(there are at most a few hundred), and indexed rows through the index. The triggers keep both
sets right: an update or delete of an indexed row updates the index, of a pending row only
the pending set.

:class:`Indexer` decides when: :data:`FLUSH_ROWS` new sessions, or :data:`FLUSH_DELAY_S`
after the first one (a timer armed only while rows wait, so an idle gateway never wakes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable

log = logging.getLogger("clawgate.store")

PENDING_TABLE = "sessions_fts_pending"
FLUSH_ROWS = 256  # new sessions that make a flush due at once
FLUSH_DELAY_S = 2.0  # the longest a new session waits to be indexed

# Migration 12 (SQLite only): the pending set and the triggers that use it. Every row was
# indexed by migration 9's triggers until now, so the set starts empty.
MIGRATION = f"""
CREATE TABLE {PENDING_TABLE} (row INTEGER PRIMARY KEY);
DROP TRIGGER sessions_fts_insert;
DROP TRIGGER sessions_fts_delete;
DROP TRIGGER sessions_fts_update;
CREATE TRIGGER sessions_fts_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO {PENDING_TABLE} (row) VALUES (new.rowid);
END;
CREATE TRIGGER sessions_fts_delete AFTER DELETE ON sessions BEGIN
    INSERT INTO sessions_fts (sessions_fts, rowid, display_name, label, subject, session_id, key)
    SELECT 'delete', old.rowid, old.display_name, old.label, old.subject, old.session_id, old.key
    WHERE NOT EXISTS (SELECT 1 FROM {PENDING_TABLE} WHERE row = old.rowid);
    DELETE FROM {PENDING_TABLE} WHERE row = old.rowid;
END;
CREATE TRIGGER sessions_fts_update
AFTER UPDATE OF display_name, label, subject, session_id, key ON sessions
WHEN NOT EXISTS (SELECT 1 FROM {PENDING_TABLE} WHERE row = old.rowid) BEGIN
    INSERT INTO sessions_fts (sessions_fts, rowid, display_name, label, subject, session_id, key)
    VALUES ('delete', old.rowid, old.display_name, old.label, old.subject, old.session_id,
            old.key);
    INSERT INTO sessions_fts (rowid, display_name, label, subject, session_id, key)
    VALUES (new.rowid, new.display_name, new.label, new.subject, new.session_id, new.key);
END;
"""


def flush(c: sqlite3.Connection) -> int:
    """Index every pending session (inside a write transaction); returns how many. CROSS JOIN
    keeps the pending set as the outer loop (else SQLite may walk every session)."""
    indexed = c.execute(
        "INSERT INTO sessions_fts (rowid, display_name, label, subject, session_id, key) "
        "SELECT s.rowid, s.display_name, s.label, s.subject, s.session_id, s.key "
        f"FROM {PENDING_TABLE} AS p CROSS JOIN sessions AS s ON s.rowid = p.row").rowcount
    c.execute(f"DELETE FROM {PENDING_TABLE}")
    return max(indexed, 0)


class Indexer:
    """Runs :func:`flush` through the store's writer when enough new sessions wait or the
    oldest has waited :data:`FLUSH_DELAY_S`. It owns its one flush task; ``close`` awaits it."""

    def __init__(self, write: Callable[[Callable[[sqlite3.Connection], int]], Awaitable[int]],
                 ) -> None:
        self._write = write
        self._waiting = 0  # new sessions since the last flush began
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def created(self, count: int = 1) -> None:
        """``count`` sessions were created (their rows are pending)."""
        self._waiting += count
        if self._waiting >= FLUSH_ROWS:
            self._due()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self._due)

    def _due(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None and not self._task.done():
            return  # the running flush takes the rows that were pending when it began
        self._waiting = 0
        self._task = asyncio.get_running_loop().create_task(self._flush(), name="search-index")

    async def _flush(self) -> None:
        try:
            await self._write(flush)
        except Exception as exc:  # the rows stay pending (and searchable); the next flush retries
            log.warning("search index flush failed: %s", exc)
        if self._waiting and self._timer is None:  # sessions created while it ran
            self._timer = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self._due)

    async def close(self) -> None:
        """Stop the timer and wait for a flush in flight (pending rows are flushed at the
        next open, and searchable until then)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
