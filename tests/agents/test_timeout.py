"""Turn timeout and cancellation leave a consistent transcript and run record."""

from __future__ import annotations

import asyncio
import sqlite3

import orjson
import pytest

from clawgate.agents.turn import Submission
from tests.agents.conftest import MAIN, next_event, started, texts, user_texts
from tests.support.mock_openai import Reply, stall

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite_only]  # reads the SQLite file


def open_runs(db):
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM runs WHERE status IN ('queued', 'running')").fetchone()[0]


async def test_turn_timeout_ends_the_run_with_a_consistent_transcript(make_engine,
                                                                        mock_openai):
    mock_openai.plan(stall(30), Reply("after the timeout"))
    h = await make_engine(mock=mock_openai, engine={"turn_timeout_s": 0.3})

    result = await h.engine.run(Submission("are you there?"))

    assert (result.status, result.stop_reason) == ("timeout", "timeout")
    assert "0.3" in (result.error or "")
    stored = await h.store.transcript(MAIN)
    assert [(m.role, m.content, m.stop_reason) for m in stored] == [
        ("user", "are you there?", None), ("assistant", "", "timeout")]
    record = await h.store.get_run(result.run_id)
    assert record is not None and (record.status, record.stop_reason) == ("timeout", "timeout")
    assert len(mock_openai.requests) == 1  # a timed-out turn does not fall back or retry
    await mock_openai.until(lambda: mock_openai.disconnects == 1)  # the stream was closed

    # The session carries on from a consistent history.
    nxt = await h.engine.run(Submission("and now?"))
    assert (nxt.status, nxt.text) == ("ok", "after the timeout")
    assert user_texts(mock_openai.requests[1].body) == ["are you there?", "and now?"]
    assert open_runs(h.store.path) == 0


async def test_timeout_while_a_tool_runs(make_engine, tmp_path):
    h = await make_engine(tools={}, engine={"turn_timeout_s": 0.3})
    never = tmp_path / "never"
    call = "/tool wait_for_file " + orjson.dumps({"path": str(never)}).decode()

    result = await h.engine.run(Submission(call))

    assert result.status == "timeout"
    stored = await h.store.transcript(MAIN)
    assert [(m.role, m.stop_reason) for m in stored] == [("user", None),
                                                         ("assistant", "timeout")]
    assert h.leases() == 0


async def test_abort_during_a_stalled_provider_call(make_engine, mock_openai):
    mock_openai.plan(stall(30))
    h = await make_engine(mock=mock_openai)
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        run = await h.engine.submit(Submission("hello?"))
        await next_event(events, started(run.run_id))
        await mock_openai.until(lambda: len(mock_openai.requests) == 1)

        assert h.engine.abort(MAIN) == [run.run_id]
        result = await asyncio.wait_for(run.result(), 10)

    assert (result.status, result.stop_reason) == ("aborted", "aborted")
    assert texts(await h.store.transcript(MAIN)) == [("user", "hello?"), ("assistant", "")]
    record = await h.store.get_run(run.run_id)
    assert record is not None and record.status == "aborted"
    assert open_runs(h.store.path) == 0
    await mock_openai.until(lambda: mock_openai.disconnects == 1)
    with sqlite3.connect(h.store.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
