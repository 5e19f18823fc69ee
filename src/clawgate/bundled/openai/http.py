"""HTTP plumbing shared by the OpenAI plugin's two APIs: one pooled client, auth profiles,
retries, and the mapping of error responses onto failover kinds.

A call is retried only before its first event reached the caller: a partly streamed answer is
never replayed. Transient failures (429, 5xx, connection errors) are retried with exponential
backoff (or the server's ``retry-after``). With several auth profiles, a rate-limit or auth
failure moves the call to the next profile at once, and the failed one cools down.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import orjson

from clawgate import AuthProfiles, Credential, ModelEvent, ProviderError, ProviderErrorKind

if TYPE_CHECKING:  # httpx (~6 MiB resident) is imported by the first request, not at load
    import httpx

RETRY_AFTER_CAP_S = 30.0
ERROR_TEXT_LIMIT = 500
ERROR_BODY_LIMIT = 64 * 1024
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "too many tokens",
    "context window",
    "context length",
)
_RATE_MARKERS = ("rate limit", "rate_limit", "quota", "too many requests")
_REFUSAL_MARKERS = ("content_filter", "content filter", "content_policy", "content policy")
_ROTATING: frozenset[ProviderErrorKind] = frozenset({"auth", "rate_limit"})

Parser = Callable[["httpx.Response"], AsyncIterator[ModelEvent]]


class Http:
    """The provider's HTTP client; created lazily so building a provider does no I/O."""

    def __init__(self, provider: str, base_url: str, profiles: AuthProfiles, *,
                 connect_timeout: float, read_timeout: float, max_retries: int,
                 backoff_base: float, transport: httpx.AsyncBaseTransport | None) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.profiles = profiles
        self._timeouts = (connect_timeout, read_timeout)
        self._max_retries = max(0, max_retries)
        self._backoff_base = backoff_base
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        # Created on first use so that constructing a provider (e.g. while loading plugins)
        # binds to no event loop.
        if self._client is None:
            import httpx  # here: a gateway that never calls the provider never loads it

            connect, read = self._timeouts
            timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
            self._client = httpx.AsyncClient(timeout=timeout, transport=self._transport)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def error(self, message: str, kind: ProviderErrorKind = "other",
              status: int | None = None) -> ProviderError:
        return ProviderError(f"{self.provider}: {message}", provider=self.provider, kind=kind,
                             status=status)

    async def get(self, path: str, session_key: str | None = None) -> bytes:
        """``GET {base_url}{path}`` with the session's credential; no retries."""
        import httpx  # loaded by client() already: a lookup, for the except clauses

        cred = self.profiles.pick(session_key)
        try:
            response = await self.client().get(f"{self.base_url}{path}", headers=_auth(cred))
        except httpx.TimeoutException as exc:
            raise self.error(f"timed out on GET {path}: {exc!r}", "timeout") from exc
        except httpx.TransportError as exc:
            raise self.error(f"cannot reach {self.base_url}: {exc!r}") from exc
        if response.is_error:
            raise http_error(self.provider, response.status_code, response.content)
        return response.content

    async def stream(self, path: str, body: dict[str, Any], parse: Parser,
                     session_key: str | None) -> AsyncIterator[ModelEvent]:
        """POST ``body`` as JSON and yield what ``parse`` makes of the streamed response."""
        import httpx  # loaded by client() already: a lookup, for the except clauses

        url = f"{self.base_url}{path}"
        content = orjson.dumps(body)
        tried: set[str] = set()
        cred = self.profiles.pick(session_key)
        attempt = 0
        while True:
            yielded = False
            retry_after: float | None = None
            cause: Exception | None = None
            headers = {"Content-Type": "application/json", "Accept": "text/event-stream",
                       **_auth(cred)}
            try:
                # ``async with`` closes the response however the caller leaves: normal end,
                # break (generator closed) or task cancellation.
                async with self.client().stream("POST", url, content=content,
                                                headers=headers) as resp:
                    if not resp.is_error:
                        async for event in parse(resp):
                            yielded = True
                            yield event
                        self.profiles.succeeded(cred.id)
                        return
                    failure = http_error(self.provider, resp.status_code,
                                         await read_capped(resp))
                    retryable = resp.status_code == 429 or resp.status_code >= 500
                    retry_after = retry_after_s(resp.headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                kind: ProviderErrorKind = (
                    "timeout" if isinstance(exc, httpx.ConnectTimeout) else "unavailable"
                )
                failure = self.error(f"cannot connect to {self.base_url}: {exc!r}", kind)
                retryable, cause = True, exc
            except httpx.TimeoutException as exc:
                # A read timeout means the model is slow or stuck; retrying would multiply the
                # wait before failover, so hand it straight to the failover layer.
                self.profiles.failed(cred.id, "timeout")
                raise self.error(f"timed out waiting for {url}: {exc!r}", "timeout") from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                if yielded:
                    raise self.error(f"stream broken mid-answer: {exc!r}") from exc
                failure = self.error(f"connection failed: {exc!r}", "unavailable")
                retryable, cause = True, exc
            except httpx.HTTPError as exc:
                raise self.error(f"request to {url} failed: {exc!r}") from exc
            except ProviderError as exc:
                # An error event inside a 200 stream, before any text: it may rotate too.
                if yielded:
                    raise
                failure, retryable = exc, exc.kind == "rate_limit" or exc.failover
            if failure.kind in _ROTATING and len(self.profiles) > 1:
                self.profiles.failed(cred.id, failure.kind, retry_after)
                tried.add(cred.id)
                if len(tried) == len(self.profiles):
                    raise failure from cause
                try:
                    cred = self.profiles.pick(session_key, tried)
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
        # Jitter spreads retries of many concurrent sessions hitting the same rate limit.
        return min(delay + random.uniform(0, self._backoff_base / 4), RETRY_AFTER_CAP_S)


def _auth(cred: Credential) -> dict[str, str]:
    return {"Authorization": f"Bearer {cred.secret}"} if cred.secret else {}


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
        f"{provider}: HTTP {status}: {truncate(message)}",
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
        f"{provider}: error in stream: {truncate(message)}",
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


def truncate(text: str) -> str:
    """``text`` cut to the length an error message may carry."""
    return text if len(text) <= ERROR_TEXT_LIMIT else text[:ERROR_TEXT_LIMIT] + "…"


def retry_after_s(headers: httpx.Headers) -> float | None:
    """The server's retry hint in seconds: ``retry-after-ms`` (OpenAI) or ``retry-after``
    (seconds; HTTP dates are ignored)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


async def read_capped(response: httpx.Response, limit: int | None = ERROR_BODY_LIMIT) -> bytes:
    """The body, cut at ``limit`` bytes: an error body only feeds a message."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size >= limit:
            break
    return b"".join(chunks)
