"""Abort: queued runs first, then the active one; results, run records and the session say so."""

from __future__ import annotations

import asyncio

import pytest

from clawgate.agents.turn import Submission
from tests.agents.conftest import MAIN, gated, next_event, open_gate, started, texts, until

pytestmark = pytest.mark.anyio


async def statuses(store, runs):
    out = []
    for run in runs:
        record = await store.get_run(run.run_id)
        out.append(None if record is None else record.status)
    return out


async def test_abort_stops_queued_runs_then_the_active_one(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        active = await h.engine.submit(Submission("[hold] a"))
        await next_event(events, started(active.run_id))
        queued = [await h.engine.submit(Submission(t)) for t in ("b", "c")]

        aborted = h.engine.abort(MAIN)

        assert aborted == [queued[0].run_id, queued[1].run_id, active.run_id]
        results = await asyncio.wait_for(
            asyncio.gather(active.result(), *(r.result() for r in queued)), 10)
    assert [r.status for r in results] == ["aborted"] * 3
    assert results[0].stop_reason == "aborted"
    runs = [active, *queued]
    await until(lambda: _all_aborted(h.store, runs))
    entry = await h.store.get(MAIN)
    assert entry is not None and entry.aborted_last_run is True
    stored = await h.store.transcript(MAIN)
    assert texts(stored)[:2] == [("user", "[hold] a"), ("assistant", "")]
    assert stored[1].stop_reason == "aborted"
    assert [m.content for m in stored if m.role == "user"] == ["[hold] a", "b", "c"]
    assert h.engine.abort(MAIN) == []  # nothing left to abort
    assert h.leases() == 0


async def _all_aborted(store, runs):
    return await statuses(store, runs) == ["aborted"] * len(runs)


async def test_abort_one_queued_run_leaves_the_others(make_engine, tmp_path):
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        active = await h.engine.submit(Submission("[hold] a"))
        await next_event(events, started(active.run_id))
        b, c = [await h.engine.submit(Submission(t)) for t in ("b", "c")]

        assert h.engine.abort(MAIN, run_id=b.run_id) == [b.run_id]
        assert (await asyncio.wait_for(b.result(), 10)).status == "aborted"
        open_gate(tmp_path)
        results = await asyncio.wait_for(asyncio.gather(active.result(), c.result()), 10)

    assert [(r.status, r.text) for r in results] == [("ok", "re: [hold] a"), ("ok", "re: c")]
    entry = await h.store.get(MAIN)
    assert entry is not None and entry.aborted_last_run is False  # the last run ended ok


async def test_an_abort_while_the_run_records_its_end_changes_nothing(make_engine, tmp_path):
    """The run has ended (its end is published) and is still recording it (``agent_end``
    holds it): an abort finds nothing to stop, and the end is recorded once, as it was."""
    options = gated(tmp_path)
    options["tools"]["hold_agent_end"] = True
    h = await make_engine(**options)
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        turn = await h.engine.submit(Submission("a"))
        await next_event(events, lambda e: e.run_id == turn.run_id
                         and e.stream == "lifecycle" and e.data["phase"] == "end")

        assert h.engine.abort(MAIN) == []
        assert h.engine.abort(MAIN, run_id=turn.run_id) == []
        (tmp_path / "gate" / "ended").touch()
        result = await asyncio.wait_for(turn.result(), 10)

    assert (result.status, result.text) == ("ok", "re: a")
    record = await h.store.get_run(turn.run_id)
    assert record is not None and record.status == "ok"
    assert texts(await h.store.transcript(MAIN)) == [("user", "a"), ("assistant", "re: a")]
    entry = await h.store.get(MAIN)
    assert entry is not None and entry.aborted_last_run is False
    assert h.leases() == 0


async def test_abort_as_a_queued_run_is_dispatched_keeps_the_lane_working(make_engine,
                                                                           tmp_path):
    """Abort lands after the lane made ``b`` active but before its task took a first step."""
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(session_key=MAIN) as events:
        active = await h.engine.submit(Submission("[hold] a"))
        await next_event(events, started(active.run_id))
        b, c = [await h.engine.submit(Submission(t)) for t in ("b", "c")]
        # done-callbacks run before the task the lane just created for ``b`` starts
        h.engine.find_run(active.run_id).done.add_done_callback(
            lambda _: h.engine.abort(MAIN, run_id=b.run_id))

        h.engine.abort(MAIN, run_id=active.run_id)
        results = await asyncio.wait_for(
            asyncio.gather(active.result(), b.result(), c.result()), 10)

    assert [r.status for r in results] == ["aborted", "aborted", "ok"]
    assert results[2].text == "re: c"
    await until(lambda: _all_aborted(h.store, [active, b]))
    assert [m.content for m in await h.store.transcript(MAIN) if m.role == "user"] == [
        "[hold] a", "b", "c"]
    assert h.leases() == 0


async def test_run_completed_before_its_begin_committed_keeps_its_input(tmp_path, anyio_backend):
    """A run cancelled while its ``begin_run`` still waited for the writer is completed without
    a begin; its acknowledged input must still precede the final message in the transcript."""
    from clawgate.sessions.store import SessionStore

    async with SessionStore(tmp_path / "clawgate.db") as store:
        await store.ensure(MAIN)
        await store.admit("r1", MAIN, [{"role": "user", "content": "question"}])
        await store.complete_run("r1", MAIN, [{"role": "assistant", "content": "",
                                               "stop_reason": "aborted"}],
                                 status="aborted", stop_reason="aborted")

        assert texts(await store.transcript(MAIN)) == [("user", "question"),
                                                       ("assistant", "")]
        record = await store.get_run("r1")
        assert record is not None and record.status == "aborted"
