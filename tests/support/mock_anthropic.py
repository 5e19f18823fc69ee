"""A loopback fake of Anthropic's Messages API (``POST /v1/messages``), from its documentation.

What it does as the API documents:

- authentication with ``x-api-key`` (or ``Authorization: Bearer``), the ``anthropic-version``
  header required; errors are ``{"type": "error", "error": {"type", "message"}, "request_id"}``
  with the documented statuses (400 ``invalid_request_error``, 401 ``authentication_error``,
  429 ``rate_limit_error`` with ``retry-after``, 500 ``api_error``, 529 ``overloaded_error``);
- the stream: ``message_start``, a ``ping``, per content block ``content_block_start`` /
  ``content_block_delta`` (``text_delta``, ``input_json_delta``, ``thinking_delta``,
  ``signature_delta``) / ``content_block_stop``, then ``message_delta`` (stop reason, output
  tokens) and ``message_stop``; an ``error`` event may interrupt it;
- extended thinking: ``budget_tokens`` must be >= 1024 and below ``max_tokens``, temperature is
  refused with thinking on, thinking blocks carry a signature that is checked when they come
  back, and during a tool-use cycle the last assistant message must start with its thinking;
- prompt caching: each ``cache_control`` breakpoint's prefix (tools, then system, then
  messages) is remembered; a later request with the same prefix reports it as
  ``cache_read_input_tokens``, a new one as ``cache_creation_input_tokens``.

Steps (``server.plan(...)``, one per request): :class:`Reply` (blocks :class:`Text`,
:class:`Thinking`, :class:`ToolUse`), :class:`Fail` (an HTTP error) and :class:`StreamError`
(an ``error`` event after ``message_start``). With nothing planned it echoes the last user text.
``server.rate_limit(key, retry_after)`` makes every request with that key get a 429.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.loopback import LoopbackServer, Streamed, factory_fixture, split, sse, tokens

__all__ = ["Fail", "MockAnthropic", "Reply", "StreamError", "Text", "Thinking", "ToolUse",
           "mock_anthropic_factory"]

_SIGNING_KEY = b"mock-anthropic-signing-key"


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    chunks: int = 1


@dataclass(frozen=True, slots=True)
class Thinking:
    thinking: str
    chunks: int = 2
    redacted: bool = False


@dataclass(frozen=True, slots=True)
class ToolUse:
    name: str
    arguments: str = "{}"
    fragments: int = 2
    id: str | None = None


Block = Text | Thinking | ToolUse


@dataclass(frozen=True, slots=True)
class Reply:
    """A streamed message of ``blocks``; the stop reason follows them unless given.
    ``drop_after=k`` drops the connection after k text deltas; ``output_tokens`` overrides the
    reported count."""

    blocks: tuple[Block, ...] = ()
    stop_reason: str | None = None
    delay: float = 0.0
    interval: float = 0.0
    drop_after: int | None = None
    output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """An HTTP error with Anthropic's error body (``retry_after`` sets the header)."""

    status: int
    error_type: str = "api_error"
    message: str = "mock failure"
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class StreamError:
    """A 200 stream that sends ``message_start`` and then an ``error`` event."""

    error_type: str = "overloaded_error"
    message: str = "Overloaded"


Step = Reply | Fail | StreamError


def text(value: str, chunks: int = 1, **options: Any) -> Reply:
    """A reply of one text block."""
    return Reply((Text(value, chunks),), **options)


def signature(thinking: str) -> str:
    """The signature the fake gives (and expects back on) a thinking block."""
    mac = hmac.new(_SIGNING_KEY, thinking.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


@dataclass
class _Cache:
    prefixes: dict[str, int] = field(default_factory=dict)


class MockAnthropic(LoopbackServer[Step]):
    """The fake. ``api_keys``: accepted keys (None: any non-empty key); ``min_cacheable``:
    prefixes shorter than this many (stand-in) tokens are not cached, as the API does."""

    name = "anthropic"

    def __init__(self, *, api_keys: Sequence[str] | None = None, min_cacheable: int = 0,
                 latency: float = 0.0) -> None:
        super().__init__()
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.min_cacheable = min_cacheable
        self.latency = latency
        self._limited: dict[str, float] = {}
        self._cache = _Cache()
        self._ids = 0

    @property
    def url(self) -> str:
        """The base URL for the SDK (it adds ``/v1/messages``)."""
        return self.origin

    def rate_limit(self, key: str, retry_after: float | None = 30.0) -> None:
        """Answer every request made with ``key`` with a 429 (None lifts the limit)."""
        with self._lock:
            if retry_after is None:
                self._limited.pop(key, None)
            else:
                self._limited[key] = retry_after

    def key_of(self, index: int) -> str:
        """The API key request ``index`` was made with."""
        return _key(self.requests[index].headers)

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self._messages, methods=["POST"])]

    # -- the endpoint -----------------------------------------------------------------------

    async def _messages(self, request: Request) -> Response | Streamed:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.record(request, raw.decode("utf-8", "replace"))
            return _error(400, "invalid_request_error", "The request body is not valid JSON")
        self.record(request, body)
        key = _key({k.lower(): v for k, v in request.headers.items()})
        if not key or (self.api_keys is not None and key not in self.api_keys):
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error",
                          "anthropic-version: header is required")
        with self._lock:
            limited = self._limited.get(key)
        if limited is not None:
            return _error(429, "rate_limit_error",
                          "This request would exceed your organization's rate limit.",
                          retry_after=limited)
        invalid = _validate(body)
        if invalid is not None:
            return _error(400, "invalid_request_error", invalid)
        step = self.next_step() or text(_last_user_text(body))
        await self.pause(self.latency + (step.delay if isinstance(step, Reply) else 0))
        if isinstance(step, Fail):
            return _error(step.status, step.error_type, step.message,
                          retry_after=step.retry_after)
        usage = self._usage(body)
        if not body.get("stream"):
            return JSONResponse({"error": "the fake serves stream=true only"}, 400)
        with self._lock:
            self._ids += 1
            message_id = f"msg_mock_{self._ids:04d}"
        return Streamed(self, lambda: self._events(step, body, usage, message_id),
                        {"request-id": f"req_{message_id}"})

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        """Input usage with the cache simulated over the request's breakpoints."""
        prefix: list[Any] = []
        marks: list[tuple[str, int]] = []
        for tool in body.get("tools") or ():
            prefix.append(tool)
            if tool.get("cache_control"):
                marks.append(_mark(prefix))
        system = body.get("system")
        for block in [system] if isinstance(system, str) else (system or ()):
            prefix.append(block)
            if isinstance(block, dict) and block.get("cache_control"):
                marks.append(_mark(prefix))
        for message in body.get("messages") or ():
            content = message.get("content")
            for block in [content] if isinstance(content, str) else content:
                prefix.append([message.get("role"), block])
                if isinstance(block, dict) and block.get("cache_control"):
                    marks.append(_mark(prefix))
        total = tokens(prefix)
        read = written = 0
        with self._lock:
            cached = self._cache.prefixes
            hits = [size for digest, size in marks if digest in cached]
            read = max(hits, default=0)
            longest = max((size for _, size in marks), default=0)
            if longest > read and longest >= self.min_cacheable:
                written = longest - read
            for digest, size in marks:
                if size >= self.min_cacheable:
                    cached[digest] = size
        return {"input_tokens": max(0, total - read - written),
                "cache_read_input_tokens": read, "cache_creation_input_tokens": written}

    async def _events(self, step: Reply | StreamError, body: dict[str, Any],
                      usage: dict[str, int], message_id: str) -> AsyncIterator[bytes | None]:
        model = str(body.get("model"))
        start = {"id": message_id, "type": "message", "role": "assistant", "model": model,
                 "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {**usage, "output_tokens": 1}}
        yield sse("message_start", {"type": "message_start", "message": start})
        yield sse("ping", {"type": "ping"})
        if isinstance(step, StreamError):
            yield sse("error", {"type": "error",
                                "error": {"type": step.error_type, "message": step.message}})
            return
        deltas = 0
        for index, block in enumerate(step.blocks):
            for chunk in self._block(index, block):
                if chunk == b"delta":  # the marker before a counted delta; never sent
                    deltas += 1
                    if step.drop_after is not None and deltas > step.drop_after:
                        yield None
                        return
                    continue
                if chunk.startswith(b"event: content_block_delta") and step.interval:
                    await self.pause(step.interval)
                yield chunk
        reason = step.stop_reason or (
            "tool_use" if any(isinstance(b, ToolUse) for b in step.blocks) else "end_turn")
        output = step.output_tokens if step.output_tokens is not None else max(
            1, sum(len(getattr(b, "text", "") or getattr(b, "arguments", "")) for b in
                   step.blocks) // 4)
        yield sse("message_delta", {"type": "message_delta",
                                    "delta": {"stop_reason": reason, "stop_sequence": None},
                                    "usage": {"output_tokens": output}})
        yield sse("message_stop", {"type": "message_stop"})

    def _block(self, index: int, block: Block) -> list[bytes]:
        out: list[bytes] = []

        def delta(payload: dict[str, Any], counted: bool = False) -> None:
            if counted:
                out.append(b"delta")  # a marker the caller uses for drop_after
            out.append(sse("content_block_delta", {"type": "content_block_delta",
                                                   "index": index, "delta": payload}))

        if isinstance(block, Text):
            out.append(sse("content_block_start", {"type": "content_block_start",
                                                   "index": index,
                                                   "content_block": {"type": "text",
                                                                     "text": ""}}))
            for piece in split(block.text, block.chunks):
                delta({"type": "text_delta", "text": piece}, counted=True)
        elif isinstance(block, Thinking) and block.redacted:
            out.append(sse("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "redacted_thinking",
                                  "data": "redacted:" + signature(block.thinking)}}))
        elif isinstance(block, Thinking):
            out.append(sse("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
            for piece in split(block.thinking, block.chunks):
                delta({"type": "thinking_delta", "thinking": piece})
            delta({"type": "signature_delta", "signature": signature(block.thinking)})
        else:
            with self._lock:
                self._ids += 1
                tool_id = block.id or f"toolu_mock_{self._ids:04d}"
            out.append(sse("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": tool_id, "name": block.name,
                                  "input": {}}}))
            for piece in split(block.arguments, block.fragments):
                delta({"type": "input_json_delta", "partial_json": piece})
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        return out


def _mark(prefix: list[Any]) -> tuple[str, int]:
    # The digest ignores the cache_control markers themselves: a prefix is the same content
    # whether or not a breakpoint sits on its last block.
    clean = orjson.dumps(_strip(prefix), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(clean).hexdigest(), tokens(prefix)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _key(headers: dict[str, str]) -> str:
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else ""


def _error(status: int, error_type: str, message: str,
           retry_after: float | None = None) -> Response:
    headers = {"request-id": "req_mock_error"}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    body = {"type": "error", "error": {"type": error_type, "message": message},
            "request_id": "req_mock_error"}
    return JSONResponse(body, status_code=status, headers=headers)


def _validate(body: Any) -> str | None:
    """The API's invalid_request_error message for ``body``, or None when it is valid."""
    if not isinstance(body, dict):
        return "body: must be an object"
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return f"{name}: Field required"
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: must be a positive integer"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if m.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = m.get("content")
        if isinstance(content, list):
            if not content:
                return f"messages.{i}: all messages must have non-empty content"
            for j, block in enumerate(content):
                problem = _check_block(block)
                if problem:
                    return f"messages.{i}.content.{j}: {problem}"
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if budget >= max_tokens:
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
        if body.get("temperature") not in (None, 1):
            return "`temperature` may only be set to 1 when thinking is enabled"
        open_cycle = _open_tool_cycle(messages)
        if open_cycle is not None:
            first = open_cycle["content"][0]
            if first.get("type") not in ("thinking", "redacted_thinking"):
                return ("messages: Expected `thinking` or `redacted_thinking`, but found "
                        f"`{first.get('type')}`. When `thinking` is enabled, a final "
                        "`assistant` message must start with a thinking block")
    return None


def _check_block(block: Any) -> str | None:
    if not isinstance(block, dict):
        return "must be an object"
    kind = block.get("type")
    if kind == "thinking":
        if block.get("signature") != signature(str(block.get("thinking", ""))):
            return "Invalid `signature` in `thinking` block"
    elif kind == "redacted_thinking":
        if not str(block.get("data", "")).startswith("redacted:"):
            return "Invalid `data` in `redacted_thinking` block"
    elif kind == "tool_use":
        if not isinstance(block.get("input"), dict):
            return "tool_use.input: Input should be an object"
    elif kind == "image":
        source = block.get("source") or {}
        if source.get("type") not in ("base64", "url"):
            return "image.source: must be base64 or url"
    elif kind == "text" and not block.get("text"):
        return "text content blocks must be non-empty"
    return None


def _open_tool_cycle(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The assistant message whose tool results the conversation ends with, if any."""
    last = messages[-1]
    content = last.get("content")
    if last.get("role") != "user" or not isinstance(content, list):
        return None
    if not any(b.get("type") == "tool_result" for b in content):
        return None
    for message in reversed(messages[:-1]):
        if message.get("role") == "assistant":
            blocks = message.get("content")
            if isinstance(blocks, list) and any(b.get("type") == "tool_use" for b in blocks):
                return message
            return None
    return None


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return "".join(b.get("text", "") for b in content if b.get("type") == "text")
    return ""


mock_anthropic_factory = factory_fixture(MockAnthropic)
