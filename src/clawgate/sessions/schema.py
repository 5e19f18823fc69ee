"""The session store's SQLite schema: forward migrations, the column table and row values.

The schema version lives in ``PRAGMA user_version`` (on PostgreSQL: the ``schema_version``
table). :data:`MIGRATIONS` is append-only: a
released step is never edited, a change is a new step, and each step runs in its own transaction
together with the version bump, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import orjson

from clawgate.errors import ClawgateError, InvalidRequest
from clawgate.sessions import searchindex
from clawgate.types import QUEUE_MODES, RunStatus

ColumnType = Literal["text", "int", "real", "bool", "json"]


class SchemaTooNew(ClawgateError):
    """The database was written by a newer clawgate whose schema this code does not know."""

    def __init__(self, *, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"{path}: database schema version {found} is newer than this clawgate supports "
            f"({supported}); upgrade clawgate or point it at another state directory"
        )


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step; ``script`` is plain SQL run inside one transaction. On PostgreSQL the
    same step runs as ``postgres`` when given, else as ``script`` with its column types mapped
    (:func:`clawgate.sessions.postgres.ddl`, which refuses SQLite-only SQL such as FTS5)."""

    version: int
    summary: str
    script: str
    postgres: str | None = None


# Migration 9's indexes in list order (updated_at DESC, key), for every sessions.list filter; the
# same on both backends (SQLite adds its trigram search index, PostgreSQL scans).
_LIST_ORDER_INDEXES = """
DROP INDEX sessions_updated;
DROP INDEX sessions_agent_updated;
DROP INDEX sessions_label;
DROP INDEX sessions_spawned_by;
CREATE INDEX sessions_list ON sessions (updated_at DESC, key);
CREATE INDEX sessions_agent_list ON sessions (agent_id, updated_at DESC, key);
CREATE INDEX sessions_label_list ON sessions (label, updated_at DESC, key);
CREATE INDEX sessions_spawned_by_list ON sessions (spawned_by, updated_at DESC, key);
"""

# Migration 13: the label and spawnedBy list indexes hold only the sessions that have one (most
# have neither). Every turn moves its session's updated_at, and each full index made that one
# more index update and one more page written; ``label = ?`` still finds the partial index.
_PARTIAL_LIST_INDEXES = """
DROP INDEX sessions_label_list;
DROP INDEX sessions_spawned_by_list;
CREATE INDEX sessions_label_list ON sessions (label, updated_at DESC, key)
    WHERE label IS NOT NULL;
CREATE INDEX sessions_spawned_by_list ON sessions (spawned_by, updated_at DESC, key)
    WHERE spawned_by IS NOT NULL;
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "sessions and messages", """
CREATE TABLE sessions (
    key               TEXT PRIMARY KEY,
    agent_id          TEXT NOT NULL,
    session_id        TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    started_at        INTEGER NOT NULL,
    channel           TEXT,
    chat_type         TEXT,
    origin            TEXT,
    label             TEXT,
    display_name      TEXT,
    subject           TEXT,
    model_override    TEXT,
    provider_override TEXT,
    model             TEXT,
    model_provider    TEXT,
    input_tokens      INTEGER NOT NULL DEFAULT 0,
    output_tokens     INTEGER NOT NULL DEFAULT 0,
    total_tokens      INTEGER NOT NULL DEFAULT 0,
    send_policy       TEXT,
    queue_mode        TEXT,
    spawned_by        TEXT,
    last_channel      TEXT,
    last_to           TEXT,
    thinking_level    TEXT,
    aborted_last_run  INTEGER NOT NULL DEFAULT 0,
    extra             TEXT
);
CREATE UNIQUE INDEX sessions_session_id ON sessions (session_id);
CREATE INDEX sessions_updated ON sessions (updated_at DESC);
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY,
    session_id   TEXT NOT NULL,
    key          TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system')),
    content      TEXT,
    tool_calls   TEXT,
    tool_call_id TEXT,
    name         TEXT,
    usage        TEXT,
    stop_reason  TEXT,
    created_at   INTEGER NOT NULL,
    archived     INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX messages_session_seq ON messages (session_id, seq);
CREATE INDEX messages_key ON messages (key, id);
"""),
    Migration(2, "runs, listing indexes, more session fields, message extras", """
ALTER TABLE sessions ADD COLUMN group_channel TEXT;
ALTER TABLE sessions ADD COLUMN context_tokens INTEGER;
ALTER TABLE sessions ADD COLUMN verbose_level TEXT;
ALTER TABLE sessions ADD COLUMN reasoning_level TEXT;
ALTER TABLE sessions ADD COLUMN response_usage TEXT;
ALTER TABLE sessions ADD COLUMN parent_session_key TEXT;
ALTER TABLE sessions ADD COLUMN last_account_id TEXT;
ALTER TABLE sessions ADD COLUMN last_thread_id TEXT;
ALTER TABLE messages ADD COLUMN extra TEXT;
CREATE INDEX sessions_agent_updated ON sessions (agent_id, updated_at DESC);
CREATE INDEX sessions_label ON sessions (label);
CREATE INDEX sessions_spawned_by ON sessions (spawned_by);
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    status      TEXT NOT NULL
                CHECK (status IN ('running', 'ok', 'error', 'aborted', 'timeout')),
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    stop_reason TEXT,
    error       TEXT,
    usage       TEXT
);
CREATE INDEX runs_key ON runs (key, started_at);
"""),
    Migration(3, "durable queued runs: input messages, queued/interrupted states", """
CREATE TABLE runs_v3 (
    run_id      TEXT PRIMARY KEY,
    key         TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN
                ('queued', 'running', 'ok', 'error', 'aborted', 'timeout', 'interrupted')),
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    stop_reason TEXT,
    error       TEXT,
    usage       TEXT,
    queued_at   INTEGER,
    input       TEXT,
    model       TEXT,
    provider    TEXT,
    merged_into TEXT
);
INSERT INTO runs_v3 (run_id, key, session_id, status, started_at, ended_at, stop_reason, error,
                     usage)
    SELECT run_id, key, session_id, status, started_at, ended_at, stop_reason, error, usage
    FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
CREATE INDEX runs_key ON runs (key, started_at);
CREATE INDEX runs_open ON runs (status) WHERE status IN ('queued', 'running');
"""),
    Migration(4, "cron jobs and their run history", """
CREATE TABLE cron_jobs (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    next_run_at INTEGER,
    running_id  TEXT,
    running_at  INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX cron_jobs_due ON cron_jobs (next_run_at) WHERE enabled = 1 AND running_id IS NULL;
CREATE INDEX cron_jobs_running ON cron_jobs (running_id) WHERE running_id IS NOT NULL;
CREATE TABLE cron_runs (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL UNIQUE,
    job_id      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error', 'skipped')),
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    delivery_at INTEGER,
    entry       TEXT
);
CREATE INDEX cron_runs_job ON cron_runs (job_id, id);
CREATE INDEX cron_runs_open ON cron_runs (status) WHERE status = 'running';
"""),
    Migration(5, "channels: inbound dedupe, durable outbound intents and receipts, pairing", """
ALTER TABLE runs ADD COLUMN delivery TEXT;
CREATE TABLE channel_inbound (
    channel     TEXT NOT NULL,
    account     TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    session_key TEXT,
    run_id      TEXT,
    PRIMARY KEY (channel, account, message_id)
);
CREATE INDEX channel_inbound_age ON channel_inbound (received_at);
CREATE TABLE channel_intents (
    intent_id       TEXT PRIMARY KEY,
    run_id          TEXT,
    channel         TEXT NOT NULL,
    account         TEXT NOT NULL,
    target          TEXT NOT NULL,
    text            TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('reply', 'notice', 'pairing', 'command',
                                                  'announce')),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    preview_id      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX channel_intents_run ON channel_intents (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX channel_intents_due ON channel_intents (next_attempt_at) WHERE status = 'pending';
CREATE INDEX channel_intents_account ON channel_intents (channel, account, status);
CREATE TABLE channel_receipts (
    intent_id    TEXT NOT NULL,
    part         INTEGER NOT NULL,
    message_ids  TEXT NOT NULL,
    sent_at      INTEGER NOT NULL,
    PRIMARY KEY (intent_id, part)
);
CREATE TABLE channel_pairing (
    channel     TEXT NOT NULL,
    account     TEXT NOT NULL,
    code        TEXT NOT NULL,
    sender      TEXT NOT NULL,
    sender_name TEXT,
    target      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
    PRIMARY KEY (channel, account, code)
);
CREATE INDEX channel_pairing_sender ON channel_pairing (channel, account, sender, status);
CREATE TABLE channel_allow (
    channel     TEXT NOT NULL,
    account     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, account, sender)
);
CREATE TABLE channel_state (
    channel     TEXT NOT NULL,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (channel, account, name)
);
CREATE TABLE channel_previews (
    run_id      TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
"""),
    Migration(6, "model costs and cache tokens; fallback attempts on runs", """
ALTER TABLE runs ADD COLUMN cost_usd REAL;
ALTER TABLE runs ADD COLUMN fallbacks TEXT;
ALTER TABLE sessions ADD COLUMN cache_read_tokens INTEGER;
ALTER TABLE sessions ADD COLUMN cache_write_tokens INTEGER;
ALTER TABLE sessions ADD COLUMN cost_usd REAL;
CREATE INDEX runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;
"""),
    Migration(7, "compaction entries found without scanning the transcript", """
CREATE INDEX messages_system ON messages (session_id, seq) WHERE role = 'system';
"""),
    Migration(8, "scratch table of the store's write probe (/ready after a storage failure)", """
CREATE TABLE store_probe (data BLOB NOT NULL);
"""),
    Migration(9, "sessions.list at scale: indexes in list order, trigram search index",
              _LIST_ORDER_INDEXES + """CREATE VIRTUAL TABLE sessions_fts USING fts5 (
    display_name, label, subject, session_id, key,
    content = 'sessions', content_rowid = 'rowid', tokenize = 'trigram'
);
INSERT INTO sessions_fts (sessions_fts) VALUES ('rebuild');
CREATE TRIGGER sessions_fts_insert AFTER INSERT ON sessions BEGIN
    INSERT INTO sessions_fts (rowid, display_name, label, subject, session_id, key)
    VALUES (new.rowid, new.display_name, new.label, new.subject, new.session_id, new.key);
END;
CREATE TRIGGER sessions_fts_delete AFTER DELETE ON sessions BEGIN
    INSERT INTO sessions_fts (sessions_fts, rowid, display_name, label, subject, session_id, key)
    VALUES ('delete', old.rowid, old.display_name, old.label, old.subject, old.session_id,
            old.key);
END;
CREATE TRIGGER sessions_fts_update
AFTER UPDATE OF display_name, label, subject, session_id, key ON sessions BEGIN
    INSERT INTO sessions_fts (sessions_fts, rowid, display_name, label, subject, session_id, key)
    VALUES ('delete', old.rowid, old.display_name, old.label, old.subject, old.session_id,
            old.key);
    INSERT INTO sessions_fts (rowid, display_name, label, subject, session_id, key)
    VALUES (new.rowid, new.display_name, new.label, new.subject, new.session_id, new.key);
END;
""", postgres=_LIST_ORDER_INDEXES),
    Migration(10, "runs: owner replica and per-session sequence (one active run across replicas)",
              """
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN seq INTEGER;
CREATE INDEX runs_session_seq ON runs (key, seq);
CREATE INDEX runs_session_open ON runs (key, status) WHERE status IN ('queued', 'running');
"""),
    Migration(11, "replicas: the events log fanned out between gateways, the replica registry",
              """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    replica TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_created ON events (created_at);
CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    owns TEXT NOT NULL DEFAULT '[]'
);
"""),
    # PostgreSQL has no search index (it scans), so nothing to do there.
    Migration(12, "search index filled in batches: new sessions wait in a pending set",
              searchindex.MIGRATION, postgres="SELECT 1;"),
    Migration(13, "label and spawnedBy list indexes hold only the sessions that have one",
              _PARTIAL_LIST_INDEXES, postgres=_PARTIAL_LIST_INDEXES),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The ``user_version`` of the open database (0 for a new file)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, *, path: Path | str, target: int | None = None) -> int:
    """Bring the database up to ``target`` (default: the newest version) and return the version.

    ``conn`` must be in autocommit mode (``isolation_level=None``). A database newer than this
    code raises :class:`SchemaTooNew` without touching it.
    """
    goal = SCHEMA_VERSION if target is None else target
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise SchemaTooNew(path=str(path), found=current, supported=SCHEMA_VERSION)
    for step in MIGRATIONS:
        if current < step.version <= goal:
            # executescript would COMMIT any open transaction first, so the BEGIN/COMMIT pair is
            # part of the script; on failure the transaction is still open and is rolled back.
            try:
                conn.executescript(
                    f"BEGIN IMMEDIATE;\n{step.script}\nPRAGMA user_version = {step.version};\n"
                    "COMMIT;"
                )
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            current = step.version
    return current


@dataclass(frozen=True, slots=True)
class Column:
    """One ``sessions`` column: its type, whether ``patch``/``ensure`` may set it (and to which
    values), and whether ``sessions.list`` rows show it. Its wire name is the column name in
    camelCase (``model_override`` -> ``modelOverride``)."""

    name: str
    type: ColumnType
    settable: bool = True
    listed: bool = True
    choices: tuple[str, ...] = ()
    wire_name: str | None = None  # when OpenClaw's name is not the camelCase of ours

    @property
    def wire(self) -> str:
        if self.wire_name is not None:
            return self.wire_name
        head, *rest = self.name.split("_")
        return head + "".join(part.title() for part in rest)


def _col(type: ColumnType, default: Any = None, *, settable: bool = True, listed: bool = True,
         choices: tuple[str, ...] = (), wire: str | None = None) -> Any:
    """A SessionEntry field that is also a ``sessions`` column (its name filled in below)."""
    column = Column("", type, settable, listed, choices, wire)
    if default is _REQUIRED:
        return field(metadata={"column": column})
    return field(default=default, metadata={"column": column})


_REQUIRED = object()
CHAT_TYPES = ("direct", "group", "channel", "room")
SEND_POLICIES = ("allow", "deny")
RESPONSE_USAGE = ("on", "off", "tokens", "full")


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One row of ``sessions`` (reference §4.2). Times are epoch milliseconds.

    The one declaration of the session columns: :data:`COLUMNS`, the wire names, what
    ``patch`` may set and what ``sessions.list`` shows are all derived from these fields (the
    SQL is in :data:`MIGRATIONS`, and a test checks that it matches).
    """

    key: str = _col("text", _REQUIRED, settable=False)
    agent_id: str = _col("text", _REQUIRED, settable=False, listed=False)
    session_id: str = _col("text", _REQUIRED, settable=False)
    created_at: int = _col("int", _REQUIRED, settable=False, listed=False)
    updated_at: int = _col("int", _REQUIRED, settable=False)
    started_at: int = _col("int", _REQUIRED, settable=False, listed=False)
    channel: str | None = _col("text")
    chat_type: str | None = _col("text", choices=CHAT_TYPES)
    origin: dict[str, Any] | None = _col("json")
    label: str | None = _col("text")
    display_name: str | None = _col("text")
    subject: str | None = _col("text")
    group_channel: str | None = _col("text")
    model_override: str | None = _col("text", listed=False)
    provider_override: str | None = _col("text", listed=False)
    model: str | None = _col("text")
    model_provider: str | None = _col("text")
    context_tokens: int | None = _col("int")
    input_tokens: int = _col("int", 0)
    output_tokens: int = _col("int", 0)
    total_tokens: int = _col("int", 0)
    send_policy: str | None = _col("text", choices=SEND_POLICIES)
    queue_mode: str | None = _col("text", choices=QUEUE_MODES, listed=False)
    thinking_level: str | None = _col("text")
    verbose_level: str | None = _col("text")
    reasoning_level: str | None = _col("text")
    response_usage: str | None = _col("text", choices=RESPONSE_USAGE)
    spawned_by: str | None = _col("text")
    parent_session_key: str | None = _col("text")
    last_channel: str | None = _col("text")
    last_to: str | None = _col("text")
    last_account_id: str | None = _col("text")
    last_thread_id: str | None = _col("text", listed=False)
    aborted_last_run: bool = _col("bool", False)
    extra: dict[str, Any] | None = _col("json", listed=False)
    # None until a run used the prompt cache / a priced model (rows then omit them).
    cache_read_tokens: int | None = _col("int", settable=False, wire="cacheRead")
    cache_write_tokens: int | None = _col("int", settable=False, wire="cacheWrite")
    cost_usd: float | None = _col("real", settable=False, wire="estimatedCostUsd")

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> SessionEntry:
        """Decode a ``SELECT * FROM sessions`` row: positionally, by a plan made once per
        column order (each admission decodes one; by keyword it cost 10 µs of the loop, by
        position 6)."""
        plan = _row_plan(tuple(row.keys()))
        return cls(*[row[i] if col is None else decode(col, row[i]) for i, col in plan])

    def wire(self) -> dict[str, Any]:
        """The entry in OpenClaw's wire names (absent values omitted)."""
        out = {c.wire: getattr(self, c.name) for c in COLUMNS}
        return {k: v for k, v in out.items() if v is not None}


COLUMNS: tuple[Column, ...] = tuple(
    replace(f.metadata["column"], name=f.name) for f in fields(SessionEntry)
)
COLUMN_BY_NAME: Mapping[str, Column] = {c.name: c for c in COLUMNS}
_NAMES = tuple(c.name for c in COLUMNS)
_DECODED: Mapping[str, Column] = {c.name: c for c in COLUMNS if c.type in ("json", "bool")}
COLUMN_BY_WIRE: Mapping[str, Column] = {c.wire: c for c in COLUMNS}


@functools.lru_cache(maxsize=8)  # one column order per backend, in practice
def _row_plan(names: tuple[str, ...]) -> tuple[tuple[int, Column | None], ...]:
    """For each field: its index in a row of these columns (KeyError naming a missing one),
    and the column when its value needs decoding."""
    where = {name: i for i, name in enumerate(names)}
    return tuple((where[name], _DECODED.get(name)) for name in _NAMES)


# Counters are NOT NULL in SQL: clearing one with None means zero.
_ZERO_WHEN_NONE = frozenset({"input_tokens", "output_tokens", "total_tokens", "aborted_last_run"})


@dataclass(frozen=True, slots=True)
class Run:
    """One agent run (turn) recorded in ``runs``."""

    run_id: str
    key: str
    session_id: str
    status: RunStatus
    started_at: int
    ended_at: int | None = None
    stop_reason: str | None = None
    error: str | None = None
    usage: dict[str, Any] | None = None
    model: str | None = None
    provider: str | None = None
    cost_usd: float | None = None
    # Failed model attempts before the one that answered (or all, when none did):
    # [{"model", "kind", "status", "error"}].
    fallbacks: list[dict[str, Any]] | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Run:
        """Decode a ``SELECT * FROM runs`` row."""
        return cls(
            run_id=row["run_id"],
            key=row["key"],
            session_id=row["session_id"],
            status=row["status"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            stop_reason=row["stop_reason"],
            error=row["error"],
            usage=loads(row["usage"]),
            model=row["model"],
            provider=row["provider"],
            cost_usd=row["cost_usd"],
            fallbacks=loads(row["fallbacks"]),
        )


def check_fields(fields: Mapping[str, Any], method: str) -> dict[str, Any]:
    """Validate settable session fields and return their SQL values (JSON encoded, bools as 0/1).

    An unknown or read-only name, a value of the wrong type or outside the column's choices
    raises :class:`InvalidRequest` naming the field; None clears a field.
    """
    out: dict[str, Any] = {}
    for name, value in fields.items():
        col = COLUMN_BY_NAME.get(name)
        if col is None:
            raise InvalidRequest(f"unknown session field {name!r}", method=method)
        if not col.settable:
            raise InvalidRequest(f"session field {name!r} cannot be set", method=method)
        out[name] = _encode(col, value, method)
    return out


def _encode(col: Column, value: Any, method: str) -> Any:
    if value is None:
        return 0 if col.name in _ZERO_WHEN_NONE else None
    if col.type == "text":
        if not isinstance(value, str):
            raise InvalidRequest(f"session field {col.name!r} must be a string", method=method)
        if col.choices and value not in col.choices:
            raise InvalidRequest(
                f"session field {col.name!r} must be one of {', '.join(col.choices)}",
                method=method,
            )
        return value
    if col.type == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(
                f"session field {col.name!r} must be a non-negative integer", method=method
            )
        return value
    if col.type == "real":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidRequest(
                f"session field {col.name!r} must be a non-negative number", method=method
            )
        return float(value)
    if col.type == "bool":
        if not isinstance(value, bool):
            raise InvalidRequest(f"session field {col.name!r} must be a boolean", method=method)
        return int(value)
    if not isinstance(value, dict):
        raise InvalidRequest(f"session field {col.name!r} must be an object", method=method)
    try:
        return dumps(value)
    except orjson.JSONEncodeError as exc:
        raise InvalidRequest(
            f"session field {col.name!r} is not JSON-serializable: {exc}", method=method
        ) from None


def decode(col: Column, value: Any) -> Any:
    """The Python value of a stored column value."""
    if col.type == "json":
        return loads(value)
    if col.type == "bool":
        return bool(value)
    return value


def dumps(value: Any) -> str:
    """JSON text for a TEXT column."""
    return orjson.dumps(value).decode()


def loads(text: str | None) -> Any:
    """The value of a JSON TEXT column (None stays None)."""
    return None if text is None else orjson.loads(text)
