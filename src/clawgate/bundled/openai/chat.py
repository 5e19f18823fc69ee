"""The chat-completions API: the request body and the parser of its SSE stream.

Messages are already in the chat shape, so they go out unchanged, except the fields other
providers keep on assistant messages (signed thinking blocks, reasoning items), which a
chat-completions server would refuse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from clawgate import (
    Finish,
    ModelEvent,
    ModelRequest,
    ProviderError,
    TextDelta,
    ToolCall,
    Usage,
)

from .http import Response, read_capped, stream_error, truncate

PATH = "/chat/completions"
# Assistant-message fields that belong to other providers' APIs (see Finish.extra).
FOREIGN_KEYS = ("thinking_blocks", "reasoning_items", "reasoning_content")
_REFUSAL_REASONS = ("content_filter", "refusal")
# OpenAI's reasoning_effort values; "off" sends none, "xhigh" is clamped to "high".
EFFORT = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high",
          "xhigh": "high"}


def payload(request: ModelRequest, *, reasoning: bool = False) -> dict[str, Any]:
    """The JSON body of a streaming chat-completions call for ``request``; a ``reasoning``
    model gets the thinking level as ``reasoning_effort``."""
    messages = [
        {k: v for k, v in m.items() if k not in FOREIGN_KEYS}
        if any(k in m for k in FOREIGN_KEYS) else m
        for m in request.messages
    ]
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = list(request.tools)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if reasoning and request.thinking and request.thinking in EFFORT:
        body["reasoning_effort"] = EFFORT[request.thinking]
    body.update(request.extra)
    return body


def parse_usage(usage: dict[str, Any]) -> Usage:
    """Map an OpenAI ``usage`` object onto :class:`Usage`."""
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        input=int(usage.get("prompt_tokens") or 0),
        output=int(usage.get("completion_tokens") or 0),
        cache_read=int(details.get("cached_tokens") or 0),
    )


async def events(provider: str, response: Response) -> AsyncIterator[ModelEvent]:
    """The events of one chat-completions response (SSE, or one JSON body)."""
    state = _StreamState()
    if "application/json" in response.headers.get("content-type", ""):
        # Some servers ignore ``stream: true`` and answer with one JSON completion.
        try:
            data = orjson.loads(await read_capped(response, limit=None))
        except orjson.JSONDecodeError as exc:
            raise _error(provider, "malformed JSON completion") from exc
        for event in [*state.completion(provider, data), *state.finish(provider)]:
            yield event
        return
    done = False
    async for line in response.aiter_lines():
        # OpenAI-compatible servers put each event on one ``data:`` line; comments
        # (``:``), ``event:`` and blank separator lines carry nothing we need.
        if done or not line.startswith("data:"):
            # After [DONE] the rest of the body is read (not abandoned), so the connection
            # goes back to the pool instead of being closed: no new TCP connect per call.
            continue
        data_text = line[5:].strip()
        if data_text == "[DONE]":
            done = True
            continue
        try:
            data = orjson.loads(data_text)
        except orjson.JSONDecodeError as exc:
            raise _error(provider, f"malformed stream event: {truncate(data_text)}") from exc
        for event in state.chunk(provider, data):
            yield event
    if not done and state.reason is None:
        raise _error(provider, "stream ended before the answer was complete")
    for event in state.finish(provider):
        yield event


def _error(provider: str, message: str) -> ProviderError:
    return ProviderError(f"{provider}: {message}", provider=provider)


class _StreamState:
    """What has been seen of one streamed answer: tool-call fragments, finish reason, usage."""

    __slots__ = ("calls", "flushed", "reason", "refusal", "usage")

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}
        self.flushed = False
        self.reason: str | None = None
        self.refusal = ""
        self.usage = Usage()

    def chunk(self, provider: str, data: Any) -> list[ModelEvent]:
        """Events for one ``chat.completion.chunk``."""
        if not isinstance(data, dict):
            return []
        if data.get("error"):
            raise stream_error(provider, data["error"])
        if isinstance(data.get("usage"), dict):
            self.usage = parse_usage(data["usage"])
        events: list[ModelEvent] = []
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # only the first choice is ever requested
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events.append(TextDelta(str(delta["content"])))
            if delta.get("refusal"):
                self.refusal += str(delta["refusal"])
            for fragment in delta.get("tool_calls") or ():
                self._merge(fragment)
            if choice.get("finish_reason"):
                self.reason = str(choice["finish_reason"])
                events.extend(self._flush(provider))
        return events

    def completion(self, provider: str, data: Any) -> list[ModelEvent]:
        """Events for a non-streamed ``chat.completion`` body."""
        if not isinstance(data, dict):
            raise _error(provider, "unexpected response body")
        if data.get("error"):
            raise stream_error(provider, data["error"])
        events: list[ModelEvent] = []
        choices = data.get("choices") or [{}]
        message = choices[0].get("message") or {}
        if message.get("content"):
            events.append(TextDelta(str(message["content"])))
        self.refusal = str(message.get("refusal") or "")
        for index, call in enumerate(message.get("tool_calls") or ()):
            self._merge({**call, "index": index})
        self.reason = str(choices[0].get("finish_reason") or "stop")
        if isinstance(data.get("usage"), dict):
            self.usage = parse_usage(data["usage"])
        return events + self._flush(provider)

    def finish(self, provider: str) -> list[ModelEvent]:
        """The remaining tool calls and the ``Finish`` event, at the end of the stream."""
        events = self._flush(provider)
        reason = self.reason or "stop"
        # Several compatible servers report "stop" even when the model called tools.
        if self.calls and reason == "stop":
            reason = "tool_calls"
        return [*events, Finish(reason, self.usage)]

    def _merge(self, fragment: Any) -> None:
        # Tool calls stream as fragments keyed by index: the first carries id and name, the
        # following ones pieces of the JSON arguments.
        if not isinstance(fragment, dict):
            return
        index = int(fragment.get("index", 0))
        call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
        if fragment.get("id"):
            call["id"] = str(fragment["id"])
        function = fragment.get("function") or {}
        if function.get("name"):
            call["name"] += str(function["name"])
        if function.get("arguments"):
            call["arguments"] += str(function["arguments"])

    def _flush(self, provider: str) -> list[ModelEvent]:
        if self.reason in _REFUSAL_REASONS or (self.refusal and not self.calls):
            detail = self.refusal or f"finish_reason {self.reason}"
            raise ProviderError(
                f"{provider}: the model refused: {truncate(detail)}",
                provider=provider,
                kind="refusal",
            )
        if self.flushed or (self.reason is None and not self.calls):
            return []
        self.flushed = True
        events: list[ModelEvent] = []
        for index, call in sorted(self.calls.items()):
            if not call["name"]:
                raise _error(provider, f"tool call {index} has no name")
        for index, call in sorted(self.calls.items()):
            call_id = call["id"] or f"call_{index}"
            events.append(ToolCall(call_id, call["name"], call["arguments"] or "{}"))
        return events
