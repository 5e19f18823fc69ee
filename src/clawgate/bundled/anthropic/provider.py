"""The Anthropic provider: the Messages API through the official ``anthropic`` SDK, streamed.

One SDK client per auth profile, sharing one connection pool; the SDK's own retries are off so
that this module decides (as the OpenAI plugin does): retry before the first event reached the
caller, never after; 429 (with ``retry-after``), 5xx, 529 ``overloaded_error`` and connection
failures are transient; with several profiles a rate-limit or auth failure moves the call to
the next profile at once.

The SDK client sends the request (base URL, authentication, API version headers, timeouts,
connection pool) and turns an HTTP error into its ``APIStatusError``; the body is built here
(:mod:`.convert`) and given to the client's ``post`` as JSON bytes, and the SSE body's data
lines are decoded with orjson. Why not ``messages.create``:
it deep-copies and re-encodes the whole conversation on every call and builds a pydantic model
per stream event, which made a turn ~1 ms slower than the OpenAI provider's (bench/providers.py).
The events are folded into clawgate's events:

``message_start`` (input and cache usage) → per block ``content_block_start`` /
``content_block_delta`` (``text_delta``, ``input_json_delta``, ``thinking_delta``,
``signature_delta``) / ``content_block_stop`` → ``message_delta`` (stop reason, output usage)
→ ``message_stop``; ``ping`` is skipped and an ``error`` event raises.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import anthropic
import httpx2  # the SDK's HTTP library (its dependency): mid-stream errors surface as its own
import orjson

from clawgate import (
    AuthProfiles,
    Credential,
    Finish,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    ProfileStatus,
    ProviderError,
    ProviderErrorKind,
    TextDelta,
    ToolCall,
    Usage,
)

from . import convert

RETRY_AFTER_CAP_S = 30.0
ERROR_TEXT_LIMIT = 500
# error.type in Anthropic's error bodies (and stream error events) -> failover kind.
ERROR_KINDS: Mapping[str, ProviderErrorKind] = {
    "rate_limit_error": "rate_limit",
    "overloaded_error": "unavailable",
    "api_error": "unavailable",
    "timeout_error": "timeout",
    "authentication_error": "auth",
    "permission_error": "auth",
    "billing_error": "auth",
    "request_too_large": "context_length",
}
STOP_REASONS: Mapping[str, str] = {"end_turn": "stop", "stop_sequence": "stop",
                                   "max_tokens": "length", "tool_use": "tool_calls",
                                   "pause_turn": "stop", "model_context_window_exceeded": "length"}
_CONTEXT_MARKERS = ("prompt is too long", "context window", "too many tokens")
_ROTATING: frozenset[ProviderErrorKind] = frozenset({"auth", "rate_limit"})


class AnthropicProvider:
    """A provider speaking Anthropic's Messages API."""

    def __init__(
        self,
        id: str = "anthropic",
        *,
        base_url: str = "https://api.anthropic.com",
        profiles: Sequence[Credential],
        models: list[ModelInfo] | None = None,
        max_tokens: int = 4096,
        thinking_budgets: Mapping[str, int] | None = None,
        prompt_caching: bool = True,
        connect_timeout: float = 10,
        read_timeout: float = 120,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        cooldowns: Sequence[float] = (30.0, 60.0, 300.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the provider; no connection is made until the first call."""
        self.id = id
        self.base_url = base_url.rstrip("/")
        self.profiles = AuthProfiles(id, profiles, schedule=cooldowns, clock=clock)
        self._models = list(models or [])
        self._by_id = {m.id: m for m in self._models}
        self._max_tokens = max_tokens
        self._budgets = dict(thinking_budgets or {})
        self._caching = prompt_caching
        self._timeout = anthropic.Timeout(connect=connect_timeout, read=read_timeout,
                                          write=read_timeout, pool=connect_timeout)
        self._max_retries = max(0, max_retries)
        self._backoff_base = backoff_base
        self._pool: Any = None
        self._clients: dict[str, anthropic.AsyncAnthropic] = {}

    def models(self) -> list[ModelInfo]:
        """The models configured for this provider."""
        return list(self._models)

    def auth_status(self) -> list[ProfileStatus]:
        """The auth profiles' state (no secrets)."""
        return self.profiles.status()

    def reset_auth(self, profile_id: str | None = None) -> list[str]:
        """Clear the cooldown of one profile, or of all."""
        return self.profiles.reset(profile_id)

    async def aclose(self) -> None:
        """Close the shared connection pool."""
        pool, self._pool = self._pool, None
        self._clients.clear()
        if pool is not None:
            await pool.aclose()

    def _client(self, cred: Credential) -> anthropic.AsyncAnthropic:
        # Created on first use (no event loop is bound while plugins load); every profile's
        # client shares one pool, so rotating keys opens no new connections.
        client = self._clients.get(cred.id)
        if client is None:
            if self._pool is None:
                self._pool = anthropic.DefaultAsyncHttpxClient(timeout=self._timeout)
            client = anthropic.AsyncAnthropic(
                api_key=cred.secret, base_url=self.base_url, max_retries=0,
                timeout=self._timeout, http_client=self._pool, open_telemetry=False)
            self._clients[cred.id] = client
        return client

    def params(self, request: ModelRequest) -> dict[str, Any]:
        """The Messages API body for ``request``."""
        info = self._by_id.get(request.model)
        model_max = info.max_output_tokens if info is not None else None
        default = min(model_max, convert.MAX_DEFAULT_TOKENS) if model_max else self._max_tokens
        return convert.params(request, max_tokens=default, model_max=model_max,
                              budgets=self._budgets, caching=self._caching)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream one Messages call as ``TextDelta``/``ToolCall`` events and a ``Finish``."""
        body = orjson.dumps(self.params(request))
        tried: set[str] = set()
        cred = self.profiles.pick(request.session_key)
        attempt = 0
        while True:
            yielded = False
            retry_after: float | None = None
            retryable = False
            try:
                if cred.secret is None:
                    raise self._error(f"no API key for profile {cred.id!r} "
                                      f"({cred.source or 'unset'})", "auth")
                # cast_to=Response: the SDK returns the HTTP response unread (README:
                # "undocumented requests"); stream_cls only satisfies the signature.
                response: httpx2.Response = await self._client(cred).post(  # type: ignore[assignment]
                    "/v1/messages", cast_to=httpx2.Response, content=body, stream=True,
                    stream_cls=anthropic.AsyncStream[Any])  # JSON is the client's default type
                try:
                    state = _State(self.id)
                    async for line in response.aiter_lines():
                        # Each event is an ``event:`` line and one ``data:`` line whose JSON
                        # repeats the type, so the data lines are all that is needed.
                        if not line.startswith("data:"):
                            continue
                        try:
                            data = orjson.loads(line[5:])
                        except orjson.JSONDecodeError as exc:
                            raise self._error(f"malformed stream event: {line[:200]}") from exc
                        for event in state.on(data):
                            yielded = True
                            yield event
                    yield state.finish()
                finally:
                    # However the caller leaves (end, break, cancellation): the connection is
                    # released, or closed if the body was not read to its end.
                    await response.aclose()
                self.profiles.succeeded(cred.id)
                return
            except anthropic.APIStatusError as exc:
                failure = status_error(self.id, exc)
                if yielded:
                    raise failure from exc
                retryable = failure.kind in ("rate_limit", "unavailable") or (
                    failure.status is not None and failure.status >= 500)
                retry_after = retry_after_s(exc.response.headers)
                cause: BaseException = exc
            except anthropic.APITimeoutError as exc:
                self.profiles.failed(cred.id, "timeout")
                raise self._error(f"timed out: {exc}", "timeout") from exc
            except anthropic.APIConnectionError as exc:
                failure = self._error(f"cannot connect to {self.base_url}: {exc}", "unavailable")
                retryable, cause = True, exc
            except (httpx2.NetworkError, httpx2.RemoteProtocolError) as exc:
                # The SDK reads the body itself, so a connection lost mid-stream surfaces as
                # the HTTP library's error.
                if yielded:
                    raise self._error(f"stream broken mid-answer: {exc!r}") from exc
                failure = self._error(f"connection failed: {exc!r}", "unavailable")
                retryable, cause = True, exc
            except httpx2.TimeoutException as exc:
                self.profiles.failed(cred.id, "timeout")
                raise self._error(f"timed out mid-stream: {exc!r}", "timeout") from exc
            except ProviderError as exc:
                # An error event, a missing key, a refusal or a broken stream.
                if yielded:
                    self.profiles.failed(cred.id, exc.kind)
                    raise
                failure, cause, retryable = exc, exc, exc.failover
            if failure.kind in _ROTATING and len(self.profiles) > 1:
                self.profiles.failed(cred.id, failure.kind, retry_after)
                tried.add(cred.id)
                if len(tried) == len(self.profiles):
                    raise failure from cause
                try:
                    cred = self.profiles.pick(request.session_key, tried)
                except ProviderError:
                    raise failure from cause  # the others are cooling down too
                continue
            if not retryable or attempt == self._max_retries:
                self.profiles.failed(cred.id, failure.kind, retry_after)
                raise failure from cause
            await asyncio.sleep(self._backoff(attempt, retry_after))
            attempt += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_CAP_S)
        delay = self._backoff_base * 2.0**attempt
        return min(delay + random.uniform(0, self._backoff_base / 4), RETRY_AFTER_CAP_S)

    def _error(self, message: str, kind: ProviderErrorKind = "other",
               status: int | None = None) -> ProviderError:
        return ProviderError(f"{self.id}: {message}", provider=self.id, kind=kind, status=status)


class _State:
    """One streamed message: blocks by index, usage, stop reason."""

    __slots__ = ("blocks", "provider", "reason", "stopped", "usage")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, int] = {}
        self.reason: str | None = None
        self.stopped = False

    def on(self, event: dict[str, Any]) -> list[ModelEvent]:
        """The clawgate events for one decoded stream event."""
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta") or {}
            block = self.blocks.get(event.get("index", -1))
            if block is None:
                return []
            dtype = delta.get("type")
            if dtype == "text_delta":
                if delta.get("text"):
                    return [TextDelta(delta["text"])]
            elif dtype == "input_json_delta":
                block["json"] += delta.get("partial_json") or ""
            elif dtype == "thinking_delta":
                block["thinking"] += delta.get("thinking") or ""
            elif dtype == "signature_delta":
                block["signature"] += delta.get("signature") or ""
            return []
        if kind == "content_block_start":
            self._start(event.get("index", -1), event.get("content_block") or {})
        elif kind == "content_block_stop":
            block = self.blocks.get(event.get("index", -1))
            if block is not None and block["type"] == "tool_use":
                return [ToolCall(block["id"], block["name"], block["json"] or "{}")]
        elif kind == "message_start":
            self._usage((event.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason:
                self.reason = reason
            self._usage(event.get("usage"))
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            raise event_error(self.provider, event.get("error") or {})
        return []

    def _start(self, index: int, block: dict[str, Any]) -> None:
        kind = block.get("type")
        if kind == "tool_use":
            # The start carries id, name and an empty input; the JSON arrives in deltas.
            self.blocks[index] = {"type": kind, "id": str(block.get("id", "")),
                                  "name": str(block.get("name", "")), "json": ""}
        elif kind == "thinking":
            self.blocks[index] = {"type": kind, "thinking": block.get("thinking") or "",
                                  "signature": block.get("signature") or ""}
        elif kind == "redacted_thinking":
            self.blocks[index] = {"type": kind, "data": block.get("data")}
        else:
            self.blocks[index] = {"type": kind}

    def _usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        for name in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                     "cache_creation_input_tokens"):
            value = usage.get(name)
            if value is not None:  # message_delta repeats some counts cumulatively
                self.usage[name] = int(value)

    def finish(self) -> Finish:
        """The ``Finish`` at the end of a complete message."""
        if not self.stopped:
            raise ProviderError(f"{self.provider}: stream ended before message_stop",
                                provider=self.provider)
        if self.reason == "refusal":
            raise ProviderError(f"{self.provider}: the model refused to answer",
                                provider=self.provider, kind="refusal")
        u = self.usage
        read, write = u.get("cache_read_input_tokens", 0), u.get("cache_creation_input_tokens", 0)
        # Anthropic's input_tokens excludes the cached parts; Usage.input counts them all.
        usage = Usage(input=u.get("input_tokens", 0) + read + write,
                      output=u.get("output_tokens", 0), cache_read=read, cache_write=write)
        thinking = [
            {"type": "thinking", "thinking": b["thinking"], "signature": b["signature"]}
            if b["type"] == "thinking" else {"type": "redacted_thinking", "data": b["data"]}
            for _, b in sorted(self.blocks.items())
            if b["type"] in ("thinking", "redacted_thinking")
        ]
        extra: dict[str, Any] = {}
        if thinking:
            extra["thinking_blocks"] = thinking
            text = "\n\n".join(b["thinking"] for b in thinking if b["type"] == "thinking")
            if text:
                extra["reasoning_content"] = text
        return Finish(STOP_REASONS.get(self.reason or "end_turn", self.reason or "stop"), usage,
                      extra)


def event_error(provider: str, error: dict[str, Any]) -> ProviderError:
    """The :class:`ProviderError` for a stream ``error`` event (inside a 200 response, so only
    its ``error.type`` tells the kind)."""
    return _error(provider, None, str(error.get("type") or ""),
                  str(error.get("message") or error.get("type") or "unknown error"))


def status_error(provider: str, exc: anthropic.APIStatusError) -> ProviderError:
    """The :class:`ProviderError` for an HTTP error response."""
    error_type = str(exc.type or "")
    status = exc.status_code if exc.status_code >= 400 else None
    return _error(provider, status, error_type,
                  str(exc.api_message or exc.message or error_type))


def _error(provider: str, status: int | None, error_type: str, message: str) -> ProviderError:
    kind = ERROR_KINDS.get(error_type)
    if kind is None:
        if status == 429:
            kind = "rate_limit"
        elif status in (401, 403):
            kind = "auth"
        elif status == 529:
            kind = "unavailable"
        elif any(m in message.lower() for m in _CONTEXT_MARKERS):
            kind = "context_length"
        else:
            kind = "other"
    where = f"HTTP {status}" if status else "error in stream"
    label = f"{error_type}: " if error_type else ""
    text = f"{label}{message}"
    if len(text) > ERROR_TEXT_LIMIT:
        text = text[:ERROR_TEXT_LIMIT] + "…"
    return ProviderError(f"{provider}: {where}: {text}", provider=provider, kind=kind,
                         status=status)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """``retry-after`` in seconds (HTTP dates are ignored)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
