"""The HTTP side of the gateway: probes, metrics, auth, JSON bodies, plugin routes.

Every error leaves as an OpenAI-shaped JSON body ``{"error": {"message", "type", "code"}}`` with
the status from the one error table (``clawgate.errors.classify``). Plugin HTTP routes are
looked up in the *current* generation per request, so a plugin reload changes routes without
rebuilding the app.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from clawgate.errors import AuthError, ClawgateError, InvalidRequest, classify
from clawgate.gateway.methods.system import SERVING

if TYPE_CHECKING:
    from clawgate.gateway.app import Gateway

log = logging.getLogger("clawgate.gateway.http")
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
               413: "invalid_request_error", 429: "rate_limit_error", 503: "api_error"}


CORE_PATHS = frozenset({"/health", "/healthz", "/ready", "/readyz", "/startup", "/startupz",
                        "/metrics"})
# What plugins may not register: the core paths, the WebSocket root, the OpenAI API trees.
RESERVED_PATHS = ("/", *sorted(CORE_PATHS), "/v1/", "/openclaw/v1/")


class PayloadTooLarge(InvalidRequest):
    """A request body over the configured limit (HTTP 413)."""


def error_response(status: int, message: str, *, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-shaped error body."""
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status, "api_error"),
                      "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def from_exception(exc: Exception) -> JSONResponse:
    """The HTTP response for an exception raised while serving a request."""
    if isinstance(exc, PayloadTooLarge):
        return error_response(413, str(exc), code="payload_too_large")
    if isinstance(exc, ClawgateError):
        _, status = classify(exc)
        return error_response(status, str(exc))
    return error_response(500, "internal error")


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


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


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authorize(gateway: Gateway, request: Request) -> JSONResponse | None:
    """None when the request carries the gateway's credentials; otherwise a 401 or 429."""
    address = client_address(request)
    wait = gateway.limiter.retry_after(address)
    if wait > 0:
        return error_response(429, "too many failed authentication attempts",
                              code="rate_limited", headers={"Retry-After": str(int(wait) + 1)})
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if gateway.credentials.check(presented.strip() if scheme.lower() == "bearer" else None):
        gateway.limiter.succeeded(address)
        return None
    gateway.limiter.failed(address)
    return error_response(401, "missing or invalid bearer token" if header
                          else "authentication required: send 'Authorization: Bearer <token>'")


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing bodies over ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None


def build_app(gateway: Gateway) -> Starlette:
    """The gateway's ASGI application."""
    from clawgate.gateway.openai_api import routes as openai_routes
    from clawgate.gateway.ws import endpoint as ws_endpoint

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True, "status": "live"})

    async def ready(request: Request) -> Response:
        if not gateway.ready:
            status = "draining" if gateway.draining else "starting"
            return JSONResponse({"ok": False, "status": status}, status_code=503)
        body: dict[str, Any] = {"ok": True, "status": "ready"}
        if request.client and request.client.host in ("127.0.0.1", "::1"):
            body.update(version=gateway.version(), uptimeMs=gateway.uptime_ms)
        return JSONResponse(body)

    async def startup(_request: Request) -> Response:
        if gateway.ready:
            return JSONResponse({"ok": True, "status": "started"})
        status = "draining" if gateway.draining else "starting"
        return JSONResponse({"ok": False, "status": status}, status_code=503)

    async def metrics(request: Request) -> Response:
        denied = authorize(gateway, request)
        if denied is not None:
            return denied
        return PlainTextResponse(gateway.metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    async def plugin_route(request: Request) -> Response:
        """Dispatch to a route registered by a plugin of the current generation."""
        path = request.url.path
        if path in CORE_PATHS:  # a core route reached here only because the method is wrong
            allowed = "GET, HEAD" if path != "/metrics" else "GET"
            return error_response(405, f"{request.method} not allowed on {path}",
                                  headers={"Allow": allowed})
        generation = gateway.plugins.current
        route = next((r for r in generation.registry.routes if r.path == path), None)
        if route is None:
            return error_response(404, f"no route {path}")
        if request.method not in route.methods and not (
                request.method == "HEAD" and "GET" in route.methods):
            return error_response(405, f"{request.method} not allowed on {path}",
                                  headers={"Allow": ", ".join(route.methods)})
        if route.auth == "gateway":
            denied = authorize(gateway, request)
            if denied is not None:
                return denied
        started = time.perf_counter()
        lease = gateway.plugins.checkout(generation)  # a reload waits for this request
        try:
            if inspect.iscoroutinefunction(route.handler):
                response = await route.handler(request)
            else:  # a sync endpoint must not block the loop: the plugin pool runs it
                response = await gateway.plugins.run_sync(route.handler, request)
                if inspect.isawaitable(response):
                    response = await response
        except Exception:
            log.exception("plugin route %s of plugin %r failed", path, route.plugin_id)
            return error_response(500, f"plugin route {path} failed")
        finally:
            lease.release()
            gateway.metrics.observe("http_request_seconds", time.perf_counter() - started,
                                    route="plugin")
        if not isinstance(response, Response):
            return error_response(500, f"plugin route {path} returned no response")
        return response

    async def on_error(request: Request, exc: Exception) -> Response:
        return from_exception(exc)

    probe = ["GET", "HEAD"]
    routes: list[BaseRoute] = [
        Route("/health", health, methods=probe),
        Route("/healthz", health, methods=probe),
        Route("/ready", ready, methods=probe),
        Route("/readyz", ready, methods=probe),
        Route("/startup", startup, methods=probe),
        Route("/startupz", startup, methods=probe),
        Route("/metrics", metrics, methods=["GET"]),
        WebSocketRoute("/", ws_endpoint(gateway)),
        *openai_routes(gateway, prefix="/v1"),
        *openai_routes(gateway, prefix="/openclaw/v1"),
        Route("/{path:path}", plugin_route,
              methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    ]
    app = Starlette(routes=routes, lifespan=gateway.lifespan,
                    exception_handlers={ClawgateError: on_error, AuthError: on_error})
    app.add_middleware(OriginGuard, gateway=gateway)
    return app


class OriginGuard:
    """Refuses HTTP requests and WebSocket upgrades from browser origins that are not allowed
    (403 before any route runs)."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.allowed = gateway.settings.config.gateway.allowed_origins
        # The Host rule matters only without credentials: with a token, a rebinding page
        # cannot authenticate anyway, and local clients may use any name for the machine.
        loopback = gateway.bind in LOOPBACK_HOSTS or gateway.bind.startswith("127.")
        self.loopback_bind = loopback and gateway.settings.config.gateway.auth.mode == "none"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        SERVING.set(self.gateway)  # this request's task (and tasks it starts) works for us
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
                await error_response(403, message, code="origin_not_allowed")(
                    scope, receive, send)
                return
        await self.app(scope, receive, send)
