"""The turn context kept between turns is exactly what the store would read: through appends,
compaction entries, injected notes, archived runs, resets and evictions."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from clawgate.sessions import compaction, history
from clawgate.sessions.store import SessionStore
from clawgate.sessions.transcript import StoredMessage

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_only]  # the cache is SQLite's

KEY = "agent:main:main"
LIMIT = 4  # small, so that the kept context is trimmed as the transcript grows


def _read(path: Path, key: str) -> list[StoredMessage]:
    """The context as the store reads it, on a connection of its own."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        sid = conn.execute("SELECT session_id FROM sessions WHERE key = ?", (key,)).fetchone()[0]
        return compaction.context(conn, sid, LIMIT)
    finally:
        conn.close()


async def _turn(store: SessionStore, path: Path, text: str, *, key: str = KEY,
                archive: bool = False) -> list[StoredMessage]:
    run = str(uuid.uuid4())
    _entry, _created, begun = await store.admit_and_begin(
        run, key, [{"role": "user", "content": text}], starts=lambda row: LIMIT)
    assert begun is not None
    assert begun == _read(path, key)  # what the turn was given is what the store holds
    first = begun[-1].seq
    await store.complete_run(run, key, [{"role": "assistant", "content": f"re: {text}"}],
                             status="ok", archive_from=first if archive else None)
    return begun


async def test_the_kept_context_follows_every_kind_of_write(db_path: Path) -> None:
    async with SessionStore(db_path) as store:
        await store.ensure(KEY)
        for n in range(4):
            begun = await _turn(store, db_path, f"turn {n}")
        assert [m.content for m in begun] == ["re: turn 1", "turn 2", "re: turn 2", "turn 3"]
        assert store.context_reads == (3, 0)  # the first turn's was what it appended

        await store.append(KEY, [{"role": "user", "content": "a note", "stop_reason": "injected"}])
        begun = await _turn(store, db_path, "after the note")
        assert "a note" in [m.content for m in begun]
        assert store.context_reads == (3, 1)  # the note moved the transcript on: read again

        # A compaction entry heads the context from then on.
        kept = begun[-2]
        await store.compact(KEY, kept.session_id, {
            "role": "system", "content": "summary so far",
            "compaction": {"firstKeptSeq": kept.seq, "firstKeptId": kept.id}})
        for n in range(3):
            begun = await _turn(store, db_path, f"compacted {n}")
            assert begun[0].content == "summary so far"

        # A run whose messages are archived (an acknowledged heartbeat) leaves no trace.
        await _turn(store, db_path, "heartbeat", archive=True)
        begun = await _turn(store, db_path, "after the heartbeat")
        assert "heartbeat" not in [m.content for m in begun]

        # A reset starts a new transcript.
        await store.reset(KEY)
        begun = await _turn(store, db_path, "fresh start")
        assert [m.content for m in begun] == ["fresh start"]
        hits, misses = store.context_reads
        assert hits >= 5 and misses == 3  # read after the note, the entry and the archive


async def test_sessions_beyond_the_bound_are_read_again(db_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # about two short messages: less than two sessions need
    monkeypatch.setattr(history, "MAX_BYTES", 2 * (history.MESSAGE_OVERHEAD + 30))
    async with SessionStore(db_path) as store:
        keys = [f"agent:main:main:n{n}" for n in range(3)]
        for key in keys:
            await store.ensure(key)
        for round_ in range(3):
            for key in keys:  # each round evicts the least recently used
                await _turn(store, db_path, f"{key} {round_}", key=key)
        # Only the session used last stays kept (its next turn is the one hit); every other
        # turn after the first round (whose contexts were what they appended) found its
        # session evicted, or its context too big to keep.
        assert store.context_reads == (1, 5)


async def test_the_bound_is_in_bytes_so_a_huge_message_is_not_kept(
        db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history, "MAX_BYTES", 20_000)
    async with SessionStore(db_path) as store:
        await store.ensure(KEY)
        await _turn(store, db_path, "short")
        await _turn(store, db_path, "short again")  # kept: read nothing
        assert store.context_reads == (1, 0)
        await _turn(store, db_path, "x" * 30_000)  # the context now weighs more than the bound
        await _turn(store, db_path, "after")
        assert store.context_reads == (2, 1)
