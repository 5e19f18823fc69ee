"""SessionStore: sessions, transcripts, reset/delete, runs, and the writer thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from clawgate.errors import (
    InvalidRequest,
    SessionError,
    SessionKeyError,
    SessionNotFound,
    Unavailable,
)
from clawgate.sessions.store import SessionStore

from .conftest import START_MS, Clock

pytestmark = pytest.mark.anyio
MAIN = "agent:main:main"
DM = "agent:main:telegram:direct:42"


async def test_ensure_creates_once(store: SessionStore, clock: Clock) -> None:
    assert await store.get(DM) is None
    first = await store.ensure(DM, channel="telegram", chat_type="direct", label="Alice")
    clock.advance(1000)
    again = await store.ensure(DM, label="ignored on an existing session")
    assert again == first
    assert first.key == DM and first.agent_id == "main"
    assert first.channel == "telegram" and first.label == "Alice"
    assert first.created_at == first.updated_at == first.started_at == START_MS
    assert len(first.session_id) == 36
    assert await store.get(DM) == first
    assert await store.count() == 1


async def test_keys_are_canonicalized_and_validated(store: SessionStore) -> None:
    entry = await store.ensure("Agent:Main:Telegram:Direct:42")
    assert entry.key == DM
    assert await store.get("AGENT:MAIN:TELEGRAM:DIRECT:42") == entry
    with pytest.raises(SessionKeyError, match="empty segment"):
        await store.get("agent::main")
    with pytest.raises(SessionKeyError, match="qualify"):
        await store.ensure("main")


async def test_agent_id_comes_from_the_key(store: SessionStore) -> None:
    assert (await store.ensure("agent:ops:main")).agent_id == "ops"
    assert (await store.ensure("cron:nightly", agent_id="Ops")).agent_id == "ops"
    assert (await store.ensure("global")).agent_id == "main"
    with pytest.raises(SessionError, match="belongs to agent 'ops'"):
        await store.ensure("agent:ops:work", agent_id="main")


async def test_patch_sets_and_clears_fields(store: SessionStore, clock: Clock) -> None:
    await store.ensure(DM, label="old", subject="s")
    clock.advance(500)
    entry = await store.patch(
        DM, label="new", subject=None, send_policy="deny", origin={"provider": "telegram"},
        model_override="gpt-x", aborted_last_run=True, context_tokens=128000,
    )
    assert entry.label == "new" and entry.subject is None and entry.send_policy == "deny"
    assert entry.origin == {"provider": "telegram"} and entry.model_override == "gpt-x"
    assert entry.aborted_last_run is True and entry.context_tokens == 128000
    assert entry.updated_at == START_MS + 500
    assert await store.get(DM) == entry


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"labell": "x"}, "unknown session field 'labell'"),
        ({"label": "ok", "session_id": "x"}, "'session_id' cannot be set"),
        ({"label": 3}, "'label' must be a string"),
        ({"send_policy": "maybe"}, "'send_policy' must be one of allow, deny"),
        ({"input_tokens": -1}, "'input_tokens' must be a non-negative integer"),
        ({"aborted_last_run": "yes"}, "'aborted_last_run' must be a boolean"),
        ({"origin": ["a"]}, "'origin' must be an object"),
    ],
)
async def test_bad_patch_is_refused_and_nothing_changes(
    store: SessionStore, fields: dict[str, object], message: str
) -> None:
    before = await store.ensure(DM, label="keep")
    with pytest.raises(InvalidRequest, match=message):
        await store.patch(DM, **fields)
    assert await store.get(DM) == before


async def test_patch_missing_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound):
        await store.patch(DM, label="x")


async def test_append_and_transcript_in_order(store: SessionStore, clock: Clock) -> None:
    await store.ensure(MAIN)
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    first = await store.append(MAIN, [{"role": "user", "content": "hi"}])
    clock.advance(10)
    second = await store.append(MAIN, [
        {"role": "assistant", "content": None, "tool_calls": [call], "stop_reason": "tool_calls",
         "usage": {"input": 5, "output": 2}},
        {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "42"},
        {"role": "assistant", "content": [{"type": "text", "text": "done"}], "refusal": None},
    ])
    assert [m.seq for m in first + second] == [1, 2, 3, 4]
    got = await store.transcript(MAIN)
    assert got == first + second
    assert [m.role for m in got] == ["user", "assistant", "tool", "assistant"]
    assert got[1].usage == {"input": 5, "output": 2} and got[1].stop_reason == "tool_calls"
    # to_message gives back the OpenAI message as written, minus clawgate's metadata keys
    assert got[1].to_message() == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert got[3].to_message() == {
        "role": "assistant", "content": [{"type": "text", "text": "done"}], "refusal": None,
    }
    assert [m.seq for m in await store.transcript(MAIN, limit=2)] == [3, 4]
    assert await store.transcript(MAIN, limit=0) == []
    assert (await store.get(MAIN)).updated_at == START_MS + 10


async def test_append_requires_the_session(store: SessionStore) -> None:
    with pytest.raises(SessionNotFound):
        await store.append(DM, [{"role": "user", "content": "hi"}])
    with pytest.raises(SessionNotFound):
        await store.transcript(DM)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ({"role": "robot", "content": "x"}, r"messages\[1\].role must be one of"),
        ({"role": "user", "content": 5}, r"messages\[1\].content"),
        ({"role": "assistant", "tool_calls": "x"}, r"messages\[1\].tool_calls"),
        ({"role": "tool", "tool_call_id": 1}, r"messages\[1\].tool_call_id"),
    ],
)
async def test_bad_message_is_refused_and_nothing_stored(
    store: SessionStore, message: dict[str, object], why: str
) -> None:
    await store.ensure(MAIN)
    with pytest.raises(InvalidRequest, match=why):
        await store.append(MAIN, [{"role": "user", "content": "ok"}, message])
    assert await store.transcript(MAIN) == []


USER = [{"role": "user", "content": "q"}]


async def finish(store: SessionStore, run_id: str, key: str, status: str = "ok",
                 usage: dict[str, int] | None = None) -> None:
    """One run through the lifecycle the engine uses: admit, begin, complete."""
    await store.admit(run_id, key, USER)
    await store.begin_run(run_id, key, USER)
    await store.complete_run(run_id, key, [{"role": "assistant", "content": "a"}],
                             status=status, usage=usage)  # type: ignore[arg-type]


async def test_usage_adds_up_over_runs(store: SessionStore) -> None:
    await finish(store, "r1", MAIN, usage={"input": 10, "output": 5})
    await finish(store, "r2", MAIN, usage={"input": 1, "output": 2})
    entry = await store.get(MAIN)
    assert entry is not None
    assert (entry.input_tokens, entry.output_tokens, entry.total_tokens) == (11, 7, 18)


async def test_reset_archives_and_keeps(store: SessionStore, clock: Clock) -> None:
    before = await store.ensure(DM, label="Alice")
    await finish(store, "r-old", DM, usage={"input": 3, "output": 4})
    await store.patch(DM, model_override="m1", provider_override="p1", thinking_level="high",
                      send_policy="deny")
    clock.advance(60_000)
    after = await store.reset(DM)
    assert after.session_id != before.session_id
    assert after.started_at == after.updated_at == START_MS + 60_000
    assert (after.label, after.send_policy, after.model_override, after.provider_override,
            after.thinking_level) == ("Alice", "deny", "m1", "p1", "high")
    assert (after.input_tokens, after.total_tokens) == (0, 0)
    assert await store.transcript(DM) == []
    new = await store.append(DM, [{"role": "user", "content": "new"}])
    assert new[0].seq == 1 and new[0].session_id == after.session_id
    everything = await store.transcript(DM, include_archived=True)
    assert [(m.content, m.archived, m.session_id) for m in everything] == [
        ("q", True, before.session_id), ("a", True, before.session_id),
        ("new", False, after.session_id),
    ]
    with pytest.raises(SessionNotFound):
        await store.reset("agent:main:nobody")


async def test_delete_refuses_the_main_session(store: SessionStore) -> None:
    await store.ensure(MAIN)
    await store.ensure("agent:ops:home")
    with pytest.raises(SessionError, match="main session"):
        await store.delete(MAIN)
    with pytest.raises(SessionError, match="main session"):
        await store.delete("agent:ops:home", main_key="home")
    assert await store.get(MAIN) is not None
    assert await store.get("agent:ops:home") is not None


async def test_delete_archives_the_session(store: SessionStore) -> None:
    await store.ensure(DM)
    await store.append(DM, [{"role": "user", "content": "bye"}])
    assert await store.delete(DM) is True
    assert await store.get(DM) is None
    assert await store.count() == 0
    kept = await store.transcript(DM, include_archived=True)
    assert [(m.content, m.archived) for m in kept] == [("bye", True)]
    assert await store.delete(DM) is False
    fresh = await store.ensure(DM)  # the key can be used again, with a new transcript
    assert await store.transcript(DM) == []
    assert fresh.session_id != kept[0].session_id


async def test_runs(store: SessionStore, clock: Clock) -> None:
    entry, created = await store.admit("r1", MAIN, USER)
    assert created is True
    queued = await store.get_run("r1")
    assert queued is not None and (queued.status, queued.session_id) == ("queued",
                                                                         entry.session_id)
    clock.advance(100)
    await store.begin_run("r1", MAIN, USER)
    running = await store.get_run("r1")
    assert running is not None and (running.status, running.started_at) == ("running",
                                                                            START_MS + 100)
    clock.advance(250)
    await store.complete_run("r1", MAIN, [], status="aborted", stop_reason="user",
                             usage={"input": 1})
    done = await store.get_run("r1")
    assert done is not None and (done.status, done.ended_at, done.stop_reason, done.usage) == (
        "aborted", START_MS + 350, "user", {"input": 1})
    assert (await store.get(MAIN)).aborted_last_run is True
    with pytest.raises(InvalidRequest, match="cannot end"):
        await store.complete_run("r1", MAIN, [], status="running")  # type: ignore[arg-type]
    _, again = await store.admit("r2", MAIN, USER)
    assert again is False  # the session existed already
    await store.begin_run("r2", MAIN, USER)
    await store.complete_run("r2", MAIN, [], status="ok")
    assert (await store.get(MAIN)).aborted_last_run is False
    assert await store.get_run("nope") is None


async def test_a_failing_write_does_not_kill_the_writer(store: SessionStore) -> None:
    await store.admit("r1", MAIN, USER)
    with pytest.raises(InvalidRequest, match="already exists"):
        await store.admit("r1", MAIN, USER)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO sessions (key) VALUES ('half-written')")  # NOT NULL fails

    # Good and bad jobs queued together share a batch; only the bad one is rolled back.
    results: dict[str, object] = {}

    async def run(name: str, coro: object) -> None:
        try:
            results[name] = await coro
        except Exception as exc:
            results[name] = exc

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a", store.ensure("agent:main:a"))
        tg.start_soon(run, "bad", store._write(broken))
        tg.start_soon(run, "b", store.ensure("agent:main:b"))
    assert isinstance(results["bad"], sqlite3.IntegrityError)
    assert await store.get("agent:main:a") is not None
    assert await store.get("agent:main:b") is not None
    assert await store.count() == 3
    assert (await store.append(MAIN, [{"role": "user", "content": "still alive"}]))[0].seq == 1


async def test_concurrent_writes_all_land(store: SessionStore) -> None:
    await store.ensure(MAIN)

    async def writer(i: int) -> None:
        await store.ensure(f"agent:main:peer{i}")
        await store.append(MAIN, [{"role": "user", "content": f"m{i}"}])
        await store.patch(f"agent:main:peer{i}", label=f"L{i}")

    async with anyio.create_task_group() as tg:
        for i in range(50):
            tg.start_soon(writer, i)
    got = await store.transcript(MAIN)
    assert sorted(m.content for m in got) == sorted(f"m{i}" for i in range(50))
    assert [m.seq for m in got] == list(range(1, 51))
    assert await store.count() == 51
    assert (await store.get("agent:main:peer49")).label == "L49"


async def test_closed_store_refuses_and_reopens_with_data(db_path: Path, clock: Clock) -> None:
    store = SessionStore(db_path, clock=clock)
    with pytest.raises(Unavailable):
        await store.get(MAIN)
    async with store:
        await store.ensure(MAIN, label="persisted")
        await store.append(MAIN, [{"role": "user", "content": "hi"}])
    with pytest.raises(Unavailable):
        await store.ensure(MAIN)
    async with SessionStore(db_path) as again:
        assert (await again.get(MAIN)).label == "persisted"
        assert [m.content for m in await again.transcript(MAIN)] == ["hi"]


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_database_uses_wal(store: SessionStore, db_path: Path) -> None:
    await store.ensure(MAIN)
    mode = await anyio.to_thread.run_sync(_journal_mode, db_path)
    assert mode == "wal"


def _journal_mode(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


async def test_sqlite_runs_off_the_event_loop_thread(store: SessionStore) -> None:
    loop_thread = threading.get_ident()
    writer_thread = await store._write(lambda conn: threading.get_ident())
    reader_thread = await store._read(lambda conn: threading.get_ident())
    assert loop_thread not in (writer_thread, reader_thread)
    assert writer_thread != reader_thread


async def test_admit_and_begin_starts_the_run_in_the_admission_transaction(
        store: SessionStore) -> None:
    await store.ensure(DM)
    await store.append(DM, [{"role": "user", "content": "earlier"}])
    seen: list[str | None] = []

    def starts(row: sqlite3.Row) -> int | None:
        seen.append(row["queue_mode"])
        return 5

    entry, created, history = await store.admit_and_begin(
        "r1", DM, [{"role": "user", "content": "now"}], starts=starts)
    assert entry.key == DM and created is False and seen == [None]
    assert history is not None and [m.content for m in history] == ["earlier", "now"]
    run = await store.get_run("r1")
    assert run is not None and run.status == "running"

    _entry, created, history = await store.admit_and_begin(
        "r2", MAIN, [{"role": "user", "content": "waits"}], starts=lambda row: None)
    assert created is True and history is None
    run = await store.get_run("r2")
    assert run is not None and run.status == "queued"
    assert await store.transcript(MAIN) == []

    await store.patch(MAIN, send_policy="deny")  # refused: nothing stored, nothing started
    with pytest.raises(SessionError):
        await store.admit_and_begin("r3", MAIN, [{"role": "user", "content": "no"}],
                                    starts=starts)
    assert await store.get_run("r3") is None
