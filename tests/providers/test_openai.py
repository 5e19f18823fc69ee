"""OpenAIProvider against a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import anyio
import pytest

from clawgate.errors import ProviderError
from clawgate.providers.base import (
    Finish,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    Provider,
    TextDelta,
    ToolCall,
    Usage,
)
from tests.support.bundled import module
from tests.support.mock_openai import (
    CallTools,
    Fail,
    MockOpenAI,
    MockUsage,
    Reply,
    call_tool,
    stall,
)

_openai = module("openai", "provider")
OpenAIProvider = _openai.OpenAIProvider
classify = _openai.classify

pytestmark = pytest.mark.anyio

WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object"}},
}


@pytest.fixture
def server() -> Iterator[MockOpenAI]:
    with MockOpenAI() as srv:
        yield srv


@contextlib.asynccontextmanager
async def provider(url: str, **options: Any) -> AsyncIterator[OpenAIProvider]:
    options = {"api_key": "sk-test", "backoff_base": 0.01, **options}
    p = OpenAIProvider(base_url=url, **options)
    try:
        yield p
    finally:
        await p.aclose()


def request(text: str = "hi", **options: Any) -> ModelRequest:
    return ModelRequest("mock-model", ({"role": "user", "content": text},), **options)


async def collect(p: OpenAIProvider, req: ModelRequest | None = None) -> list[ModelEvent]:
    return [event async for event in p.stream(req or request())]


def text_of(events: list[ModelEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_streams_text_deltas_and_sends_the_openai_body(server: MockOpenAI) -> None:
    server.plan(Reply("Hello, streaming world!", chunks=4))
    req = request(temperature=0.2, max_tokens=50, extra={"user": "u1"})
    async with provider(server.url) as p:
        events = await collect(p, req)

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 4
    assert text_of(events) == "Hello, streaming world!"
    assert isinstance(events[-1], Finish) and events[-1].reason == "stop"
    assert server.disconnects == 0  # a complete answer is not counted as abandoned
    (seen,) = server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.body == {
        "model": "mock-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "max_tokens": 50,
        "user": "u1",
    }


async def test_no_api_key_sends_no_authorization(server: MockOpenAI) -> None:
    async with provider(server.url, api_key=None) as p:
        events = await collect(p, request("echo me"))
    assert text_of(events) == "echo me"
    assert "authorization" not in server.requests[0].headers


async def test_tool_calls_are_assembled_from_fragments(server: MockOpenAI) -> None:
    server.plan(
        CallTools(
            (("get_weather", '{"city": "Paris", "unit": "C"}'), ("get_time", '{"tz": "UTC"}')),
            text="Let me check.",
            fragments=5,
        )
    )
    async with provider(server.url) as p:
        events = await collect(p, request(tools=(WEATHER_TOOL,)))

    assert text_of(events) == "Let me check."
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert calls == [
        ToolCall("call_mock_0", "get_weather", '{"city": "Paris", "unit": "C"}'),
        ToolCall("call_mock_1", "get_time", '{"tz": "UTC"}'),
    ]
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"
    assert server.requests[0].body["tools"] == [WEATHER_TOOL]


async def test_usage_is_parsed_including_cached_tokens(server: MockOpenAI) -> None:
    server.plan(Reply("ok", usage=MockUsage(120, 7, cached_tokens=100)))
    async with provider(server.url) as p:
        events = await collect(p)
    assert events[-1] == Finish("stop", Usage(input=120, output=7, cache_read=100))


async def test_non_streamed_json_answer_is_accepted(server: MockOpenAI) -> None:
    # Some compatible servers ignore "stream": simulate one by asking the mock for JSON.
    server.plan(call_tool("get_weather", '{"city": "Oslo"}'))
    async with provider(server.url) as p:
        events = await collect(p, request(tools=(WEATHER_TOOL,), extra={"stream": False}))
    assert events[0] == ToolCall("call_mock_0", "get_weather", '{"city": "Oslo"}')
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"


async def test_429_is_retried_once_then_succeeds(server: MockOpenAI) -> None:
    server.plan(Fail(429, "Rate limit reached"), Reply("after retry"))
    async with provider(server.url) as p:
        events = await collect(p)
    assert text_of(events) == "after retry"
    assert len(server.requests) == 2


async def test_retry_after_is_honoured(server: MockOpenAI) -> None:
    server.plan(Fail(503, "overloaded", retry_after=0.05), Reply("ok"))
    # With a 60 s exponential backoff the call only finishes in time if Retry-After wins.
    async with provider(server.url, backoff_base=60) as p:
        with anyio.fail_after(10):
            events = await collect(p)
    assert text_of(events) == "ok"
    assert len(server.requests) == 2


async def test_5xx_exhausts_retries_then_fails_over(server: MockOpenAI) -> None:
    server.plan(*[Fail(500, "upstream exploded")] * 3)
    async with provider(server.url, id="acme", max_retries=2) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
    error = caught.value
    assert (error.kind, error.status, error.failover, error.provider) == (
        "other",
        500,
        True,
        "acme",
    )
    assert "acme" in str(error) and "HTTP 500" in str(error) and "upstream exploded" in str(error)
    assert len(server.requests) == 3


async def test_context_length_is_terminal_and_not_retried(server: MockOpenAI) -> None:
    server.plan(
        Fail(
            400,
            "This model's maximum context length is 8192 tokens",
            code="context_length_exceeded",
        ),
        Reply("never sent"),
    )
    async with provider(server.url) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
    assert (caught.value.kind, caught.value.status, caught.value.failover) == (
        "context_length",
        400,
        False,
    )
    assert len(server.requests) == 1


async def test_wrong_api_key_is_auth() -> None:
    with MockOpenAI(api_key="sk-right") as srv:
        async with provider(srv.url, api_key="sk-wrong") as p:
            with pytest.raises(ProviderError) as caught:
                await collect(p)
        assert (caught.value.kind, caught.value.status) == ("auth", 401)
        assert "Incorrect API key" in str(caught.value)
        assert len(srv.requests) == 1


async def test_content_filter_is_refusal(server: MockOpenAI) -> None:
    server.plan(Reply("", finish_reason="content_filter"))
    async with provider(server.url) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
    assert caught.value.kind == "refusal" and not caught.value.failover


async def test_read_timeout_is_timeout(server: MockOpenAI) -> None:
    server.plan(stall(5))
    async with provider(server.url, read_timeout=0.2) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
    assert caught.value.kind == "timeout" and caught.value.failover
    assert len(server.requests) == 1


async def test_connection_refused_fails_after_retries() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with provider(f"http://127.0.0.1:{port}/v1", max_retries=2) as p:
        with pytest.raises(ProviderError) as caught:
            await collect(p)
    assert "cannot connect" in str(caught.value)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert caught.value.kind == "unavailable" and caught.value.failover


async def test_no_retry_after_a_partial_stream(server: MockOpenAI) -> None:
    server.plan(Reply("abcdefgh", chunks=4, drop_after=2), Reply("must not be replayed"))
    received: list[ModelEvent] = []
    async with provider(server.url) as p:
        with pytest.raises(ProviderError) as caught:
            async for event in p.stream(request()):
                received.append(event)
    assert text_of(received) == "abcd"
    assert "mid-answer" in str(caught.value)
    assert len(server.requests) == 1 and server.pending == 1


async def test_closing_the_stream_early_closes_the_response(server: MockOpenAI) -> None:
    server.plan(Reply("x" * 200, chunks=100, interval=0.05))
    async with provider(server.url) as p:
        async with contextlib.aclosing(p.stream(request())) as events:
            async for event in events:
                assert isinstance(event, TextDelta)
                break
        await server.until(lambda: server.disconnects == 1)


async def test_cancelling_the_task_closes_the_response(server: MockOpenAI) -> None:
    server.plan(Reply("x" * 200, chunks=100, interval=0.05))
    first = asyncio.Event()

    async def consume(p: OpenAIProvider) -> None:
        async for _ in p.stream(request()):
            first.set()

    async with provider(server.url) as p:
        task = asyncio.create_task(consume(p))
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await server.until(lambda: server.disconnects == 1)


async def test_models_and_list_models(server: MockOpenAI) -> None:
    configured = [ModelInfo("gpt-x", "GPT X", 128_000)]
    async with provider(server.url, models=configured) as p:
        assert isinstance(p, Provider)
        assert p.models() == configured
        assert await p.list_models() == [ModelInfo("mock-model")]


async def test_no_connection_before_first_use(server: MockOpenAI) -> None:
    async with provider(server.url):
        pass
    assert server.requests == []


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        (429, "slow down", "rate_limit"),
        (400, "You exceeded your current quota", "rate_limit"),
        (400, "context_length_exceeded", "context_length"),
        (400, "Request has too many tokens", "context_length"),
        (400, "content_filter", "refusal"),
        (401, "bad key", "auth"),
        (403, "forbidden", "auth"),
        (500, "maximum context length", "other"),
        (400, "invalid messages", "other"),
    ],
)
def test_classify(status: int, text: str, kind: str) -> None:
    assert classify(status, text) == kind
