"""HTTP plumbing shared by the OpenAI plugin's two APIs: one pooled client, auth profiles,
retries, and the mapping of error responses onto failover kinds.

The client is aiohttp's (``docs/architecture.md``, "Provider HTTP client"): a streamed
completion costs ~245 µs of event-loop CPU through it against ~860 µs through httpx, and the
gateway spends the difference on every turn. Like httpx it honours ``HTTP(S)_PROXY`` /
``ALL_PROXY`` / ``NO_PROXY`` (read when the client is made) and ``SSL_CERT_FILE`` /
``SSL_CERT_DIR``, verifies TLS against certifi's roots otherwise, and keeps at most 100
connections.

A call is retried only before its first event reached the caller: a partly streamed answer is
never replayed. Transient failures (429, 5xx, connection errors) are retried with exponential
backoff (or the server's ``retry-after``). With several auth profiles, a rate-limit or auth
failure moves the call to the next profile at once, and the failed one cools down.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from clawgate import AuthProfiles, Credential, ModelEvent, ProviderError, ProviderErrorKind

if TYPE_CHECKING:  # aiohttp (~9 MiB resident) is imported by the first request, not at load
    import aiohttp

RETRY_AFTER_CAP_S = 30.0
ERROR_TEXT_LIMIT = 500
ERROR_BODY_LIMIT = 64 * 1024
MAX_CONNECTIONS = 100
# One SSE line (a Responses ``response.completed`` event repeats the whole answer) may be
# long, but not unbounded.
MAX_LINE_BYTES = 16 * 1024 * 1024
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


class Response:
    """A streamed response as the parsers read it: status, headers, lines or bytes."""

    def __init__(self, raw: aiohttp.ClientResponse) -> None:
        self._raw = raw
        self.status_code = raw.status
        self.headers: Mapping[str, str] = raw.headers  # case-insensitive

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._raw.content.iter_any():
            yield chunk

    async def aiter_lines(self) -> AsyncIterator[str]:
        """The body's lines (``\n``, ``\r\n`` or ``\r`` ended), decoded, without endings."""
        pending = b""
        async for chunk in self._raw.content.iter_any():
            lines = (pending + chunk).splitlines(keepends=True)
            pending = lines.pop() if not lines[-1].endswith((b"\n", b"\r")) else b""
            if len(pending) > MAX_LINE_BYTES:
                raise ValueError(f"a line of the response exceeds {MAX_LINE_BYTES} bytes")
            for line in lines:
                yield line.rstrip(b"\r\n").decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")


Parser = Callable[[Response], AsyncIterator[ModelEvent]]


class Http:
    """The provider's HTTP client; created lazily so building a provider does no I/O."""

    def __init__(self, provider: str, base_url: str, profiles: AuthProfiles, *,
                 connect_timeout: float, read_timeout: float, max_retries: int,
                 backoff_base: float) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.profiles = profiles
        self._timeouts = (connect_timeout, read_timeout)
        self._max_retries = max(0, max_retries)
        self._backoff_base = backoff_base
        self._client: aiohttp.ClientSession | None = None
        self._proxy: dict[str, Any] = {}

    def client(self) -> aiohttp.ClientSession:
        # Created on first use so that constructing a provider (e.g. while loading plugins)
        # binds to no event loop.
        if self._client is None:
            import aiohttp  # here: a gateway that never calls the provider never loads it

            connect, read = self._timeouts
            # No total limit: a long answer streams for as long as chunks keep coming.
            timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read)
            connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=_tls_context())
            # trust_env stays off: with it aiohttp looks the proxy and ~/.netrc up on a worker
            # thread for every request (two thread hops, ~+170 µs CPU and 2x the latency of
            # a local call); the proxy is looked up once, here, instead.
            self._proxy = env_proxy(self.base_url)
            self._client = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def error(self, message: str, kind: ProviderErrorKind = "other",
              status: int | None = None) -> ProviderError:
        return ProviderError(f"{self.provider}: {message}", provider=self.provider, kind=kind,
                             status=status)

    async def get(self, path: str, session_key: str | None = None) -> bytes:
        """``GET {base_url}{path}`` with the session's credential; no retries."""
        import aiohttp  # loaded by client() already: a lookup, for the except clauses

        cred = self.profiles.pick(session_key)
        try:
            async with self.client().get(f"{self.base_url}{path}", headers=_auth(cred),
                                         **self._proxy) as response:
                content = await response.read()
        except aiohttp.ServerTimeoutError as exc:
            raise self.error(f"timed out on GET {path}: {exc!r}", "timeout") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self.error(f"cannot reach {self.base_url}: {exc!r}") from exc
        if response.status >= 400:
            raise http_error(self.provider, response.status, content)
        return content

    async def stream(self, path: str, body: dict[str, Any], parse: Parser,
                     session_key: str | None) -> AsyncIterator[ModelEvent]:
        """POST ``body`` as JSON and yield what ``parse`` makes of the streamed response."""
        import aiohttp  # loaded by client() already: a lookup, for the except clauses

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
                # ``async with`` releases the connection however the caller leaves: normal
                # end, break (generator closed) or task cancellation.
                async with self.client().post(url, data=content, headers=headers,
                                              **self._proxy) as raw:
                    resp = Response(raw)
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
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                kind: ProviderErrorKind = (
                    "timeout" if isinstance(exc, aiohttp.ConnectionTimeoutError)
                    else "unavailable"
                )
                failure = self.error(f"cannot connect to {self.base_url}: {exc!r}", kind)
                retryable, cause = True, exc
            except aiohttp.ServerTimeoutError as exc:
                # A read timeout means the model is slow or stuck; retrying would multiply the
                # wait before failover, so hand it straight to the failover layer.
                self.profiles.failed(cred.id, "timeout")
                raise self.error(f"timed out waiting for {url}: {exc!r}", "timeout") from exc
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                    aiohttp.ClientOSError) as exc:
                if yielded:
                    raise self.error(f"stream broken mid-answer: {exc!r}") from exc
                failure = self.error(f"connection failed: {exc!r}", "unavailable")
                retryable, cause = True, exc
            except (aiohttp.ClientError, ValueError) as exc:
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


def env_proxy(url: str) -> dict[str, Any]:
    """The proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` name for ``url`` unless
    ``NO_PROXY`` exempts it, as aiohttp request arguments (``{}``: connect directly).
    Credentials in its URL become its ``Proxy-Authorization`` (aiohttp does that)."""
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    parts = urlsplit(url)
    if not parts.hostname or proxy_bypass(parts.hostname):
        return {}
    found = getproxies()
    chosen = found.get(parts.scheme) or found.get("all")
    if not chosen:
        return {}
    return {"proxy": chosen if "://" in chosen else f"http://{chosen}"}


def _tls_context() -> Any:
    """The roots TLS is verified against: ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set (as
    OpenSSL reads them), else certifi's bundle (what httpx used), else the system's."""
    import ssl

    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


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


def retry_after_s(headers: Mapping[str, str]) -> float | None:
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


async def read_capped(response: Response, limit: int | None = ERROR_BODY_LIMIT) -> bytes:
    """The body, cut at ``limit`` bytes: an error body only feeds a message."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if limit is not None and size >= limit:
            break
    return b"".join(chunks)
