"""System events join the next admitted message of their session (bounded, given back when the
admission is refused); a reply filter decides what of a turn anyone sees, at the source."""

from __future__ import annotations

import pytest

from clawgate.agents.sysevents import SystemEvents, prepend
from clawgate.agents.turn import ReplyFilter, Submission
from clawgate.errors import QueueFullError, SessionError
from tests.agents.conftest import MAIN, texts

pytestmark = pytest.mark.anyio


def test_the_queue_is_bounded_per_session_and_in_total() -> None:
    dropped: list[int] = []
    events = SystemEvents(per_session=2, sessions=2, on_drop=lambda: dropped.append(1))
    assert events.add("a", "one") == 1
    assert events.add("a", "  two\n lines ") == 2
    assert events.add("a", "three") == 2 and dropped == [1]  # the oldest went
    assert events.add("a", "   ") == 2  # blank: nothing queued
    events.add("b", "x")
    with pytest.raises(QueueFullError):
        events.add("c", "y")
    assert events.take("a") == ("two lines", "three") and events.take("a") == ()
    events.add("a", "newer")
    events.restore("a", ("given", "back"))
    assert events.take("a") == ("back", "newer")  # the bound keeps the newest


def test_prepend_puts_the_lines_ahead_of_the_content() -> None:
    assert prepend({"role": "user", "content": "hi"}, ("a", "b")) == {
        "role": "user", "content": "System: a\nSystem: b\n\nhi"}
    parts = [{"type": "image_url", "image_url": {"url": "data:,"}}]
    assert prepend({"role": "user", "content": parts}, ("a",))["content"] == [
        {"type": "text", "text": "System: a"}, *parts]


async def test_events_join_the_next_message_and_come_back_if_it_is_refused(
        make_engine) -> None:
    h = await make_engine(echo={})
    engine = h.engine
    assert engine.system_event("Backup done") == MAIN
    with pytest.raises(Exception, match="empty"):
        engine.system_event("  ")
    await engine.store.ensure(MAIN, agent_id="main")
    await engine.store.patch(MAIN, send_policy="deny")
    with pytest.raises(SessionError):
        await engine.submit(Submission("hello"))
    assert engine.system_events.pending(MAIN) == 1  # the refusal gave it back
    await engine.store.patch(MAIN, send_policy=None)
    # A command is answered without the model: it does not take them.
    command = await engine.submit(Submission("/status"))
    assert command.command == "status" and engine.system_events.pending(MAIN) == 1
    result = await engine.run(Submission("hello"))
    assert result.text == "System: Backup done\n\nhello"
    assert engine.system_events.pending(MAIN) == 0
    stored = await engine.store.transcript(MAIN)
    assert texts(stored)[-2] == ("user", "System: Backup done\n\nhello")
    other = await engine.run(Submission("plain", session_key="agent:main:other"))
    assert other.text == "plain"


async def test_a_reply_filter_applies_to_the_stream_the_result_and_the_transcript(
        make_engine) -> None:
    h = await make_engine(echo={"chunk_chars": 3})
    engine = h.engine
    hidden = ReplyFilter(final=lambda t: None if t.startswith("secret") else t.upper(),
                         preview=lambda t: "" if len(t) < 12 else t[:12].upper())
    sub = engine.bus.subscribe(maxsize=1024)
    shown = await engine.run(Submission("visible but quiet", reply=hidden))
    assert shown.text == "VISIBLE BUT QUIET" and shown.suppressed is False
    deltas = []
    while (event := sub.get_nowait()) is not None:
        if getattr(event, "stream", None) == "assistant":
            deltas.append(event.data["delta"])
    assert "".join(deltas) == "VISIBLE BUT "  # only what preview allowed, as it grew
    before = texts(await engine.store.transcript(MAIN))
    dropped = await engine.run(Submission("secret plans", reply=hidden))
    assert dropped.text == "" and dropped.suppressed is True
    assert texts(await engine.store.transcript(MAIN)) == before  # archived, as if never sent
    assert before[-1] == ("assistant", "VISIBLE BUT QUIET")
    sub.close()
