"""Copies SQLite's write-ahead log back into the database on a thread of its own.

By default the connection that commits runs the checkpoint, inside its COMMIT, whenever the WAL
passes 1,000 pages: an eighth of the writer thread's time in a turn, fsyncs included, on the
path every acknowledgement waits for. Here the writer only counts commits; every
:data:`EVERY_COMMITS` it wakes this thread, which runs a PASSIVE checkpoint on its own
connection. SQLite releases the GIL while it checkpoints, so the copy runs beside the writer
rather than in its way, and PASSIVE never blocks the writer or a reader.

The WAL starts over from its beginning only when a write begins with every frame copied, which
under steady writes this thread rarely sees (the writer has always appended a little more). So
the writer keeps its own automatic checkpoint at :data:`BACKSTOP_PAGES`: by then nearly every
frame is copied, its checkpoint has little left to do, and the WAL restarts; the file stays
under ~16 MiB. Durability is unchanged: a commit is in the WAL before its caller hears of it,
whoever copies it later.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("clawgate.store")

EVERY_COMMITS = 64  # commits between two checkpoints
BACKSTOP_PAGES = 4_000  # the writer's own automatic checkpoint (16 MiB of 4 KiB pages)


class Checkpointer:
    """The checkpoint thread of one database file; ``committed`` is called by the writer."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._commits = 0
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="clawgate-db-checkpoint",
                                        daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """One more commit (on the writer thread)."""
        self._commits += 1
        if self._commits >= EVERY_COMMITS:
            self._commits = 0
            self._wake.set()

    def stop(self) -> None:
        """End the thread (the writer's close then checkpoints what is left)."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._path, isolation_level=None,
                                               check_same_thread=False)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # the writer's backstop checkpoint still runs
                    log.warning("WAL checkpoint of %s failed: %s", self._path, exc)
        finally:
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
