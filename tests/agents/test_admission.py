"""A message stored with its reply (``Submission.store_with_reply``, agents/admission.py): a turn
that ends at once is stored in one transaction before its result is known; one that needs the
store earlier, or takes its time, has its admission committed first; one whose transaction
fails answers with an error and leaves nothing behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clawgate.agents import admission
from clawgate.agents.turn import Submission
from clawgate.ids import new_id
from tests.agents.conftest import gated, open_gate, texts, until
from tests.support.mock_openai import MockOpenAI, Reply, call_tool

pytestmark = pytest.mark.anyio


def fresh(text: str) -> Submission:
    """What the OpenAI surface submits for a non-streamed request without ``user``."""
    return Submission(text, session_key=f"agent:main:openai:{new_id()}", channel="webchat",
                      commands=False, store_with_reply=True)


async def test_a_turn_that_ends_at_once_is_stored_whole_with_its_reply(
        make_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "COMMIT_AFTER_S", 60.0)
    journal = tmp_path / "journal.txt"
    options = gated(tmp_path)
    options["tools"]["journal"] = str(journal)
    h = await make_engine(**options)
    submission = fresh("[hold] hello")
    turn = await h.engine.submit(submission)
    await until(lambda: h.engine.lanes.active(turn.session_key) is not None)
    # Running, answered by nobody yet: nothing of it is in the store.
    assert await h.store.get(turn.session_key) is None
    assert await h.store.get_run(turn.run_id) is None
    open_gate(tmp_path)
    result = await turn.result()
    assert result.status == "ok" and result.text == "re: [hold] hello"
    entry = await h.store.get(turn.session_key)
    assert entry is not None and entry.channel == "webchat" and entry.total_tokens == 2
    assert texts(await h.store.transcript(turn.session_key)) == [
        ("user", "[hold] hello"), ("assistant", "re: [hold] hello")]
    run = await h.store.get_run(turn.run_id)
    assert run is not None and run.status == "ok" and run.ended_at is not None
    assert run.started_at <= run.ended_at
    await until(lambda: journal.exists()
                and journal.read_text().splitlines() == [f"start {turn.session_key}"])


async def test_a_slow_turn_commits_its_admission_and_is_stored_once(
        make_engine, tmp_path: Path) -> None:
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(sessions=True) as feed:
        turn = await h.engine.submit(fresh("[hold] slow"))

        async def shown() -> bool:
            return bool(await h.store.get(turn.session_key))

        await until(shown, within=10)  # within COMMIT_AFTER_S, while the provider waits
        assert h.engine.lanes.active(turn.session_key) is not None
        assert texts(await h.store.transcript(turn.session_key)) == [("user", "[hold] slow")]
        open_gate(tmp_path)
        result = await turn.result()
        assert result.status == "ok"
        assert texts(await h.store.transcript(turn.session_key)) == [
            ("user", "[hold] slow"), ("assistant", "re: [hold] slow")]
        heard = []
        while (event := feed.get_nowait()) is not None:
            heard.extend(getattr(event, "messages", ()))
    # The live transcript feed heard each message once, the input first.
    assert texts(heard) == [("user", "[hold] slow"), ("assistant", "re: [hold] slow")]


async def test_a_tool_call_stores_the_admission_before_the_tool_runs(
        make_engine, tmp_path: Path, mock_openai: MockOpenAI,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "COMMIT_AFTER_S", 60.0)
    release = tmp_path / "release"
    mock_openai.plan(call_tool("wait_for_file", f'{{"path": "{release}"}}'), Reply("done"))
    h = await make_engine(mock=mock_openai, tools={})
    turn = await h.engine.submit(fresh("use the tool"))

    async def admitted() -> bool:
        return bool(await h.store.get(turn.session_key))

    await until(admitted, within=10)  # the tool waits for the file: the turn is running
    assert h.engine.lanes.active(turn.session_key) is not None
    assert texts(await h.store.transcript(turn.session_key)) == [("user", "use the tool")]
    release.touch()
    result = await turn.result()
    assert result.status == "ok" and result.text == "done"
    assert [m.role for m in await h.store.transcript(turn.session_key)] == [
        "user", "assistant", "tool", "assistant"]


@pytest.mark.sqlite_only  # makes the SQLite file refuse the run
async def test_a_reply_that_cannot_be_stored_is_an_error_and_leaves_nothing(
        make_engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "COMMIT_AFTER_S", 60.0)
    h = await make_engine(**gated(tmp_path))
    with h.engine.bus.subscribe(sessions=True) as feed:
        turn = await h.engine.submit(fresh("[hold] doomed"))
        await until(lambda: h.engine.lanes.active(turn.session_key) is not None)
        with sqlite3.connect(tmp_path / "clawgate.db") as db:  # the store fails the write
            db.execute("CREATE TRIGGER refuse BEFORE INSERT ON messages "
                       "BEGIN SELECT RAISE(ABORT, 'messages refused'); END")
        open_gate(tmp_path)
        result = await turn.result()
        events = []
        while (event := feed.get_nowait()) is not None:
            events.append(event)
    assert result.status == "error" and result.text == ""
    error = result.error or ""
    assert "could not be stored" in error and "messages refused" in error
    assert await h.store.get(turn.session_key) is None  # no session, no message, no run
    assert await h.store.get_run(turn.run_id) is None
    ends = [e for e in events if getattr(e, "stream", None) == "lifecycle"
            and e.data["phase"] in ("end", "error")]
    assert [(e.data["phase"], e.data["text"]) for e in ends] == [("error", "")]
    assert not any(getattr(e, "messages", ()) for e in events)  # nothing announced as stored


async def test_other_turns_are_stored_before_they_run(make_engine, tmp_path: Path) -> None:
    h = await make_engine(**gated(tmp_path))
    streamed = Submission("[hold] followed", session_key=f"agent:main:openai:{new_id()}")
    turn = await h.engine.submit(streamed)  # no store_with_reply: acknowledged on submit
    assert texts(await h.store.transcript(turn.session_key)) == [("user", "[hold] followed")]
    open_gate(tmp_path)
    assert (await turn.result()).status == "ok"
