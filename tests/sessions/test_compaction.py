"""Compaction entries in the store: the context after the latest entry, the guard against a
reset between the summary and its entry, the flush record, and the index that finds entries."""

from __future__ import annotations

import sqlite3

import pytest

from clawgate.errors import InvalidRequest, SessionError

pytestmark = pytest.mark.anyio
KEY = "agent:main:main"


def entry(first: int, first_id: int, summary: str = "S", **record: object) -> dict:
    return {"role": "system", "content": summary,
            "compaction": {"firstKeptSeq": first, "firstKeptId": first_id, **record}}


async def six(store) -> list:
    await store.ensure(KEY)
    return await store.append(KEY, [{"role": r, "content": f"{r} {n}"}
                                    for n in range(3) for r in ("user", "assistant")])


async def test_context_starts_at_the_latest_cut(store) -> None:
    rows = await six(store)
    before = await store.context(KEY, 100)
    assert before.entry is None and [m.content for m in before.messages][0] == "user 0"

    await store.compact(KEY, before.session_id, entry(rows[2].seq, rows[2].id, "first"))
    await store.append(KEY, [{"role": "user", "content": "after"}])
    view = await store.context(KEY, 100)
    assert view.summary == "first" and view.complete
    assert [m.content for m in view.messages] == ["user 1", "assistant 1", "user 2",
                                                 "assistant 2", "after"]
    # A second compaction whose cut lies before the first entry: that entry is not a message.
    await store.compact(KEY, view.session_id, entry(rows[4].seq, rows[4].id, "second"))
    view = await store.context(KEY, 100)
    assert view.summary == "second"
    assert [m.content for m in view.messages] == ["user 2", "assistant 2", "after"]
    assert len(await store.transcript(KEY)) == 9  # nothing deleted
    short = await store.context(KEY, 2)
    assert not short.complete and [m.content for m in short.messages] == ["after"]


async def test_a_compaction_is_refused_after_a_reset_or_with_a_bad_cut(store) -> None:
    rows = await six(store)
    old = (await store.context(KEY, 10)).session_id
    with pytest.raises(SessionError, match="cut points at no message"):
        await store.compact(KEY, old, entry(rows[2].seq, rows[3].id))
    with pytest.raises(InvalidRequest):
        await store.compact(KEY, old, {"role": "user", "content": "x", "compaction": {}})
    await store.reset(KEY)
    with pytest.raises(SessionError, match="was reset before its compaction completed"):
        await store.compact(KEY, old, entry(rows[2].seq, rows[2].id))
    assert (await store.context(KEY, 10)).entry is None


async def test_the_flush_record_belongs_to_the_cycle(store) -> None:
    rows = await six(store)
    sid = (await store.context(KEY, 10)).session_id
    assert not await store.flushed(KEY, sid, 0)
    await store.append(KEY, [{"role": "user", "content": "flush", "silent": "memory_flush"}])
    assert await store.flushed(KEY, sid, 0)
    made = await store.compact(KEY, sid, entry(rows[4].seq, rows[4].id))
    assert not await store.flushed(KEY, sid, made.seq)  # a new cycle


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_entries_are_found_through_the_partial_index(store, db_path) -> None:
    await six(store)
    with sqlite3.connect(db_path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM messages WHERE session_id = 'x' "
            "AND role = 'system' AND archived = 0 ORDER BY seq DESC").fetchall()
    assert "messages_system" in str(plan)
