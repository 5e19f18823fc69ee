"""The event bus: ordered run events with increasing seq; slow subscribers overflow."""

from __future__ import annotations

import asyncio

import pytest

from clawgate.agents.turn import Submission
from tests.agents.conftest import MAIN
from tests.support.mock_openai import CallTools, Reply
from tests.support.poll import until

pytestmark = pytest.mark.anyio


def drain(sub):
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append(event)
    return out


def compress(events):
    """Stream/phase labels with consecutive assistant deltas folded into one."""
    labels = []
    for e in events:
        label = e.stream if e.stream in ("assistant", "usage") else \
            f"{e.stream}:{e.data['phase']}"
        if not (labels and label == "assistant" == labels[-1]):
            labels.append(label)
    return labels


async def test_run_events_arrive_in_order(make_engine, mock_openai):
    mock_openai.plan(CallTools((("lookup", '{"q": "owl"}'),), text="let me check"),
                     Reply("owls hoot", chunks=3))
    h = await make_engine(mock=mock_openai, tools={})
    with h.engine.bus.subscribe(session_key=MAIN) as sub:
        result = await h.engine.run(Submission("tell me about owls"))
        events = drain(sub)

    assert result.status == "ok"
    assert {e.run_id for e in events} == {result.run_id}
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert compress(events) == [
        "lifecycle:start", "run_status:preparing_context", "run_status:starting_model",
        "lifecycle:model", "assistant", "usage", "tool:start", "tool:result",
        "run_status:starting_model", "assistant", "usage", "lifecycle:end"]
    model = next(e.data for e in events if e.data.get("phase") == "model")
    assert model == {"phase": "model", "provider": "openai", "model": "mock-model"}
    usage = [e.data["outputTokens"] for e in events if e.stream == "usage"]
    assert usage[0] > 0 and usage[1] > usage[0]  # the run's running output total
    deltas = [e.data["delta"] for e in events if e.stream == "assistant"]
    assert deltas[0] == "let me check" and "".join(deltas[1:]) == "owls hoot"
    assert len(deltas) == 4
    tool = [e.data for e in events if e.stream == "tool"]
    assert tool[1]["result"] == "found owl" and tool[1]["isError"] is False
    end = events[-1].data
    assert (end["status"], end["text"]) == ("ok", "owls hoot")
    assert events[-1].payload()["runId"] == result.run_id


async def test_run_id_subscription_sees_only_its_run(make_engine):
    h = await make_engine()
    first = await h.engine.submit(Submission("one"))
    with h.engine.bus.subscribe(run_id=first.run_id) as mine:
        await first.result()
        await h.engine.run(Submission("two"))
        events = drain(mine)
    assert events and {e.run_id for e in events} == {first.run_id}
    assert h.engine.bus.subscribers == 0


async def test_slow_subscriber_overflows_instead_of_growing(make_engine):
    h = await make_engine(echo={"chunk_chars": 1})
    with h.engine.bus.subscribe(session_key=MAIN, maxsize=2) as slow, \
            h.engine.bus.subscribe(session_key=MAIN) as fast:
        result = await h.engine.run(Submission("a reply of many deltas"))
        everything = drain(fast)
        kept = drain(slow)

    assert result.status == "ok"
    assert len(everything) > 20
    assert slow.overflowed is True and fast.overflowed is False
    assert kept == everything[:2]  # it kept what fitted and stopped receiving


async def test_a_subscription_to_some_streams_gets_only_those(make_engine):
    h = await make_engine(echo={"chunk_chars": 1})
    with h.engine.bus.subscribe(session_key=MAIN, maxsize=8,
                                streams=frozenset({"lifecycle"})) as ends, \
            h.engine.bus.subscribe(session_key=MAIN) as everything:
        result = await h.engine.run(Submission("a reply of many deltas"))
        seen, kept = drain(everything), drain(ends)

    assert result.status == "ok"
    assert kept == [e for e in seen if e.stream == "lifecycle"]
    assert {e.data["phase"] for e in kept} >= {"start", "end"}
    assert ends.overflowed is False  # the deltas (more than 8) never reached its mailbox


async def test_a_subscription_with_a_test_gets_only_what_passes_it(make_engine):
    h = await make_engine(echo={"chunk_chars": 1})
    with h.engine.bus.subscribe(session_key=MAIN, maxsize=1,
                                when=lambda e: e.data.get("phase") == "end") as ends, \
            h.engine.bus.subscribe(session_key=MAIN) as everything:
        result = await h.engine.run(Submission("many deltas"))
        seen, kept = drain(everything), drain(ends)

    assert result.status == "ok"
    assert kept == [e for e in seen if e.stream == "lifecycle" and e.data["phase"] == "end"]
    assert len(kept) == 1 and ends.overflowed is False  # the rest never took its one slot


async def test_events_nobody_takes_are_not_published_and_keep_their_place(make_engine):
    h = await make_engine(echo={"chunk_chars": 1})
    bus = h.engine.bus
    published = []
    publish = bus.publish
    bus.publish = lambda event, **kw: (published.append(event), publish(event, **kw))[1]
    with bus.subscribe(session_key=MAIN, streams=frozenset({"lifecycle"})) as ends:
        assert bus.listens("any-run", "lifecycle") and not bus.listens("any-run", "assistant")
        result = await h.engine.run(Submission("a reply of many deltas"))
        kept = drain(ends)
    assert not bus.listens("any-run", "lifecycle")  # the last subscription went

    run_events = [e for e in published if getattr(e, "stream", None) is not None]
    assert result.status == "ok" and run_events == kept
    assert not any(e.stream == "assistant" for e in run_events)  # nobody took a delta
    start, end = kept[0], kept[-1]
    assert (start.data["phase"], end.data["phase"]) == ("start", "end")
    # seq is each event's place in the run: the unheard deltas are counted between them
    assert end.seq - start.seq > len("a reply of many deltas")


async def test_a_woken_mailbox_gives_what_it_holds_then_none_even_when_full(make_engine):
    h = await make_engine(echo={"chunk_chars": 1})
    sub = h.engine.bus.subscribe(session_key=MAIN, maxsize=3)
    await h.engine.run(Submission("many deltas"))
    assert sub.overflowed and sub.queued == 3
    waiter = asyncio.ensure_future(asyncio.wait_for(_all(sub), 5))
    sub.wake()  # a full mailbox still takes the wake-up
    assert len(await waiter) == 3  # the three it held, then None ended the reading
    sub.close()


async def _all(sub):
    out = []
    while (event := await sub.next()) is not None:
        out.append(event)
    return out


async def test_assistant_events_carry_only_the_new_text(make_engine):
    # A cumulative copy per event would make every mailbox hold O(reply²) bytes.
    h = await make_engine(echo={"chunk_chars": 3})
    with h.engine.bus.subscribe(session_key=MAIN) as sub:
        result = await h.engine.run(Submission("a reply of many small chunks"))
        events = []
        while (event := sub.get_nowait()) is not None:
            events.append(event)
    assistant = [e.data for e in events if e.stream == "assistant"]
    assert len(assistant) > 5 and all(set(d) == {"delta"} for d in assistant)
    assert "".join(d["delta"] for d in assistant) == result.text
    end = [e.data for e in events if e.stream == "lifecycle" and e.data["phase"] == "end"]
    assert end[0]["text"] == result.text


async def test_admission_completes_when_the_caller_is_cancelled(make_engine):
    # A closed connection cancels its request; a run already being stored must still run.
    h = await make_engine()
    waiting = asyncio.ensure_future(
        h.engine.submit(Submission("keep me", run_id="cancelled-caller")))
    await asyncio.sleep(0)  # the admission has started
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await until(lambda: h.engine.result("cancelled-caller") is not None)
    assert h.engine.result("cancelled-caller").text == "keep me"
    run = await h.store.get_run("cancelled-caller")
    assert run is not None and run.status == "ok"
