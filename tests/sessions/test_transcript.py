"""export_jsonl: OpenClaw's pi transcript format (reference §4.4)."""

from __future__ import annotations

import orjson
import pytest

from clawgate.errors import SessionNotFound
from clawgate.sessions.store import SessionStore
from clawgate.sessions.transcript import iso

from .conftest import START_MS, Clock

pytestmark = pytest.mark.anyio
KEY = "agent:main:main"


async def test_export_shape(store: SessionStore, clock: Clock) -> None:
    entry = await store.ensure(KEY)
    call = {"id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    await store.append(KEY, [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ]},
    ])
    clock.advance(1500)
    await store.append(KEY, [
        {"role": "assistant", "content": "checking", "tool_calls": [call],
         "stop_reason": "tool_calls", "usage": {"input": 10, "output": 3, "cache_read": 2},
         "reasoning_content": "need weather"},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        {"role": "assistant", "content": "It rains.", "stop_reason": "stop"},
    ])
    lines = [orjson.loads(line) for line in (await store.export_jsonl(KEY, cwd="/w")).splitlines()]
    header, *messages = lines
    assert header == {"type": "session", "version": 3, "id": entry.session_id,
                      "timestamp": iso(START_MS), "cwd": "/w"}
    assert iso(START_MS) == "2023-11-14T22:13:20.000Z"
    assert [m["type"] for m in messages] == ["message"] * 4  # the system message is left out
    assert messages[0]["parentId"] is None
    for prev, cur in zip(messages, messages[1:], strict=False):
        assert cur["parentId"] == prev["id"]
    assert len({m["id"] for m in messages}) == 4
    user, assistant, tool, final = (m["message"] for m in messages)
    assert user == {"role": "user", "timestamp": START_MS, "content": [
        {"type": "text", "text": "look"},
        {"type": "image", "data": "AAAA", "mimeType": "image/png"},
    ]}
    assert assistant["role"] == "assistant" and assistant["stopReason"] == "toolUse"
    assert assistant["content"] == [
        {"type": "thinking", "thinking": "need weather"},
        {"type": "text", "text": "checking"},
        {"type": "toolCall", "id": "call_1", "name": "weather", "arguments": {"city": "Oslo"}},
    ]
    assert assistant["usage"]["input"] == 10 and assistant["usage"]["totalTokens"] == 13
    assert assistant["usage"]["cacheRead"] == 2
    assert messages[1]["timestamp"] == iso(START_MS + 1500)
    assert tool == {"role": "toolResult", "toolCallId": "call_1", "toolName": "weather",
                    "content": [{"type": "text", "text": "rain"}], "isError": False,
                    "timestamp": START_MS + 1500}
    assert final["content"] == [{"type": "text", "text": "It rains."}]
    assert final["stopReason"] == "stop"


async def test_export_is_the_current_transcript(store: SessionStore) -> None:
    await store.ensure(KEY)
    await store.append(KEY, [{"role": "user", "content": "before reset"}])
    entry = await store.reset(KEY)
    text = await store.export_jsonl(KEY)
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert len(lines) == 1 and lines[0]["id"] == entry.session_id
    assert text.endswith("\n")
    with pytest.raises(SessionNotFound):
        await store.export_jsonl("agent:main:nobody")
