"""The OpenAI provider's Responses API (``api = "responses"``) against the loopback fake, and
what the chat API gained beside it (profiles, foreign message fields, reasoning effort)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from clawgate import (
    Credential,
    Finish,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    ProviderError,
    TextDelta,
    ToolCall,
    Usage,
)
from tests.support.bundled import module
from tests.support.mock_openai import Fail as ChatFail
from tests.support.mock_openai import MockOpenAI
from tests.support.mock_responses import Call, Fail, MockResponses, Reply, StreamError, encrypted

OpenAIProvider = module("openai", "provider").OpenAIProvider

pytestmark = pytest.mark.anyio

LOOKUP = {"type": "function", "function": {"name": "lookup", "description": "Look it up.",
                                           "parameters": {"type": "object"}}}


@pytest.fixture
def server() -> Iterator[MockResponses]:
    with MockResponses(api_key="sk-r") as srv:
        yield srv


@contextlib.asynccontextmanager
async def provider(url: str, **options: Any) -> AsyncIterator[Any]:
    options = {"api_key": "sk-r", "backoff_base": 0.01, "api": "responses", **options}
    p = OpenAIProvider(base_url=url, **options)
    try:
        yield p
    finally:
        await p.aclose()


def request(*messages: dict[str, Any], model: str = "gpt-test", **options: Any) -> ModelRequest:
    return ModelRequest(model, tuple(messages or ({"role": "user", "content": "hi"},)),
                        **options)


async def collect(p: Any, req: ModelRequest) -> list[ModelEvent]:
    return [event async for event in p.stream(req)]


def text_of(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_streams_text_and_sends_a_stateless_responses_body(server: MockResponses) -> None:
    server.plan(Reply("Hello, responses!", chunks=3, cached_tokens=4))
    req = request({"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                  temperature=0.2, max_tokens=64, extra={"top_p": 0.9, "seed": 3})
    async with provider(server.url) as p:
        events = await collect(p, req)
    assert text_of(events) == "Hello, responses!"
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert finish.usage.cache_read == 4 and finish.usage.input > 4 and finish.usage.output > 0
    (seen,) = server.requests
    assert seen.path == "/v1/responses" and seen.headers["authorization"] == "Bearer sk-r"
    assert seen.body == {
        "model": "gpt-test", "stream": True, "store": False, "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "temperature": 0.2, "max_output_tokens": 64, "top_p": 0.9,  # no seed in Responses
    }


async def test_function_call_round_trip(server: MockResponses) -> None:
    server.plan(Call((("lookup", '{"q": "owl"}'), ("lookup", '{"q": "bat"}')), fragments=3),
                Reply("Both are nocturnal."))
    async with provider(server.url) as p:
        first = await collect(p, request({"role": "user", "content": "owls? bats?"},
                                         tools=(LOOKUP,)))
        calls = [e for e in first if isinstance(e, ToolCall)]
        assert [(c.name, c.arguments) for c in calls] == [("lookup", '{"q": "owl"}'),
                                                          ("lookup", '{"q": "bat"}')]
        assert all(c.id.startswith("call_mock_") for c in calls)
        assert isinstance(first[-1], Finish) and first[-1].reason == "tool_calls"
        history = (
            {"role": "user", "content": "owls? bats?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": c.id, "type": "function",
                 "function": {"name": c.name, "arguments": c.arguments}} for c in calls]},
            *({"role": "tool", "tool_call_id": c.id, "content": f"result {i}"}
              for i, c in enumerate(calls)),
        )
        second = await collect(p, request(*history, tools=(LOOKUP,)))
    assert text_of(second) == "Both are nocturnal."
    sent = server.requests[1].body
    assert sent["tools"] == [{"type": "function", "name": "lookup", "description": "Look it up.",
                              "parameters": {"type": "object"}, "strict": False}]
    kinds = [item.get("type", "message") for item in sent["input"]]
    assert kinds == ["message", "function_call", "function_call", "function_call_output",
                     "function_call_output"]
    assert sent["input"][3] == {"type": "function_call_output", "call_id": calls[0].id,
                                "output": "result 0"}


async def test_reasoning_items_are_kept_and_sent_back(server: MockResponses) -> None:
    server.plan(Call((("lookup", "{}"),), reasoning="Need to look it up."), Reply("Done."))
    model = ModelInfo("o-test", reasoning=True)
    async with provider(server.url, models=[model]) as p:
        first = await collect(p, request(model="o-test", tools=(LOOKUP,), thinking="high"))
        finish = first[-1]
        assert isinstance(finish, Finish)
        items = finish.extra["reasoning_items"]
        assert items[0]["encrypted_content"] == encrypted("Need to look it up.")
        assert finish.extra["reasoning_content"] == "Need to look it up."
        (call,) = [e for e in first if isinstance(e, ToolCall)]
        history = (
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, **finish.extra, "tool_calls": [
                {"id": call.id, "type": "function",
                 "function": {"name": "lookup", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "found"},
        )
        await collect(p, request(*history, model="o-test", tools=(LOOKUP,), thinking="high"))
    first_body, second_body = (r.body for r in server.requests)
    assert first_body["reasoning"] == {"effort": "high", "summary": "auto"}
    assert first_body["include"] == ["reasoning.encrypted_content"]
    assert second_body["input"][1] == items[0]  # verified by the fake


async def test_incomplete_answer_is_length(server: MockResponses) -> None:
    server.plan(Reply("partial", incomplete="max_output_tokens"))
    async with provider(server.url) as p:
        events = await collect(p, request())
    assert text_of(events) == "partial"
    assert isinstance(events[-1], Finish) and events[-1].reason == "length"


async def test_content_filter_is_refusal(server: MockResponses) -> None:
    server.plan(Reply("", incomplete="content_filter"))
    async with provider(server.url) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p, request())
    assert caught.value.kind == "refusal"


async def test_an_error_event_is_retried_then_fails_over(server: MockResponses) -> None:
    server.plan(StreamError(), StreamError(), StreamError())
    async with provider(server.url, max_retries=2) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p, request())
    assert (caught.value.kind, caught.value.failover) == ("unavailable", True)
    assert "server_error" in str(caught.value) and len(server.requests) == 3


async def test_http_errors_keep_their_kinds(server: MockResponses) -> None:
    server.plan(Fail(429, "Rate limit reached", code="rate_limit_exceeded", retry_after=0.01),
                Reply("after the limit"),
                Fail(400, "Your input exceeds the context window of this model.",
                     code="context_length_exceeded"))
    async with provider(server.url) as p:
        assert text_of(await collect(p, request())) == "after the limit"
        with pytest.raises(ProviderError) as caught:
            await collect(p, request())
    assert (caught.value.kind, caught.value.status) == ("context_length", 400)
    assert len(server.requests) == 3


async def test_a_function_output_without_its_call_is_refused(server: MockResponses) -> None:
    async with provider(server.url) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p, request({"role": "tool", "tool_call_id": "nope", "content": "x"}))
    assert caught.value.status == 400 and "No tool call found" in str(caught.value)


async def test_a_model_entry_can_pick_the_api(server: MockResponses) -> None:
    models = [ModelInfo("pro", api="responses"), ModelInfo("mini")]
    async with provider(server.url, api="chat", models=models) as p:
        assert (p.api_for("pro"), p.api_for("mini"), p.api_for("unlisted")) == (
            "responses", "chat", "chat")
        assert text_of(await collect(p, request(model="pro"))) == "hi"
        with pytest.raises(ProviderError) as caught:  # this fake serves /responses only
            await collect(p, request(model="mini"))
    assert caught.value.status == 404
    assert [r.path for r in server.requests] == ["/v1/responses"]  # 404s are not recorded


async def test_chat_strips_other_providers_fields_and_sends_effort_to_reasoning_models(
) -> None:
    history = ({"role": "user", "content": "hi"},
               {"role": "assistant", "content": "hello", "reasoning_content": "r",
                "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
                "reasoning_items": [{"type": "reasoning", "id": "rs_1"}]},
               {"role": "user", "content": "again"})
    with MockOpenAI() as chat_server:
        async with provider(chat_server.url, api="chat", api_key="k",
                            models=[ModelInfo("thinker", reasoning=True)]) as p:
            await collect(p, request(*history, model="thinker", thinking="xhigh"))
            await collect(p, request(*history, model="plain", thinking="high"))
        thinker, plain = (r.body for r in chat_server.requests)
    assert thinker["messages"][1] == {"role": "assistant", "content": "hello"}
    assert thinker["reasoning_effort"] == "high" and "reasoning_effort" not in plain


async def test_chat_rotates_keys_on_a_429() -> None:
    with MockOpenAI() as chat_server:
        chat_server.plan(ChatFail(429, "Rate limit reached for key"))
        creds = [Credential("a", "key-a"), Credential("b", "key-b")]
        async with provider(chat_server.url, api="chat", api_key=None, profiles=creds,
                            max_retries=0) as p:
            events = await collect(p, request(session_key="s1"))
            assert text_of(events) == "hi"
            status = p.auth_status()
        keys = [r.headers["authorization"] for r in chat_server.requests]
    assert keys == ["Bearer key-a", "Bearer key-b"]
    assert [s["state"] for s in status] == ["cooldown", "ok"]
    assert isinstance(events[-1], Finish) and events[-1].usage != Usage()
