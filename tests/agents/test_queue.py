"""Queue modes (interrupt, collect, followup, steer) and the queue cap with its drop policies.

Most tests use the fixture plugin's ``gate`` provider: a message containing ``[hold]`` is
answered only once the test creates ``<state>/gate/open``, so a run stays active exactly as long
as the test needs.
"""

from __future__ import annotations

import asyncio
import sqlite3

import orjson
import pytest

from clawgate.agents.turn import Submission
from clawgate.errors import QueueFullError
from tests.agents.conftest import (
    MAIN,
    gated,
    next_event,
    open_gate,
    started,
    texts,
    user_texts,
)

pytestmark = pytest.mark.anyio


def run_rows(db, *run_ids):
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"SELECT run_id, status, merged_into FROM runs WHERE run_id IN "
            f"({', '.join('?' for _ in run_ids)})", run_ids).fetchall()
    return {run_id: (status, merged) for run_id, status, merged in rows}


async def test_interrupt_aborts_the_active_run_and_runs_the_newest(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        first = await h.engine.submit(Submission("[hold] first"))
        await next_event(events, started(first.run_id))
        newest = await h.engine.submit(Submission("second", mode="interrupt"))

        old, new = await asyncio.wait_for(asyncio.gather(first.result(), newest.result()), 10)

    assert (old.status, old.stop_reason) == ("aborted", "interrupted by a newer message")
    assert (new.status, new.text) == ("ok", "re: second")
    stored = await h.store.transcript(MAIN)
    assert texts(stored) == [("user", "[hold] first"), ("assistant", ""),
                             ("user", "second"), ("assistant", "re: second")]
    assert stored[1].stop_reason == "interrupted by a newer message"
    record = await h.store.get_run(first.run_id)
    assert record is not None and record.status == "aborted"


async def test_interrupt_keeps_the_partial_reply(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        first = await h.engine.submit(Submission("[half] long question"))  # streams "re: [half] l"
        await next_event(events, lambda e: e.stream == "assistant")
        newest = await h.engine.submit(Submission("never mind", mode="interrupt"))
        old, new = await asyncio.wait_for(asyncio.gather(first.result(), newest.result()), 10)

    assert (old.status, old.text) == ("aborted", "re: [half] l")
    assert (new.status, new.text) == ("ok", "re: never mind")
    stored = await h.store.transcript(MAIN)
    assert [(m.role, m.content, m.stop_reason) for m in stored] == [
        ("user", "[half] long question", None),
        ("assistant", "re: [half] l", "interrupted by a newer message"),
        ("user", "never mind", None), ("assistant", "re: never mind", "stop")]


@pytest.mark.sqlite_only  # reads the SQLite file
async def test_collect_coalesces_a_burst_into_one_run(make_engine, mock_openai):
    h = await make_engine(mock=mock_openai,
                          engine={"queue_mode": "collect", "collect_window_ms": 300})
    runs = [await h.engine.submit(Submission(text)) for text in ("one", "two", "three")]

    results = await asyncio.wait_for(asyncio.gather(*(r.result() for r in runs)), 10)

    assert len(mock_openai.requests) == 1
    assert user_texts(mock_openai.requests[0].body)[-3:] == ["one", "two", "three"]
    head = runs[0].run_id
    assert [r.merged_into for r in results] == [None, head, head]
    assert {r.status for r in results} == {"ok"}
    assert {r.text for r in results} == {"three"}  # the mock echoes the last user message
    assert texts(await h.store.transcript(MAIN)) == [
        ("user", "one"), ("user", "two"), ("user", "three"), ("assistant", "three")]
    assert run_rows(h.store.path, *(r.run_id for r in runs)) == {
        head: ("ok", None), runs[1].run_id: ("ok", head), runs[2].run_id: ("ok", head)}
    assert h.leases() == 0  # merged runs give their plugin-generation lease back


async def test_followup_runs_queued_messages_in_order(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        first = await h.engine.submit(Submission("[hold] a"))
        await next_event(events, started(first.run_id))
        later = [await h.engine.submit(Submission(t, mode="followup")) for t in ("b", "c")]
        assert [r.run_id for r in h.engine.lanes.queued(MAIN)] == [r.run_id for r in later]
        open_gate(tmp_path)
        results = await asyncio.wait_for(
            asyncio.gather(first.result(), *(r.result() for r in later)), 10)

    assert [(r.status, r.text, r.merged_into) for r in results] == [
        ("ok", "re: [hold] a", None), ("ok", "re: b", None), ("ok", "re: c", None)]
    assert texts(await h.store.transcript(MAIN)) == [
        ("user", "[hold] a"), ("assistant", "re: [hold] a"), ("user", "b"),
        ("assistant", "re: b"), ("user", "c"), ("assistant", "re: c")]


@pytest.mark.sqlite_only  # reads the SQLite file
async def test_steer_joins_the_active_run_at_the_next_tool_boundary(make_engine, tmp_path):
    h = await make_engine(tools={})  # echo provider: "/tool <name> <args>" calls the tool
    release = tmp_path / "release"
    call = "/tool wait_for_file " + orjson.dumps({"path": str(release)}).decode()
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        active = await h.engine.submit(Submission(call))
        await next_event(events, lambda e: e.stream == "tool" and e.data["phase"] == "start")
        steered = await h.engine.submit(Submission("also consider this", mode="steer"))
        release.touch()
        first, second = await asyncio.wait_for(
            asyncio.gather(active.result(), steered.result()), 10)

    assert (first.status, first.text) == ("ok", "also consider this")
    assert (second.status, second.merged_into) == ("ok", active.run_id)
    stored = await h.store.transcript(MAIN)
    assert [m.role for m in stored] == ["user", "assistant", "tool", "user", "assistant"]
    assert stored[2].content == "released"
    assert (stored[3].content, stored[4].content) == ("also consider this",
                                                      "also consider this")
    assert run_rows(h.store.path, steered.run_id) == {steered.run_id: ("ok", active.run_id)}
    assert h.leases() == 0


async def test_steer_during_the_last_model_call_is_not_lost(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        active = await h.engine.submit(Submission("[hold] first"))
        await next_event(events, started(active.run_id))
        steered = await h.engine.submit(Submission("second", mode="steer"))
        open_gate(tmp_path)
        results = await asyncio.wait_for(asyncio.gather(active.result(), steered.result()), 10)

    assert [r.status for r in results] == ["ok", "ok"]
    assert results[1].merged_into == active.run_id
    stored = texts(await h.store.transcript(MAIN))
    assert ("user", "second") in stored  # the acknowledged message reached the transcript
    assert stored[-2:] == [("user", "second"), ("assistant", "re: second")]  # and was answered
    assert h.leases() == 0


async def test_steer_without_an_active_run_runs_normally(make_engine):
    h = await make_engine()

    result = await h.engine.run(Submission("just this", mode="steer"))

    assert (result.status, result.text, result.merged_into) == ("ok", "just this", None)


async def test_full_queue_refuses_new_messages_and_stores_nothing(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path, queue_cap=1))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        first = await h.engine.submit(Submission("[hold] a"))
        await next_event(events, started(first.run_id))
        queued = await h.engine.submit(Submission("b"))
        with pytest.raises(QueueFullError) as refused:
            await h.engine.submit(Submission("c", run_id="refused-run"))
        assert refused.value.session_key == MAIN

        assert await h.store.get_run("refused-run") is None
        assert h.engine.find_run("refused-run") is None
        open_gate(tmp_path)
        await asyncio.wait_for(asyncio.gather(first.result(), queued.result()), 10)
    assert [m.content for m in await h.store.transcript(MAIN) if m.role == "user"] == [
        "[hold] a", "b"]


async def test_concurrent_admissions_refused_by_the_cap_store_nothing(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path, queue_cap=1))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        first = await h.engine.submit(Submission("[hold] a"))
        await next_event(events, started(first.run_id))
        outcomes = await asyncio.gather(
            *(h.engine.submit(Submission(t, run_id=f"run-{t}")) for t in ("b", "c", "d")),
            return_exceptions=True)

        admitted = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [f"run-{t}" for t, o in zip("bcd", outcomes, strict=True)
                   if isinstance(o, QueueFullError)]
        assert (len(admitted), len(refused)) == (1, 2)
        for run_id in refused:
            assert await h.store.get_run(run_id) is None, f"{run_id} was refused but stored"
        open_gate(tmp_path)
        await asyncio.wait_for(asyncio.gather(first.result(), *(r.result() for r in admitted)), 10)


async def test_drop_old_drops_the_oldest_queued_message(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path, queue_cap=1, queue_drop="old"))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        first = await h.engine.submit(Submission("[hold] a"))
        await next_event(events, started(first.run_id))
        oldest = await h.engine.submit(Submission("b"))
        newest = await h.engine.submit(Submission("c"))

        dropped = await asyncio.wait_for(oldest.result(), 10)
        assert (dropped.status, dropped.stop_reason) == ("aborted", "dropped: queue full")
        open_gate(tmp_path)
        results = await asyncio.wait_for(asyncio.gather(first.result(), newest.result()), 10)

    assert [(r.status, r.text) for r in results] == [("ok", "re: [hold] a"), ("ok", "re: c")]
    record = await h.store.get_run(oldest.run_id)
    assert record is not None and record.status == "aborted"


async def test_interrupt_with_a_full_queue_still_runs_the_newest(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path, queue_cap=1))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        first = await h.engine.submit(Submission("[hold] a"))
        await next_event(events, started(first.run_id))
        queued = await h.engine.submit(Submission("b"))

        newest = await h.engine.submit(Submission("c", mode="interrupt"))
        results = await asyncio.wait_for(
            asyncio.gather(first.result(), queued.result(), newest.result()), 10)

    assert [(r.status, r.text) for r in results] == [
        ("aborted", ""), ("aborted", ""), ("ok", "re: c")]


async def test_collect_waits_behind_an_active_run(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path, collect_window_ms=50))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        first = await h.engine.submit(Submission("[hold] first"))
        await next_event(events, started(first.run_id))
        burst = [await h.engine.submit(Submission(t, mode="collect")) for t in ("x", "y")]
        open_gate(tmp_path)
        results = await asyncio.wait_for(
            asyncio.gather(first.result(), *(r.result() for r in burst)), 10)

    assert [r.status for r in results] == ["ok"] * 3
    assert [r.merged_into for r in results] == [None, None, burst[0].run_id]
    assert texts(await h.store.transcript(MAIN)) == [
        ("user", "[hold] first"), ("assistant", "re: [hold] first"),
        ("user", "x"), ("user", "y"), ("assistant", "re: y")]


async def test_max_pending_bounds_admissions_across_sessions(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path, max_pending=3))
    held = [await h.engine.submit(Submission("[hold] x", session_key=f"agent:main:s{i}"))
            for i in range(3)]
    with pytest.raises(QueueFullError) as refused:
        await h.engine.submit(Submission("one too many", session_key="agent:main:s9",
                                         run_id="over"))
    assert "max_pending" in str(refused.value)
    assert await h.store.get_run("over") is None and await h.store.get("agent:main:s9") is None
    open_gate(tmp_path)
    await asyncio.wait_for(asyncio.gather(*(r.result() for r in held)), 10)
    again = await h.engine.run(Submission("room again", session_key="agent:main:s9"))
    assert again.status == "ok"
