"""AnthropicProvider through the real ``anthropic`` SDK against the loopback Messages API fake."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from clawgate import (
    Credential,
    Finish,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    Provider,
    ProviderError,
    TextDelta,
    ToolCall,
    Usage,
)
from tests.support.bundled import module
from tests.support.mock_anthropic import (
    Fail,
    MockAnthropic,
    Reply,
    StreamError,
    Text,
    Thinking,
    ToolUse,
    signature,
    text,
)

AnthropicProvider = module("anthropic", "provider").AnthropicProvider
convert = module("anthropic", "convert")

pytestmark = pytest.mark.anyio

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[MockAnthropic]:
    with MockAnthropic() as srv:
        yield srv


@contextlib.asynccontextmanager
async def provider(url: str, keys: tuple[str, ...] = ("sk-ant-1",),
                   **options: Any) -> AsyncIterator[Any]:
    creds = [Credential(f"key{i}", key, f"env:K{i}") for i, key in enumerate(keys)]
    p = AnthropicProvider(base_url=url, profiles=creds, **{"backoff_base": 0.01, **options})
    try:
        yield p
    finally:
        await p.aclose()


def request(*messages: dict[str, Any], **options: Any) -> ModelRequest:
    chat = messages or ({"role": "user", "content": "hi"},)
    return ModelRequest("claude-test", tuple(chat), **options)


async def collect(p: Any, req: ModelRequest | None = None) -> list[ModelEvent]:
    return [event async for event in p.stream(req or request())]


def text_of(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_streams_text_and_sends_a_messages_body(server: MockAnthropic) -> None:
    server.plan(text("Hello from Claude", chunks=3))
    req = request({"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                  max_tokens=300, temperature=0.3, extra={"stop": ["END"], "top_k": 5})
    async with provider(server.url) as p:
        assert isinstance(p, Provider)
        events = await collect(p, req)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(deltas) == "Hello from Claude" and len(deltas) == 3
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    (seen,) = server.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["authorization"] == "Bearer sk-ant-1" or seen.headers.get(
        "x-api-key") == "sk-ant-1"
    assert seen.headers["anthropic-version"]
    body = seen.body
    assert body["stream"] is True and body["model"] == "claude-test"
    assert body["max_tokens"] == 300 and body["temperature"] == 0.3 and body["top_k"] == 5
    assert body["stop_sequences"] == ["END"]
    assert body["system"] == [{"type": "text", "text": "Be brief.",
                               "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]
    assert "thinking" not in body


async def test_tool_use_round_trip(server: MockAnthropic) -> None:
    server.plan(Reply((Text("Let me check."), ToolUse("get_weather", '{"city": "Oslo"}',
                                                       fragments=4, id="toolu_1"))),
                text("It rains in Oslo."))
    async with provider(server.url) as p:
        first = await collect(p, request({"role": "user", "content": "weather?"},
                                         tools=(WEATHER,)))
        assert text_of(first) == "Let me check."
        calls = [e for e in first if isinstance(e, ToolCall)]
        assert calls == [ToolCall("toolu_1", "get_weather", '{"city": "Oslo"}')]
        assert isinstance(first[-1], Finish) and first[-1].reason == "tool_calls"
        history = (
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "toolu_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "name": "get_weather",
             "content": "rain"},
        )
        second = await collect(p, request(*history, tools=(WEATHER,)))
    assert text_of(second) == "It rains in Oslo."
    sent = server.requests[1].body
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather of a city.",
                              "input_schema": WEATHER["function"]["parameters"],
                              "cache_control": {"type": "ephemeral"}}]
    assert sent["messages"][1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}]}
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain",
         "cache_control": {"type": "ephemeral"}}]}


async def test_images_become_image_blocks(server: MockAnthropic) -> None:
    content = [{"type": "text", "text": "what is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
               {"type": "image_url", "image_url": {"url": "https://example.test/cat.jpg"}}]
    async with provider(server.url) as p:
        await collect(p, request({"role": "user", "content": content}))
    blocks = server.requests[0].body["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                     "data": "iVBOR"}}
    assert blocks[2]["source"] == {"type": "url", "url": "https://example.test/cat.jpg"}


async def test_thinking_levels_map_to_budgets(server: MockAnthropic) -> None:
    levels = ("minimal", "low", "medium", "high", "xhigh", "off")
    async with provider(server.url, max_tokens=2000) as p:
        for level in levels:
            await collect(p, request(thinking=level, temperature=0.5))
    bodies = [r.body for r in server.requests]
    assert [b.get("thinking", {}).get("budget_tokens") for b in bodies] == [
        1024, 2048, 8192, 16384, 16384, None]
    # The answer keeps its 2,000 tokens beside the budget; temperature is refused with thinking.
    assert [b["max_tokens"] for b in bodies] == [3024, 4048, 10_192, 18_384, 18_384, 2000]
    assert all("temperature" not in b for b in bodies[:5]) and bodies[5]["temperature"] == 0.5
    assert convert.budget("high", {"high": 20_000}) == 20_000


async def test_the_model_output_limit_caps_answer_and_budget(server: MockAnthropic) -> None:
    async with provider(server.url, models=[ModelInfo("claude-test", max_output_tokens=10_000)],
                        max_tokens=2000) as p:
        for level in ("low", "high", "off"):
            await collect(p, request(thinking=level))
    bodies = [r.body for r in server.requests]
    # Without a request limit the answer may use the model's whole output (as pi-ai does);
    # a budget that would not leave 1,024 tokens for the answer shrinks.
    assert [b["max_tokens"] for b in bodies] == [10_000, 10_000, 10_000]
    assert [b.get("thinking", {}).get("budget_tokens") for b in bodies] == [2048, 8976, None]


async def test_thinking_blocks_are_returned_and_sent_back_unmodified(
        server: MockAnthropic) -> None:
    server.plan(Reply((Thinking("The user wants Oslo weather."),
                       ToolUse("get_weather", '{"city": "Oslo"}', id="toolu_9"))),
                Reply((Thinking("Rain: say so."), Text("It rains."))))
    async with provider(server.url) as p:
        first = await collect(p, request({"role": "user", "content": "weather?"},
                                         tools=(WEATHER,), thinking="low"))
        finish = first[-1]
        assert isinstance(finish, Finish) and finish.reason == "tool_calls"
        blocks = finish.extra["thinking_blocks"]
        assert blocks == [{"type": "thinking", "thinking": "The user wants Oslo weather.",
                           "signature": signature("The user wants Oslo weather.")}]
        assert finish.extra["reasoning_content"] == "The user wants Oslo weather."
        assistant = {"role": "assistant", "content": None, **finish.extra, "tool_calls": [
            {"id": "toolu_9", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
        history = ({"role": "user", "content": "weather?"}, assistant,
                   {"role": "tool", "tool_call_id": "toolu_9", "content": "rain"})
        second = await collect(p, request(*history, tools=(WEATHER,), thinking="low"))
        assert text_of(second) == "It rains."
        assert server.requests[1].body["messages"][1]["content"][0] == blocks[0]

        # A tampered block is refused by the API, as a terminal request error.
        tampered = {**assistant, "thinking_blocks": [{**blocks[0], "thinking": "edited"}]}
        with pytest.raises(ProviderError) as caught:
            await collect(p, request(history[0], tampered, history[2], tools=(WEATHER,),
                                     thinking="low"))
    assert caught.value.status == 400 and not caught.value.failover
    assert "signature" in str(caught.value)


async def test_a_tool_cycle_started_without_thinking_continues_without_it(
        server: MockAnthropic) -> None:
    history = ({"role": "user", "content": "weather?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "t1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"}}]},
               {"role": "tool", "tool_call_id": "t1", "content": "sun"})
    async with provider(server.url) as p:
        events = await collect(p, request(*history, tools=(WEATHER,), thinking="high"))
    assert isinstance(events[-1], Finish)  # the fake would refuse thinking here
    assert "thinking" not in server.requests[0].body


async def test_redacted_thinking_is_kept(server: MockAnthropic) -> None:
    server.plan(Reply((Thinking("secret", redacted=True), Text("ok"))))
    async with provider(server.url) as p:
        events = await collect(p, request(thinking="minimal"))
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert finish.extra["thinking_blocks"] == [{"type": "redacted_thinking",
                                                "data": "redacted:" + signature("secret")}]
    assert "reasoning_content" not in finish.extra


async def test_cache_tokens_are_reported_in_usage(server: MockAnthropic) -> None:
    req = request({"role": "system", "content": "You are a careful assistant. " * 40},
                  {"role": "user", "content": "hi"}, tools=(WEATHER,))
    async with provider(server.url) as p:
        first = (await collect(p, req))[-1]
        second = (await collect(p, req))[-1]
    assert isinstance(first, Finish) and isinstance(second, Finish)
    assert first.usage.cache_read == 0 and first.usage.cache_write > 0
    assert second.usage.cache_read == first.usage.cache_write and second.usage.cache_write == 0
    # Usage.input counts every prompt token: uncached + cache read + cache write.
    assert first.usage.input == second.usage.input >= first.usage.cache_write


async def test_prompt_caching_can_be_turned_off(server: MockAnthropic) -> None:
    async with provider(server.url, prompt_caching=False) as p:
        events = await collect(p, request({"role": "system", "content": "sys"},
                                          {"role": "user", "content": "hi"}, tools=(WEATHER,)))
    assert b"cache_control" not in repr(server.requests[0].body).encode()
    assert isinstance(events[-1], Finish) and events[-1].usage.cache_write == 0


async def test_429_honours_retry_after_then_succeeds(server: MockAnthropic) -> None:
    server.plan(Fail(429, "rate_limit_error", "slow down", retry_after=0.05), text("after"))
    async with provider(server.url, backoff_base=60) as p:  # only retry-after finishes in time
        with anyio.fail_after(10):
            events = await collect(p)
    assert text_of(events) == "after" and len(server.requests) == 2


async def test_overloaded_529_is_retried_then_fails_over(server: MockAnthropic) -> None:
    server.plan(*[Fail(529, "overloaded_error", "Overloaded")] * 3)
    async with provider(server.url, max_retries=2) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
    error = caught.value
    assert (error.kind, error.status, error.failover) == ("unavailable", 529, True)
    assert "overloaded_error: Overloaded" in str(error) and len(server.requests) == 3


async def test_an_error_event_before_any_text_is_retried(server: MockAnthropic) -> None:
    server.plan(StreamError("overloaded_error", "Overloaded"), text("second try"))
    async with provider(server.url) as p:
        events = await collect(p)
    assert text_of(events) == "second try" and len(server.requests) == 2


async def test_an_error_event_alone_is_an_unavailable_failover(server: MockAnthropic) -> None:
    server.plan(StreamError("overloaded_error"), StreamError("overloaded_error"))
    async with provider(server.url, max_retries=1) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
    assert (caught.value.kind, caught.value.status, caught.value.failover) == (
        "unavailable", None, True)
    assert "error in stream" in str(caught.value)


async def test_invalid_request_is_terminal(server: MockAnthropic) -> None:
    server.plan(Fail(400, "invalid_request_error", "prompt is too long: 210000 tokens"))
    async with provider(server.url) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
    assert (caught.value.kind, caught.value.failover) == ("context_length", False)
    assert len(server.requests) == 1


async def test_wrong_key_is_auth_and_a_missing_key_sends_nothing() -> None:
    with MockAnthropic(api_keys=["right"]) as srv:
        async with provider(srv.url, keys=("wrong",)) as p:
            with pytest.raises(ProviderError) as caught:
                await collect(p)
        assert (caught.value.kind, caught.value.status) == ("auth", 401)
        p = AnthropicProvider(base_url=srv.url, profiles=[Credential("none", None, "env:X")])
        with pytest.raises(ProviderError, match="no API key for profile 'none'"):
            await collect(p)
        await p.aclose()
        assert len(srv.requests) == 1


async def test_a_429_on_one_key_rotates_to_the_next(server: MockAnthropic) -> None:
    clock = Clock()
    server.rate_limit("k-a", retry_after=45)
    async with provider(server.url, keys=("k-a", "k-b"), clock=clock) as p:
        events = await collect(p, request(session_key="agent:main:main"))
        assert text_of(events) == "hi"
        assert [server.key_of(i) for i in range(2)] == ["k-a", "k-b"]
        status = {s["id"]: s for s in p.auth_status()}
        assert status["key0"]["state"] == "cooldown" and status["key0"]["errorCount"] == 1
        assert status["key0"]["cooldownRemainingMs"] == 45_000  # retry-after beats 30 s
        assert "k-a" not in repr(status) and "k-b" not in repr(status)
        # The session now sticks to the working key; the cooled one is not tried.
        await collect(p, request(session_key="agent:main:main"))
        assert server.key_of(2) == "k-b"
        # Once the cooldown has expired (and the limit is lifted) the key is used again.
        server.rate_limit("k-a", None)
        clock.now += 45
        await collect(p, request(session_key="agent:other:main"))
        assert server.key_of(3) == "k-a"
        assert p.reset_auth() == ["key0", "key1"]


async def test_every_key_limited_fails_over_fast(server: MockAnthropic) -> None:
    server.rate_limit("k-a")
    server.rate_limit("k-b")
    async with provider(server.url, keys=("k-a", "k-b")) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
        assert caught.value.kind == "rate_limit" and caught.value.failover
        assert len(server.requests) == 2
        with pytest.raises(ProviderError, match="cooling down"):
            await collect(p)  # no request at all while both cool down
    assert len(server.requests) == 2


async def test_no_retry_after_text_was_streamed(server: MockAnthropic) -> None:
    server.plan(Reply((Text("abcdefgh", chunks=4),), drop_after=2), text("never"))
    received: list[ModelEvent] = []
    async with provider(server.url) as p:
        with pytest.raises(ProviderError) as caught:
            async for event in p.stream(request()):
                received.append(event)
    assert text_of(received) == "abcd" and "mid-answer" in str(caught.value)
    assert len(server.requests) == 1 and server.pending == 1


async def test_closing_the_stream_early_closes_the_response(server: MockAnthropic) -> None:
    server.plan(Reply((Text("x" * 200, chunks=100),), interval=0.05))
    async with provider(server.url) as p:
        async with contextlib.aclosing(p.stream(request())) as events:
            async for event in events:
                assert isinstance(event, TextDelta)
                break
        await server.until(lambda: server.disconnects == 1)


async def test_usage_of_a_plain_answer(server: MockAnthropic) -> None:
    server.plan(Reply((Text("ok"),), output_tokens=7))
    async with provider(server.url, prompt_caching=False) as p:
        events = await collect(p)
    assert isinstance(events[-1], Finish)
    assert events[-1].usage == Usage(input=events[-1].usage.input, output=7)
    assert events[-1].usage.input > 0


async def test_no_connection_before_first_use(server: MockAnthropic) -> None:
    async with provider(server.url):
        pass
    assert server.requests == []
