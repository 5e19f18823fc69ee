"""Tool calls: results reach the model; failing tools and failing hooks never break a turn."""

from __future__ import annotations

import orjson
import pytest

from clawgate.agents.turn import Submission
from tests.agents.conftest import MAIN
from tests.support.mock_openai import Reply, call_tool

pytestmark = pytest.mark.anyio


def tool_messages(body):
    return [m for m in body["messages"] if m["role"] == "tool"]


async def test_tool_result_reaches_the_model(make_engine, mock_openai):
    mock_openai.plan(call_tool("lookup", '{"q": "otter"}'), Reply("otters are mustelids"))
    h = await make_engine(mock=mock_openai, tools={})

    result = await h.engine.run(Submission("what is an otter?"))

    assert (result.status, result.text) == ("ok", "otters are mustelids")
    assert len(mock_openai.requests) == 2
    first, second = (r.body for r in mock_openai.requests)
    assert "lookup" in {t["function"]["name"] for t in first["tools"]}
    assistant = second["messages"][-2]
    assert assistant["role"] == "assistant"
    assert assistant["tool_calls"][0]["function"] == {"name": "lookup",
                                                      "arguments": '{"q": "otter"}'}
    assert tool_messages(second) == [{"role": "tool", "tool_call_id": "call_mock_0",
                                      "name": "lookup", "content": "found otter"}]
    stored = await h.store.transcript(MAIN)
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1].tool_calls is not None and stored[2].content == "found otter"
    assert stored[3].content == "otters are mustelids" and stored[3].stop_reason == "stop"


async def test_failing_tool_becomes_an_error_result(make_engine, mock_openai):
    mock_openai.plan(call_tool("explode"), Reply("sorry, that failed"))
    h = await make_engine(mock=mock_openai, tools={})

    result = await h.engine.run(Submission("blow up"))

    assert (result.status, result.text) == ("ok", "sorry, that failed")
    [tool] = tool_messages(mock_openai.requests[1].body)
    assert tool["content"].startswith("error: ")
    assert "kaboom" in tool["content"]


async def test_unknown_tool_and_bad_arguments_are_error_results(make_engine, mock_openai):
    mock_openai.plan(call_tool("no_such_tool"), call_tool("lookup", "{not json"), Reply("ok"))
    h = await make_engine(mock=mock_openai, tools={})

    result = await h.engine.run(Submission("try things"))

    assert result.status == "ok"
    unknown = tool_messages(mock_openai.requests[1].body)
    assert "unknown tool 'no_such_tool'" in unknown[0]["content"]
    bad = tool_messages(mock_openai.requests[2].body)[-1]
    assert bad["content"].startswith("error: tool arguments are not valid JSON")


async def test_failing_hooks_do_not_break_the_turn(make_engine, mock_openai):
    mock_openai.plan(call_tool("lookup", '{"q": "x"}'), Reply("fine"))
    h = await make_engine(mock=mock_openai,
                          tools={"fail_prompt_hook": True, "fail_after_tool": True})

    result = await h.engine.run(Submission("go"))

    assert (result.status, result.text) == ("ok", "fine")
    assert tool_messages(mock_openai.requests[1].body)[0]["content"] == "found x"
    # both handlers really ran and failed (contained by the hook caller)
    assert h.host.current.registry.hooks.failures_total == 2


async def test_before_tool_call_block_gives_the_model_an_error(make_engine, mock_openai):
    mock_openai.plan(call_tool("lookup", '{"q": "secret"}'), Reply("I may not look that up"))
    h = await make_engine(mock=mock_openai, tools={"block_tools": ["lookup"]})

    result = await h.engine.run(Submission("look up the secret"))

    assert (result.status, result.text) == ("ok", "I may not look that up")
    [tool] = tool_messages(mock_openai.requests[1].body)
    assert tool["content"].startswith("error: ")
    assert "lookup is not allowed here" in tool["content"]
    assert "found" not in tool["content"]


async def test_echo_tool_convention_runs_a_plugin_tool(make_engine):
    h = await make_engine(tools={})

    result = await h.engine.run(Submission("/tool lookup " + orjson.dumps({"q": "heron"}).decode()))

    assert (result.status, result.text) == ("ok", "tool lookup said: found heron")
    assert result.tool_calls == ()
