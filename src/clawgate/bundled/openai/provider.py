"""The OpenAI-compatible provider: streaming ``/chat/completions`` over HTTP with retries.

Works with OpenAI and the many servers that copy its API (vLLM, llama.cpp, Ollama, LiteLLM,
OpenRouter, ...). Transient failures (429, 5xx, connection errors) are retried with exponential
backoff, but only before the first event reached the caller: a partly streamed answer is never
replayed. Every failure surfaces as a :class:`~clawgate.errors.ProviderError` whose ``kind``
tells the failover layer whether another model is worth trying.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from clawgate import (
    Finish,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    ProviderError,
    ProviderErrorKind,
    TextDelta,
    ToolCall,
    Usage,
)

RETRY_AFTER_CAP_S = 30.0
_ERROR_TEXT_LIMIT = 500
_ERROR_BODY_LIMIT = 64 * 1024
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "too many tokens",
    "context window",
    "context length",
)
_RATE_MARKERS = ("rate limit", "rate_limit", "quota", "too many requests")
_REFUSAL_MARKERS = ("content_filter", "content filter", "content_policy", "content policy")
_REFUSAL_REASONS = ("content_filter", "refusal")


class OpenAIProvider:
    """A provider speaking the OpenAI chat-completions API."""

    def __init__(
        self,
        id: str = "openai",
        *,
        base_url: str,
        api_key: str | None,
        connect_timeout: float = 10,
        read_timeout: float = 120,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        models: list[ModelInfo] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Configure the provider; no connection is made until the first call."""
        self.id = id
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        # models.authStatus: a local endpoint (vLLM, Ollama, LM Studio) needs no key.
        host = urlsplit(self.base_url).hostname or ""
        local = host in ("localhost", "::1") or host.startswith("127.")
        self.credentials = "api-key" if api_key else "none" if local else "missing"
        self._timeout = httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
        )
        self._max_retries = max(0, max_retries)
        self._backoff_base = backoff_base
        self._models = list(models or [])
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def models(self) -> list[ModelInfo]:
        """The models configured for this provider."""
        return list(self._models)

    async def aclose(self) -> None:
        """Close the HTTP client and its pooled connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def list_models(self) -> list[ModelInfo]:
        """Ask the server which models it serves (``GET /models``); no retries."""
        try:
            response = await self._http().get(f"{self.base_url}/models")
        except httpx.TimeoutException as exc:
            raise self._error(f"timed out listing models: {exc!r}", "timeout") from exc
        except httpx.TransportError as exc:
            raise self._error(f"cannot reach {self.base_url}: {exc!r}", "other") from exc
        if response.is_error:
            raise http_error(self.id, response.status_code, response.content)
        try:
            data = orjson.loads(response.content).get("data") or []
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise self._error("GET /models returned no model list", "other") from exc
        return [ModelInfo(str(m["id"])) for m in data if isinstance(m, dict) and "id" in m]

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream one chat completion as ``TextDelta``/``ToolCall`` events and a ``Finish``."""
        url = f"{self.base_url}/chat/completions"
        body = orjson.dumps(payload(request))
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"

        for attempt in range(self._max_retries + 1):
            yielded = False
            retry_after: float | None = None
            cause: Exception | None = None
            try:
                # ``async with`` closes the response however the caller leaves: normal end,
                # break (generator closed) or task cancellation.
                async with self._http().stream("POST", url, content=body, headers=headers) as resp:
                    if not resp.is_error:
                        async for event in self._events(resp):
                            yielded = True
                            yield event
                        return
                    failure = http_error(self.id, resp.status_code, await _read_capped(resp))
                    retryable = resp.status_code == 429 or resp.status_code >= 500
                    retry_after = _retry_after(resp.headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                kind: ProviderErrorKind = (
                    "timeout" if isinstance(exc, httpx.ConnectTimeout) else "unavailable"
                )
                failure = self._error(f"cannot connect to {self.base_url}: {exc!r}", kind)
                retryable, cause = True, exc
            except httpx.TimeoutException as exc:
                # A read timeout means the model is slow or stuck; retrying would multiply the
                # wait before failover, so hand it straight to the failover layer.
                raise self._error(f"timed out waiting for {url}: {exc!r}", "timeout") from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if yielded:
                    raise self._error(f"stream broken mid-answer: {exc!r}", "other") from exc
                failure = self._error(f"connection failed: {exc!r}", "unavailable")
                retryable, cause = True, exc
            except httpx.HTTPError as exc:
                raise self._error(f"request to {url} failed: {exc!r}", "other") from exc
            if not retryable or attempt == self._max_retries:
                raise failure from cause
            await asyncio.sleep(self._backoff(attempt, retry_after))

    def _http(self) -> httpx.AsyncClient:
        # Created on first use so that constructing a provider (e.g. while loading plugins)
        # does no I/O and binds to no event loop.
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, transport=self._transport)
        return self._client

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, RETRY_AFTER_CAP_S)
        delay = self._backoff_base * 2.0**attempt
        # Jitter spreads retries of many concurrent sessions hitting the same rate limit.
        return min(delay + random.uniform(0, self._backoff_base / 4), RETRY_AFTER_CAP_S)

    def _error(
        self, message: str, kind: ProviderErrorKind, status: int | None = None
    ) -> ProviderError:
        return ProviderError(f"{self.id}: {message}", provider=self.id, kind=kind, status=status)

    async def _events(self, response: httpx.Response) -> AsyncIterator[ModelEvent]:
        state = _StreamState()
        if "application/json" in response.headers.get("content-type", ""):
            # Some servers ignore ``stream: true`` and answer with one JSON completion.
            try:
                data = orjson.loads(await _read_capped(response, limit=None))
            except orjson.JSONDecodeError as exc:
                raise self._error("malformed JSON completion", "other") from exc
            for event in [*state.completion(self.id, data), *state.finish(self.id)]:
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
                detail = f"malformed stream event: {_truncate(data_text)}"
                raise self._error(detail, "other") from exc
            for event in state.chunk(self.id, data):
                yield event
        if not done and state.reason is None:
            raise self._error("stream ended before the answer was complete", "other")
        for event in state.finish(self.id):
            yield event


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
            raise ProviderError(f"{provider}: unexpected response body", provider=provider)
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
                f"{provider}: the model refused: {_truncate(detail)}",
                provider=provider,
                kind="refusal",
            )
        if self.flushed or (self.reason is None and not self.calls):
            return []
        self.flushed = True
        events: list[ModelEvent] = []
        for index, call in sorted(self.calls.items()):
            if not call["name"]:
                raise ProviderError(f"{provider}: tool call {index} has no name", provider=provider)
        for index, call in sorted(self.calls.items()):
            call_id = call["id"] or f"call_{index}"
            events.append(ToolCall(call_id, call["name"], call["arguments"] or "{}"))
        return events


def payload(request: ModelRequest) -> dict[str, Any]:
    """The JSON body of a streaming chat-completions call for ``request``."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": list(request.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = list(request.tools)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
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


def classify(status: int | None, text: str) -> ProviderErrorKind:
    """The failover kind of an error from its HTTP status and message (or error code) text."""
    lowered = text.lower()
    if status == 429 or any(marker in lowered for marker in _RATE_MARKERS):
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if (status is None or status < 500) and any(m in lowered for m in _CONTEXT_MARKERS):
        return "context_length"
    if any(marker in lowered for marker in _REFUSAL_MARKERS):
        return "refusal"
    return "other"


def http_error(provider: str, status: int, body: bytes) -> ProviderError:
    """The :class:`ProviderError` for an HTTP error response."""
    message, code = _error_detail(body)
    return ProviderError(
        f"{provider}: HTTP {status}: {_truncate(message)}",
        provider=provider,
        kind=classify(status, f"{code} {message}"),
        status=status,
    )


def stream_error(provider: str, error: Any) -> ProviderError:
    """The :class:`ProviderError` for an ``error`` object sent inside a 200 response."""
    message, code = _error_fields(error)
    status = error.get("status") if isinstance(error, dict) else None
    status = status if isinstance(status, int) else (code if isinstance(code, int) else None)
    return ProviderError(
        f"{provider}: error in stream: {_truncate(message)}",
        provider=provider,
        kind=classify(status, f"{code} {message}"),
        status=status,
    )


def _error_detail(body: bytes) -> tuple[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip() or "(empty body)", None
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if data.get(key):
                return _error_fields(data[key])
    return body.decode("utf-8", "replace"), None


def _error_fields(error: Any) -> tuple[str, Any]:
    if isinstance(error, dict):
        message = error.get("message") or error.get("type") or orjson.dumps(error).decode()
        return str(message), error.get("code") or error.get("type")
    return str(error), None


def _truncate(text: str) -> str:
    return text if len(text) <= _ERROR_TEXT_LIMIT else text[:_ERROR_TEXT_LIMIT] + "…"


def _retry_after(headers: httpx.Headers) -> float | None:
    # OpenAI sends retry-after-ms; the standard header is in seconds (HTTP dates are ignored).
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


async def _read_capped(response: httpx.Response, limit: int | None = _ERROR_BODY_LIMIT) -> bytes:
    # An error body only feeds a message, so a huge one is cut rather than buffered whole.
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size >= limit:
            break
    return b"".join(chunks)
