"""The search index filled in batches: new sessions are searchable before and after they are
indexed, and the index agrees with its table through updates and deletes of both kinds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clawgate.sessions import searchindex
from clawgate.sessions.listing import ListQuery
from clawgate.sessions.store import SessionStore
from tests.support.poll import until

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_only]  # the index is SQLite's FTS5


def _pending(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {searchindex.PENDING_TABLE}").fetchone()[0])


def _check_index(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:  # raises when the external-content index disagrees with the sessions table
        conn.execute("INSERT INTO sessions_fts (sessions_fts) VALUES ('integrity-check')")
    finally:
        conn.close()


async def _found(store: SessionStore, needle: str) -> list[str]:
    page = await store.list_sessions(ListQuery(search=needle))
    return sorted(r["key"] for r in page.rows)


async def test_new_sessions_are_found_while_pending_and_after_the_flush(db_path: Path) -> None:
    async with SessionStore(db_path) as store:
        await store.ensure("agent:main:telegram:direct:ada", label="Analytical Engine")
        await store.ensure("agent:main:slack:group:c9", label="Budget")
        assert _pending(db_path) == 2
        assert await _found(store, "analytical") == ["agent:main:telegram:direct:ada"]
        assert await _found(store, "slack:group") == ["agent:main:slack:group:c9"]

        # Changes to a pending row touch only the pending set.
        await store.patch("agent:main:slack:group:c9", label="Quarterly")
        assert await _found(store, "budget") == []
        assert await _found(store, "QUARTER") == ["agent:main:slack:group:c9"]
        assert await store.delete("agent:main:slack:group:c9")
        assert _pending(db_path) == 1
        _check_index(db_path)

        assert await store.flush_search_index() == 1
        assert _pending(db_path) == 0
        assert await _found(store, "analytical") == ["agent:main:telegram:direct:ada"]

        # Changes to an indexed row update the index.
        await store.patch("agent:main:telegram:direct:ada", label="Difference Engine")
        assert await _found(store, "analytical") == []
        assert await _found(store, "difference") == ["agent:main:telegram:direct:ada"]
        await store.ensure("agent:main:telegram:direct:bob", label="Difference quotient")
        assert await _found(store, "difference") == ["agent:main:telegram:direct:ada",
                                                     "agent:main:telegram:direct:bob"]
        assert await store.delete("agent:main:telegram:direct:ada")
        assert await _found(store, "difference") == ["agent:main:telegram:direct:bob"]
        _check_index(db_path)


async def test_enough_new_sessions_are_indexed_without_a_search(db_path: Path) -> None:
    async with SessionStore(db_path) as store:
        for n in range(searchindex.FLUSH_ROWS):
            await store.ensure(f"agent:main:main:n{n}")
        await until(lambda: _pending(db_path) == 0, interval=0.01)
        page = await store.list_sessions(ListQuery(search="main:n25", limit=100))
        assert len(page.rows) == 7  # n25, n250-n255
    _check_index(db_path)


async def test_rows_left_pending_are_indexed_at_the_next_open(db_path: Path) -> None:
    async with SessionStore(db_path) as store:
        await store.ensure("agent:main:main:left-over", label="Pending at exit")
    assert _pending(db_path) == 1  # closed before the flush was due
    async with SessionStore(db_path) as store:
        assert _pending(db_path) == 0
        assert await _found(store, "at exit") == ["agent:main:main:left-over"]
    _check_index(db_path)
