"""A conversation keeps its history: every turn sends the earlier turns to the model."""

from __future__ import annotations

import pytest

from clawgate.agents.turn import Submission
from tests.agents.conftest import MAIN, texts
from tests.support.mock_openai import Reply

pytestmark = pytest.mark.anyio


async def test_three_turns_send_and_store_the_history(make_engine, mock_openai):
    mock_openai.plan(Reply("one"), Reply("two", chunks=2), Reply("three"))
    h = await make_engine(mock=mock_openai)

    for text, reply in (("a", "one"), ("b", "two"), ("c", "three")):
        result = await h.engine.run(Submission(text))
        assert (result.status, result.text) == ("ok", reply)

    assert len(mock_openai.requests) == 3
    third = mock_openai.requests[2].body["messages"]
    assert third[0]["role"] == "system"
    assert [(m["role"], m["content"]) for m in third[1:]] == [
        ("user", "a"), ("assistant", "one"), ("user", "b"), ("assistant", "two"), ("user", "c"),
    ]
    assert texts(await h.store.transcript(MAIN)) == [
        ("user", "a"), ("assistant", "one"), ("user", "b"), ("assistant", "two"),
        ("user", "c"), ("assistant", "three"),
    ]


async def test_sessions_do_not_share_history(make_engine, mock_openai):
    h = await make_engine(mock=mock_openai)  # nothing planned: the mock echoes the user text

    await h.engine.run(Submission("for alice", session_key="alice"))
    await h.engine.run(Submission("for bob", session_key="bob"))
    second = await h.engine.run(Submission("again alice", session_key="alice"))

    assert second.status == "ok"
    sent = [(m["role"], m["content"]) for m in mock_openai.requests[2].body["messages"][1:]]
    assert sent == [("user", "for alice"), ("assistant", "for alice"), ("user", "again alice")]
    assert texts(await h.store.transcript("agent:main:bob")) == [
        ("user", "for bob"), ("assistant", "for bob")]
