"""The offline echo provider: a deterministic stand-in for a model, for tests and benchmarks.

It replies with exactly the text of the last user message. Two conventions let engine tests
exercise tool calling without a real model:

* a last user message ``/tool <name> <json-args>`` naming a tool offered in ``request.tools``
  yields ``ToolCall(id="call_<n>", name, arguments=<json-args>)`` and ``Finish("tool_calls")``,
  where ``<n>`` is 1 + the number of tool calls already in the conversation;
* a last message with ``role: "tool"`` yields the text ``tool <name> said: <content>``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from clawgate import (
    Finish,
    Message,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    TextDelta,
    ToolCall,
    Usage,
    text_of,
)

_TOOL_PREFIX = "/tool "


class EchoProvider:
    """A provider that needs no network: it echoes the last user message."""

    def __init__(self, id: str = "echo", *, delay_s: float = 0.0, chunk_chars: int = 0) -> None:
        """Create the provider.

        ``delay_s`` is slept before the first event (a simulated provider latency for
        benchmarks); ``chunk_chars > 0`` splits the reply into deltas of that many characters.
        """
        self.id = id
        self._delay_s = delay_s
        self._chunk_chars = chunk_chars

    def models(self) -> list[ModelInfo]:
        """The single model this provider offers."""
        return [ModelInfo("echo", "Echo (offline)")]

    async def aclose(self) -> None:
        """Nothing to release."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream the echo of ``request`` (see the module docstring for the conventions)."""
        messages = request.messages
        usage_in = max(1, sum(len(text_of(m)) for m in messages) // 4)
        if self._delay_s > 0:
            await asyncio.sleep(self._delay_s)

        call = _tool_call(messages, request.tools)
        if call is not None:
            yield call
            output = max(1, (len(call.name) + len(call.arguments)) // 4)
            yield Finish("tool_calls", Usage(input=usage_in, output=output))
            return

        reply = _reply(messages)
        size = self._chunk_chars if self._chunk_chars > 0 else max(1, len(reply))
        for start in range(0, len(reply), size):
            yield TextDelta(reply[start : start + size])
        yield Finish("stop", Usage(input=usage_in, output=max(1, len(reply) // 4)))



def _reply(messages: tuple[Message, ...]) -> str:
    if not messages:
        return ""
    last = messages[-1]
    if last.get("role") == "tool":
        return f"tool {_tool_name(messages, last)} said: {text_of(last)}"
    for message in reversed(messages):
        if message.get("role") == "user":
            return text_of(message)
    return ""


def _tool_name(messages: tuple[Message, ...], result: Message) -> str:
    # Tool results usually carry only tool_call_id; the name lives on the assistant's call.
    name = result.get("name")
    if isinstance(name, str) and name:
        return name
    wanted = result.get("tool_call_id")
    for message in reversed(messages):
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict) and call.get("id") == wanted:
                return str((call.get("function") or {}).get("name", "?"))
    return "?"


def _tool_call(messages: tuple[Message, ...], tools: tuple[dict[str, Any], ...]) -> ToolCall | None:
    if not messages or messages[-1].get("role") != "user":
        return None
    text = text_of(messages[-1])
    if not text.startswith(_TOOL_PREFIX):
        return None
    name, _, arguments = text[len(_TOOL_PREFIX) :].strip().partition(" ")
    offered = {str((tool.get("function") or {}).get("name")) for tool in tools}
    if name not in offered:
        return None
    previous = sum(len(m.get("tool_calls") or ()) for m in messages)
    return ToolCall(id=f"call_{previous + 1}", name=name, arguments=arguments.strip() or "{}")
