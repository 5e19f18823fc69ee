"""HTTP helpers of the gateway: error bodies, JSON bodies, bearer tokens, browser origins.

Every error leaves as an OpenAI-shaped JSON body ``{"error": {"message", "type", "code"}}``
with the status and type from the one error table (``clawgate.errors.kind_of``). The route
table itself is built by the composition root (``gateway/app.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from clawgate.errors import (
    ClawgateError,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    UnsupportedMediaType,
    kind_of,
)
from clawgate.gateway.logring import SERVING

log = logging.getLogger("clawgate.gateway.http")

CORE_PATHS = frozenset({"/health", "/healthz", "/ready", "/readyz", "/startup", "/startupz",
                        "/metrics"})
# What plugins may not register: the core paths, the WebSocket root, the OpenAI API trees and
# the channel webhooks.
RESERVED_PATHS = ("/", *sorted(CORE_PATHS), "/v1/", "/openclaw/v1/", "/channels/")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class JSON(JSONResponse):
    """A JSON response encoded by orjson: a completion's body costs a third of the standard
    library's encoder (same compact output; NaN would be null instead of an error)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(exc: ClawgateError) -> JSONResponse:
    """The OpenAI-shaped error response for ``exc``."""
    kind = kind_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(int(exc.retry_after_s) + 1)
    elif isinstance(exc, MethodNotAllowed):
        headers["Allow"] = ", ".join(exc.allow)
    body = {"error": {"message": str(exc), "type": kind.openai, "code": exc.reason}}
    return JSONResponse(body, status_code=kind.status, headers=headers or None)


def internal_error() -> JSONResponse:
    """A bug's response: its text stays in the server log."""
    return JSONResponse({"error": {"message": "internal error", "type": "api_error",
                                   "code": None}}, status_code=500)


def bearer(request: Request) -> str | None:
    """The bearer token a request presents, or None."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return presented.strip() or None if scheme.lower() == "bearer" else None


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def read_json(request: Request, limit: int, timeout_s: float = 30.0) -> Any:
    """The request body as JSON: refused when its Content-Type says it is something else,
    over ``limit`` bytes (before it is read to the end), or not all there within
    ``timeout_s`` (a client trickling its body must not hold the connection)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != "application/json" and not (
            media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(f"Content-Type {media!r} is not supported; send "
                                   "application/json")
    body = await read_body(request, limit, timeout_s)
    if not body:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if _bad_utf8(body):
            raise InvalidRequest("request body is not valid UTF-8") from None
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None


async def read_body(request: Request, limit: int, timeout_s: float = 30.0) -> bytes:
    """The raw request body, refused (413) when over ``limit`` bytes, before it is read to the
    end when the length is declared, and (408) when it is not all there within ``timeout_s``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {timeout_s:g} s "
                             "(gateway.body_timeout_s)") from None
    return b"".join(chunks)


def _bad_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Whether a browser ``Origin`` may talk to the gateway.

    No Origin (not a browser) passes; so does the gateway's own origin (same host and port),
    a loopback page, or a configured ``gateway.allowed_origins`` entry. Anything else is a web
    page the operator did not choose: refusing it stops cross-site requests and DNS rebinding
    from reaching a gateway that runs without a token on loopback.
    """
    if not origin:
        return True
    origin = origin.rstrip("/").lower()
    if origin in (a.rstrip("/").lower() for a in allowed):
        return True
    parsed = urlsplit(origin)
    if parsed.hostname in LOOPBACK_HOSTS:
        return True
    return host is not None and parsed.netloc == host.lower()


def host_allowed(host: str | None, *, loopback_bind: bool, allowed: tuple[str, ...]) -> bool:
    """Whether the ``Host`` header fits a gateway bound to loopback without auth: a page on a
    domain that resolves to 127.0.0.1 (DNS rebinding) names that domain here, and is refused."""
    if not loopback_bind or host is None:
        return True
    name = urlsplit(f"//{host}").hostname or ""
    return name in LOOPBACK_HOSTS or any(urlsplit(a).hostname == name for a in allowed)


class OriginGuard:
    """The gateway's front door, outermost: refuses HTTP requests and WebSocket upgrades from
    browser origins that are not allowed (403 before any route runs), and marks the request's
    task as working for ``owner``. WebSocket connections to ``/`` go straight to ``websocket``
    (the control plane), and HTTP requests to a path of ``direct`` straight to its endpoint:
    the OpenAI endpoints answer every turn, and Starlette's exception middlewares and router
    would wrap each of their responses' sends three times over for nothing (they catch their
    own errors). Everything else goes to ``app``, the route table."""

    def __init__(self, app: ASGIApp, *, owner: object, allowed: tuple[str, ...],
                 loopback_bind: bool, websocket: ASGIApp | None = None,
                 direct: Mapping[str, Callable[[Request], Awaitable[Response]]] | None = None,
                 ) -> None:
        self.app = app
        self.websocket = websocket  # serves WebSocket connections to "/" directly
        self.direct = dict(direct or {})
        self.owner = owner
        self.allowed = allowed
        # The Host rule matters only without credentials: with a token, a rebinding page
        # cannot authenticate anyway, and local clients may use any name for the machine.
        self.loopback_bind = loopback_bind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        SERVING.set(self.owner)  # this request's task (and tasks it starts) works for us
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin")
            host = headers.get(b"host")
            host_text = host.decode("latin-1") if host else None
            if not (origin_allowed(origin.decode("latin-1") if origin else None, host_text,
                                   self.allowed)
                    and host_allowed(host_text, loopback_bind=self.loopback_bind,
                                     allowed=self.allowed)):
                message = "origin or host not allowed; add it to gateway.allowed_origins"
                if scope["type"] == "websocket":
                    await receive()  # websocket.connect; closing before accept answers 403
                    await send({"type": "websocket.close", "code": 1008, "reason": message})
                    return
                refusal = error_response(Forbidden(message, reason="origin_not_allowed"))
                await refusal(scope, receive, send)
                return
            if scope["type"] == "websocket":
                if self.websocket is not None and scope.get("path") == "/":
                    await self.websocket(scope, receive, send)
                    return
            elif (endpoint := self.direct.get(scope["path"])) is not None:
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
