"""Schema versioning: forward migrations from an old file, refusal of a newer one."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from clawgate.sessions.listing import ListQuery
from clawgate.sessions.schema import (
    COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    SchemaTooNew,
    SessionEntry,
    migrate,
    schema_version,
)
from clawgate.sessions.store import SessionStore

pytestmark = pytest.mark.anyio


def _make_v1(path: Path) -> None:
    """A database as clawgate schema v1 left it, with one session and one message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, path=path, target=1) == 1
        conn.execute(
            "INSERT INTO sessions (key, agent_id, session_id, created_at, updated_at, started_at,"
            " label) VALUES ('agent:main:main', 'main', 's-1', 1, 2, 1, 'old label')"
        )
        conn.execute(
            "INSERT INTO messages (session_id, key, seq, role, content, created_at) "
            "VALUES ('s-1', 'agent:main:main', 1, 'user', '\"from v1\"', 2)"
        )
    finally:
        conn.close()


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return schema_version(conn)
    finally:
        conn.close()


def test_versions_are_consecutive() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == MIGRATIONS[-1].version


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_a_v1_database_is_migrated_and_keeps_its_data(db_path: Path) -> None:
    _make_v1(db_path)
    assert _version(db_path) == 1
    async with SessionStore(db_path) as store:
        entry = await store.get("agent:main:main")
        assert entry is not None and entry.label == "old label" and entry.session_id == "s-1"
        assert entry.verbose_level is None  # a v2 column
        assert [m.content for m in await store.transcript("agent:main:main")] == ["from v1"]
        await store.admit("r1", "agent:main:main", [{"role": "user", "content": "x"}])  # runs
        assert (await store.patch("agent:main:main", last_account_id="a1")).last_account_id == "a1"
    assert _version(db_path) == SCHEMA_VERSION


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_a_newer_database_is_refused_untouched(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SessionStore(db_path)
    with pytest.raises(SchemaTooNew, match=rf"version {SCHEMA_VERSION + 1} is newer") as info:
        await store.open()
    assert info.value.found == SCHEMA_VERSION + 1 and info.value.supported == SCHEMA_VERSION
    assert _version(db_path) == SCHEMA_VERSION + 1
    await store.close()  # closing a store that never opened is harmless


def test_a_failed_migration_step_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    _make_v1(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Make step 2 fail half-way: its CREATE TABLE runs clashes with this table.
        conn.execute("CREATE TABLE runs (x)")
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, path=path)
        assert schema_version(conn) == 1
        cols = {r[1] for r in conn.execute("PRAGMA table_info(sessions)")}
        assert "verbose_level" not in cols  # the ALTERs before the failure were rolled back
    finally:
        conn.close()


def test_columns_match_the_table_and_the_entry(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        migrate(conn, path="x.db")
        table = [r[1] for r in conn.execute("PRAGMA table_info(sessions)")]
    finally:
        conn.close()
    names = [c.name for c in COLUMNS]
    assert sorted(table) == sorted(names)
    assert [f.name for f in dataclasses.fields(SessionEntry)] == names


@pytest.mark.sqlite_only  # builds a v8 SQLite file and checks its FTS5 index
async def test_a_v8_database_upgrades_and_its_old_sessions_are_searchable(
        db_path: Path) -> None:
    """Migration 9 builds the search index from the rows already there, and its triggers keep
    it in step with every later write."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert migrate(conn, path=db_path, target=8) == 8
        for n, (key, name) in enumerate((("agent:main:telegram:direct:1", "Ada Lovelace"),
                                         ("agent:main:slack:group:c9", None))):
            conn.execute(
                "INSERT INTO sessions (key, agent_id, session_id, created_at, updated_at, "
                "started_at, display_name, subject) VALUES (?, 'main', ?, 1, ?, 1, ?, ?)",
                (key, f"sid-{n}", 10 + n, name, "Budget planning" if name is None else None))
    finally:
        conn.close()
    async with SessionStore(db_path) as store:
        assert _version(db_path) == SCHEMA_VERSION

        async def found(needle: str) -> list[str]:
            page = await store.list_sessions(ListQuery(search=needle))
            return [r["key"] for r in page.rows]

        assert await found("lovelace") == ["agent:main:telegram:direct:1"]
        assert await found("BUDGET PLAN") == ["agent:main:slack:group:c9"]
        assert await found("slack:group") == ["agent:main:slack:group:c9"]
        await store.patch("agent:main:slack:group:c9", label="Quarterly")
        assert await found("quarter") == ["agent:main:slack:group:c9"]
        await store.patch("agent:main:slack:group:c9", label=None)
        assert await found("quarter") == []
        reset = await store.reset("agent:main:telegram:direct:1")
        assert await found(reset.session_id[:8]) == ["agent:main:telegram:direct:1"]
        assert await found("sid-0") == []
        assert await store.delete("agent:main:telegram:direct:1")
        assert await found("lovelace") == []
    check = sqlite3.connect(db_path)
    try:  # the external-content index agrees with its table
        check.execute("INSERT INTO sessions_fts (sessions_fts) VALUES ('integrity-check')")
    finally:
        check.close()
