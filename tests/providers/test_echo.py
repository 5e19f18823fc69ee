"""EchoProvider: the offline, deterministic provider."""

from __future__ import annotations

from typing import Any

import pytest

from clawgate.providers.base import (
    Finish,
    Message,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    Provider,
    TextDelta,
    ToolCall,
    Usage,
)
from tests.support.bundled import module

EchoProvider = module("echo", "provider").EchoProvider

pytestmark = pytest.mark.anyio

LOOKUP = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def user(content: Any) -> Message:
    return {"role": "user", "content": content}


async def run(provider: EchoProvider, *messages: Message, **options: Any) -> list[ModelEvent]:
    req = ModelRequest("echo", tuple(messages), **options)
    return [event async for event in provider.stream(req)]


async def test_replies_with_the_last_user_text_in_one_delta() -> None:
    events = await run(
        EchoProvider(), user("first"), {"role": "assistant", "content": "x"}, user("Hello there")
    )
    assert events[0] == TextDelta("Hello there")
    assert len(events) == 2 and isinstance(events[1], Finish) and events[1].reason == "stop"


async def test_text_parts_are_concatenated() -> None:
    parts = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {}},
        {"type": "text", "text": "b"},
    ]
    events = await run(EchoProvider(), user(parts))
    assert events[0] == TextDelta("ab")


async def test_chunking_and_delay() -> None:
    events = await run(EchoProvider(delay_s=0.001, chunk_chars=4), user("abcdefghij"))
    assert events[:-1] == [TextDelta("abcd"), TextDelta("efgh"), TextDelta("ij")]


async def test_usage_is_a_rough_token_count() -> None:
    events = await run(EchoProvider(), {"role": "system", "content": "s" * 20}, user("u" * 20))
    assert events[-1] == Finish("stop", Usage(input=10, output=5))


async def test_empty_conversation_replies_nothing() -> None:
    assert await run(EchoProvider()) == [Finish("stop", Usage(input=1, output=1))]


async def test_tool_convention_calls_an_offered_tool() -> None:
    events = await run(EchoProvider(), user('/tool lookup {"q": "cats"}'), tools=(LOOKUP,))
    assert events[0] == ToolCall("call_1", "lookup", '{"q": "cats"}')
    assert isinstance(events[1], Finish) and events[1].reason == "tool_calls"


async def test_tool_convention_ignores_tools_not_offered() -> None:
    events = await run(EchoProvider(), user("/tool missing {}"), tools=(LOOKUP,))
    assert events[0] == TextDelta("/tool missing {}")


async def test_tool_result_is_reported_and_ids_count_up() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    history = (
        user("/tool lookup {}"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    )
    events = await run(EchoProvider(), *history, tools=(LOOKUP,))
    assert events[0] == TextDelta("tool lookup said: 42")

    again = await run(EchoProvider(), *history, user("/tool lookup {}"), tools=(LOOKUP,))
    assert again[0] == ToolCall("call_2", "lookup", "{}")


async def test_is_a_provider() -> None:
    provider = EchoProvider("offline")
    assert isinstance(provider, Provider) and provider.id == "offline"
    assert provider.models() == [ModelInfo("echo", "Echo (offline)")]
    await provider.aclose()
