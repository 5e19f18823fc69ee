"""``clawgate store copy``: every table of one store into another (SQLite -> PostgreSQL to move
an installation to a shared database, or back).

Both stores are opened as a gateway opens them (created and migrated to this version), so
their schemas match. The target must hold no data: the copy refuses a non-empty target with
the table that has rows, so running it twice copies nothing twice. All tables are copied in
one transaction on the target, in batches read by primary key (memory stays bounded at any
size), the target's identity sequences are moved past the copied ids, and the row counts of
both sides are compared before the transaction commits: the target gets everything or
nothing. Blocking: the CLI runs it directly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clawgate.errors import ClawgateError

# Every table of the schema that holds data, with its primary key; derived tables (indexes of
# other tables' text) and the write probe's scratch table are left out (``SKIPPED``). A test
# checks that every table of the migrated schema is in one of the two.
TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sessions", ("key",)),
    ("messages", ("id",)),
    ("runs", ("run_id",)),
    ("cron_jobs", ("id",)),
    ("cron_runs", ("id",)),
    ("channel_inbound", ("channel", "account", "message_id")),
    ("channel_intents", ("intent_id",)),
    ("channel_receipts", ("intent_id", "part")),
    ("channel_pairing", ("channel", "account", "code")),
    ("channel_allow", ("channel", "account", "sender")),
    ("channel_state", ("channel", "account", "name")),
    ("channel_previews", ("run_id",)),
)
# sessions_fts (SQLite's trigram index of sessions, with its FTS5 shadow tables) and its
# pending set are derived: triggers fill them as the sessions are copied in. ``events`` (a few
# minutes of events handed between replicas) and ``replicas`` (the processes running now)
# describe running gateways, not the installation being moved.
SKIPPED = frozenset({"store_probe", "schema_version", "sessions_fts", "sessions_fts_data",
                     "sessions_fts_idx", "sessions_fts_docsize", "sessions_fts_config",
                     "sessions_fts_pending",
                     "events", "replicas"})
# Tables whose ``id`` is an identity column on PostgreSQL (INTEGER PRIMARY KEY on SQLite).
IDENTITY = ("messages", "cron_runs")
BATCH = 1000


class CopyError(ClawgateError):
    """The copy was refused (a non-empty target) or did not verify; the target is unchanged."""


@dataclass(frozen=True, slots=True)
class Copied:
    """What one table copy moved."""

    table: str
    rows: int


def copy(source: sqlite3.Connection, target: sqlite3.Connection, *, target_kind: str,
         batch: int = BATCH, progress: Callable[[str, int], None] | None = None
         ) -> list[Copied]:
    """Copy every table of ``source`` into the empty ``target`` (both open, migrated, in
    autocommit mode); ``progress(table, rows so far)`` after each batch."""
    for table, _key in TABLES:
        row = target.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone()
        if row is not None:
            raise CopyError(f"the target is not empty (table {table} has rows): copy into a "
                            "new database, or empty this one first")
    done: list[Copied] = []
    target.execute("BEGIN")
    try:
        for table, key in TABLES:
            rows = _copy_table(source, target, table, key, batch, progress)
            theirs = int(target.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            ours = int(source.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            if not rows == theirs == ours:
                raise CopyError(f"{table}: {ours} rows in the source, {rows} copied, {theirs} "
                                "in the target; nothing was committed")
            done.append(Copied(table, rows))
        if target_kind == "postgres":
            for table in IDENTITY:
                target.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")
        target.execute("COMMIT")
    except BaseException:
        if target.in_transaction:
            target.rollback()
        raise
    return done


def _copy_table(source: sqlite3.Connection, target: sqlite3.Connection, table: str,
                key: tuple[str, ...], batch: int,
                progress: Callable[[str, int], None] | None) -> int:
    order = ", ".join(key)
    after = f"({order}) > ({', '.join('?' for _ in key)})"
    last: tuple[Any, ...] | None = None
    copied = 0
    while True:
        where = "" if last is None else f"WHERE {after} "
        found = source.execute(f"SELECT * FROM {table} {where}ORDER BY {order} LIMIT ?",
                               [*(last or ()), batch]).fetchall()
        if not found:
            return copied
        names = list(found[0].keys())
        marks = ", ".join("?" for _ in names)
        target.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",
                           [tuple(r) for r in found])
        copied += len(found)
        last = tuple(found[-1][k] for k in key)
        if progress is not None:
            progress(table, copied)
