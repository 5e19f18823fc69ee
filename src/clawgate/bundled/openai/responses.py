"""The Responses API (``POST /responses``): the request built from chat-shaped messages, and
the parser of its semantic SSE events.

Calls are stateless (``store: false``): the whole conversation goes in ``input`` every time, as
with chat completions. Reasoning models return encrypted reasoning items; they are kept on the
assistant message (``reasoning_items``) and sent back with the history, so a tool-call loop keeps
the model's reasoning. Event order (OpenAI's streaming reference): ``response.created``,
``response.in_progress``, then per output item ``response.output_item.added``, its deltas
(``response.output_text.delta``, ``response.function_call_arguments.delta``, ...) and
``response.output_item.done``, and last ``response.completed`` (or ``response.incomplete`` /
``response.failed``); an ``error`` event may arrive instead. There is no ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from clawgate import (
    Finish,
    Message,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    ProviderError,
    ProviderErrorKind,
    TextDelta,
    ToolCall,
    Usage,
    text_of,
)

from .chat import EFFORT
from .http import Response, classify, truncate

PATH = "/responses"
# Client sampling options the Responses API accepts; the others (stop, seed, penalties) have no
# equivalent there and are left out.
PASSED_EXTRAS = ("top_p", "user", "metadata", "service_tier", "parallel_tool_calls")
_UNAVAILABLE_CODES = ("server_error", "overloaded", "service_unavailable", "internal_error")


def payload(request: ModelRequest, info: ModelInfo | None = None) -> dict[str, Any]:
    """The JSON body of a streaming, stateless Responses call for ``request``."""
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for message in request.messages:
        role = message.get("role")
        if role == "system" and not items:
            instructions.append(text_of(message))
        elif role in ("system", "developer"):
            items.append({"role": "developer", "content": text_of(message)})
        elif role == "user":
            items.append({"role": "user", "content": _parts(message.get("content"))})
        elif role == "assistant":
            items.extend(_assistant(message))
        elif role == "tool":
            items.append({"type": "function_call_output",
                          "call_id": str(message.get("tool_call_id") or ""),
                          "output": text_of(message)})
    body: dict[str, Any] = {"model": request.model, "input": items, "stream": True,
                            "store": False}
    if instructions:
        body["instructions"] = "\n\n".join(instructions)
    if request.tools:
        body["tools"] = [_tool(spec) for spec in request.tools]
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_output_tokens"] = request.max_tokens
    if info is not None and info.reasoning:
        # Stateless calls get the reasoning back encrypted, to send with the next call.
        body["include"] = ["reasoning.encrypted_content"]
        if request.thinking and request.thinking in EFFORT:
            body["reasoning"] = {"effort": EFFORT[request.thinking], "summary": "auto"}
    body.update({k: v for k, v in request.extra.items() if k in PASSED_EXTRAS})
    return body


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return [{"type": "input_text", "text": content or ""}]
    parts: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            parts.append({"type": "input_text", "text": str(part.get("text", ""))})
        elif kind == "image_url":
            url = part.get("image_url")
            detail = url.get("detail") if isinstance(url, dict) else None
            image: dict[str, Any] = {"type": "input_image",
                                     "image_url": url.get("url") if isinstance(url, dict)
                                     else str(url)}
            if detail:
                image["detail"] = detail
            parts.append(image)
        elif kind in ("input_image", "input_file"):
            parts.append(dict(part))
    return parts


def _assistant(message: Message) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        dict(item) for item in message.get("reasoning_items") or () if isinstance(item, dict)
    ]
    text = text_of(message)
    if text:
        items.append({"type": "message", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": text, "annotations": []}]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        items.append({"type": "function_call", "call_id": str(call.get("id", "")),
                      "name": str(function.get("name", "")),
                      "arguments": str(function.get("arguments") or "{}")})
    return items


def _tool(spec: dict[str, Any]) -> dict[str, Any]:
    function = spec.get("function") or {}
    tool: dict[str, Any] = {"type": "function", "name": function.get("name"),
                            "parameters": function.get("parameters") or {"type": "object"},
                            "strict": False}
    if function.get("description"):
        tool["description"] = function["description"]
    return tool


def parse_usage(usage: dict[str, Any]) -> Usage:
    """Map a Responses ``usage`` object onto :class:`Usage`."""
    details = usage.get("input_tokens_details") or {}
    return Usage(input=int(usage.get("input_tokens") or 0),
                 output=int(usage.get("output_tokens") or 0),
                 cache_read=int(details.get("cached_tokens") or 0),
                 cache_write=int(details.get("cache_write_tokens") or 0))


async def events(provider: str, response: Response) -> AsyncIterator[ModelEvent]:
    """The events of one streamed Responses call."""
    state = _State(provider)
    async for line in response.aiter_lines():
        # Each event is an ``event:`` line and a ``data:`` line; the data repeats the type.
        # After the terminal event the rest is still read, so the connection is reused.
        if state.finished is not None or not line.startswith("data:"):
            continue
        raw = line[5:].strip()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _error(provider, f"malformed stream event: {truncate(raw)}") from exc
        if not isinstance(data, dict):
            continue
        for event in state.on(data):
            yield event
    if state.finished is None:
        raise _error(provider, "stream ended before the response was complete")
    yield state.finished


def _error(provider: str, message: str, kind: ProviderErrorKind = "other",
           status: int | None = None) -> ProviderError:
    return ProviderError(f"{provider}: {message}", provider=provider, kind=kind, status=status)


class _State:
    """What has been seen of one response: function calls by output index, reasoning items."""

    __slots__ = ("calls", "finished", "provider", "reasoning", "refusal")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.calls: dict[int, dict[str, str]] = {}
        self.reasoning: list[dict[str, Any]] = []
        self.refusal = ""
        self.finished: Finish | None = None

    def on(self, data: dict[str, Any]) -> list[ModelEvent]:
        kind = data.get("type")
        if kind == "response.output_text.delta":
            delta = data.get("delta")
            return [TextDelta(str(delta))] if delta else []
        if kind == "response.output_item.added":
            self._item(data, final=False)
        elif kind == "response.function_call_arguments.delta":
            call = self.calls.get(int(data.get("output_index", -1)))
            if call is not None:
                call["arguments"] += str(data.get("delta") or "")
        elif kind == "response.function_call_arguments.done":
            call = self.calls.get(int(data.get("output_index", -1)))
            if call is not None and isinstance(data.get("arguments"), str):
                call["arguments"] = data["arguments"]
        elif kind == "response.output_item.done":
            self._item(data, final=True)
        elif kind == "response.refusal.delta":
            self.refusal += str(data.get("delta") or "")
        elif kind in ("response.completed", "response.incomplete"):
            return self._end(data.get("response") or {})
        elif kind == "response.failed":
            error = (data.get("response") or {}).get("error") or {}
            raise self._failure(error.get("code"), error.get("message"))
        elif kind == "error":
            raise self._failure(data.get("code"), data.get("message"))
        return []

    def _item(self, data: dict[str, Any], *, final: bool) -> None:
        item = data.get("item") or {}
        index = int(data.get("output_index", len(self.calls)))
        if item.get("type") == "function_call":
            call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            call["id"] = str(item.get("call_id") or call["id"])
            call["name"] = str(item.get("name") or call["name"])
            if final and isinstance(item.get("arguments"), str):
                call["arguments"] = item["arguments"]
        elif item.get("type") == "reasoning" and final:
            self.reasoning.append({k: item[k] for k in ("type", "id", "summary",
                                                         "encrypted_content") if k in item})

    def _end(self, response: dict[str, Any]) -> list[ModelEvent]:
        usage = parse_usage(response.get("usage") or {})
        incomplete = (response.get("incomplete_details") or {}).get("reason")
        if incomplete == "content_filter" or (self.refusal and not self.calls):
            detail = self.refusal or "content_filter"
            raise _error(self.provider, f"the model refused: {truncate(detail)}", "refusal")
        calls: list[ModelEvent] = []
        for index, call in sorted(self.calls.items()):
            if not call["name"]:
                raise _error(self.provider, f"function call {index} has no name")
            calls.append(ToolCall(call["id"] or f"call_{index}", call["name"],
                                  call["arguments"] or "{}"))
        reason = "tool_calls" if calls else "length" if incomplete else "stop"
        extra: dict[str, Any] = {}
        if self.reasoning:
            extra["reasoning_items"] = self.reasoning
            summary = "\n".join(str(part.get("text", "")) for item in self.reasoning
                                for part in item.get("summary") or () if isinstance(part, dict))
            if summary:
                extra["reasoning_content"] = summary
        self.finished = Finish(reason, usage, extra)
        return calls

    def _failure(self, code: Any, message: Any) -> ProviderError:
        text = f"{code or ''} {message or ''}".strip() or "unknown error"
        kind: ProviderErrorKind = (
            "unavailable" if str(code) in _UNAVAILABLE_CODES or "overloaded" in text.lower()
            else classify(None, text)
        )
        return _error(self.provider, f"error in stream: {truncate(text)}", kind)
