"""The turn API: one object per submitted message — followed, awaited, aborted — with slash
commands, plugin claims and session hooks handled by the engine for every surface."""

from __future__ import annotations

import pytest

from clawgate.agents import engine as engine_module
from clawgate.agents.turn import Submission
from clawgate.errors import SessionNotFound
from tests.agents.conftest import MAIN, gated, open_gate, until

pytestmark = pytest.mark.anyio


async def test_a_followed_turn_has_a_real_end(make_engine) -> None:
    h = await make_engine(echo={"chunk_chars": 2})
    turn = await h.engine.submit(Submission("hello there"), follow=True)
    events = [e async for e in turn.events()]
    assert events[0].stream == "lifecycle" and events[0].data["phase"] == "start"
    assert events[-1].stream == "lifecycle" and events[-1].data["phase"] == "end"
    deltas = "".join(e.data["delta"] for e in events if e.stream == "assistant")
    result = await turn.result()
    assert deltas == result.text == "hello there" and turn.done
    assert [e async for e in turn.events()] == []  # a finished turn's stream stays ended


async def test_an_overflowed_follower_ends_instead_of_hanging(make_engine, monkeypatch) -> None:
    # A follower that reads nothing until the run ended sees its mailbox overflow: the
    # iterator must end (and the result carries the whole text), not wait for ever.
    monkeypatch.setattr(engine_module, "FOLLOW_QUEUE", 8)
    h = await make_engine(echo={"chunk_chars": 1})
    text = "x" * 200
    turn = await h.engine.submit(Submission(text), follow=True)
    result = await turn.result()
    seen = [e async for e in turn.events()]
    assert len(seen) <= 8 and result.text == text


async def test_abort_through_the_turn(make_engine, tmp_path) -> None:
    h = await make_engine(**gated(tmp_path))
    turn = await h.engine.submit(Submission("[hold] wait"), follow=True)
    await until(lambda: h.engine.lanes.active(MAIN) is not None)
    assert turn.abort() is True
    result = await turn.result()
    assert result.status == "aborted"
    assert turn.abort() is False  # already ended


async def test_builtin_commands_never_reach_the_model(make_engine, tmp_path) -> None:
    h = await make_engine(**gated(tmp_path))
    held = await h.engine.submit(Submission("[hold] long"))
    await until(lambda: h.engine.lanes.active(MAIN) is not None)
    status = await h.engine.submit(Submission("/status"))  # answered while a turn runs
    assert status.command == "status"
    reply = (await status.result()).text
    assert "Session: agent:main:main" in reply and "Model: gate/gate" in reply
    assert "Running: yes" in reply
    help_turn = await h.engine.submit(Submission("/help"))
    text = (await help_turn.result()).text
    assert "/new" in text and "/stop" in text and "/echo" in text  # plugin commands too
    open_gate(tmp_path)
    assert (await held.result()).text == "re: [hold] long"


async def test_stop_aborts_the_running_turn(make_engine, tmp_path) -> None:
    h = await make_engine(**gated(tmp_path))
    running = await h.engine.submit(Submission("[hold] long question"))
    await until(lambda: h.engine.lanes.active(MAIN) is not None)
    stop = await h.engine.submit(Submission("/stop"))
    assert stop.command == "stop" and stop.details["aborted"] == [running.run_id]
    assert (await stop.result()).text == "Stopped."
    assert (await running.result()).status == "aborted"
    again = await h.engine.submit(Submission("/stop"))
    assert (await again.result()).text == "Nothing to stop."


async def test_new_starts_a_fresh_session(make_engine) -> None:
    h = await make_engine()
    await h.engine.run(Submission("remember me"))
    before = await h.store.get(MAIN)
    turn = await h.engine.submit(Submission("/new"))
    assert (await turn.result()).text == "Started a new session."
    after = await h.store.get(MAIN)
    assert before is not None and after is not None and after.session_id != before.session_id
    assert await h.store.transcript(MAIN) == []  # the old transcript is archived, not lost
    assert [m.content for m in await h.store.transcript(MAIN, include_archived=True)] == [
        "remember me", "remember me"]
    # Commands are not part of the transcript, and /reset on a session never used is fine.
    fresh = await h.engine.submit(Submission("/reset", session_key="agent:main:unused"))
    assert (await fresh.result()).status == "ok"
    with pytest.raises(SessionNotFound):
        await h.store.transcript("agent:main:unused")


async def test_unknown_slash_words_go_to_the_model(make_engine) -> None:
    h = await make_engine()
    result = await h.engine.run(Submission("/shrug what now"))
    assert result.text == "/shrug what now" and result.stop_reason == "stop"


async def test_plugin_commands_and_their_failures(make_engine) -> None:
    h = await make_engine(tools={})
    echo = await h.engine.submit(Submission("/echo  hi there"))
    assert (await echo.result()).text == "main says hi there"
    boom = await h.engine.submit(Submission("/boom"))
    result = await boom.result()
    assert result.status == "error" and "the command broke" in (result.error or "")
    # A command turn publishes like a run, so every surface shows its reply.
    followed = await h.engine.submit(Submission("/echo again", run_id="cmd-1"), follow=True)
    streams = [(e.stream, e.data.get("phase")) async for e in followed.events()]
    assert streams == [("lifecycle", "start"), ("assistant", None), ("lifecycle", "end")]
    assert h.engine.result("cmd-1") is not None  # idempotent repeats see the answer


async def test_commands_can_be_turned_off(make_engine) -> None:
    h = await make_engine(tools={})
    result = await h.engine.run(Submission("/echo raw", commands=False))
    assert result.stop_reason == "stop"  # the model (echo) got the text, no command ran


async def test_a_plugin_can_claim_a_message(make_engine) -> None:
    h = await make_engine(tools={"claim_prefix": "!ops"})
    claimed = await h.engine.submit(Submission("!ops restart the web tier"))
    assert claimed.claimed_by == "engine_tools"
    assert (await claimed.result()).text == "claimed: restart the web tier"
    assert await h.store.get(MAIN) is None  # nothing was stored for the agent
    normal = await h.engine.run(Submission("hello"))
    assert normal.text == "hello"


async def test_session_hooks_fire_where_sessions_start_and_end(make_engine, tmp_path) -> None:
    journal = tmp_path / "journal.txt"
    h = await make_engine(tools={"journal": str(journal)})
    await h.engine.run(Submission("one", session_key="agent:main:a"))
    await h.engine.run(Submission("two", session_key="agent:main:a"))  # not a new session
    await h.engine.run(Submission("/new", session_key="agent:main:a"))
    await h.engine.run(Submission("hi", session_key="agent:main:b"))
    await h.engine.delete_session("agent:main:b", agent_id="main")

    def lines() -> list[str]:
        return journal.read_text().splitlines() if journal.exists() else []

    await until(lambda: len(lines()) == 4)
    assert sorted(lines()) == sorted(["start agent:main:a", "end agent:main:a new",
                                      "start agent:main:b", "end agent:main:b delete"])
