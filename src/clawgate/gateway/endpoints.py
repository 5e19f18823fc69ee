"""The gateway's HTTP endpoints, as plain handlers over :class:`~clawgate.gateway.rpc.Services`:
probes, ``/metrics``, plugin routes, and the wrapper every OpenAI-compatible endpoint runs in
(method check, bearer auth, error mapping, request metrics). ``app.py`` puts them in the route
table."""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from clawgate.chat import WebhookRequest
from clawgate.errors import ClawgateError, MethodNotAllowed, NotFound
from clawgate.gateway.http import CORE_PATHS, error_response, internal_error, read_body
from clawgate.gateway.rpc import Services

log = logging.getLogger("clawgate.gateway.http")

Handler = Callable[[Services, Request], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def probes(gateway: Services) -> dict[str, Endpoint]:
    """``/health`` (live), ``/ready`` (serving, not draining) and ``/startup`` handlers."""

    async def health(_request: Request) -> Response:
        return JSONResponse({"ok": True, "status": "live"})

    async def ready(request: Request) -> Response:
        if not gateway.ready:
            return JSONResponse({"ok": False, "status": gateway.state}, status_code=503)
        store = gateway.runtime.store
        # After a storage failure each probe tries one small write: ready again once it works.
        failure = store.failure and await store.probe_write()
        if failure:
            return JSONResponse({"ok": False, "status": "store_unavailable",
                                 "reason": failure}, status_code=503)
        body: dict[str, Any] = {"ok": True, "status": "ready"}
        if request.client and request.client.host in ("127.0.0.1", "::1"):
            body.update(version=gateway.version, uptimeMs=gateway.uptime_ms)
        return JSONResponse(body)

    async def startup(_request: Request) -> Response:
        if gateway.ready:
            return JSONResponse({"ok": True, "status": "started"})
        return JSONResponse({"ok": False, "status": gateway.state}, status_code=503)

    async def metrics(request: Request) -> Response:
        try:
            gateway.authorize(request)
        except ClawgateError as exc:
            return error_response(exc)
        return PlainTextResponse(gateway.runtime.metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    return {"health": health, "ready": ready, "startup": startup, "metrics": metrics}


def openai(gateway: Services, route: str, methods: tuple[str, ...],
           handler: Handler) -> Endpoint:
    """An OpenAI-compatible endpoint: OpenAI-shaped 405/401/4xx/5xx bodies, counted in
    ``http_requests_total`` and timed in ``http_request_seconds`` (until the response starts)."""

    async def serve(request: Request) -> Response:
        started = time.perf_counter()
        try:
            if request.method not in methods:
                raise MethodNotAllowed(
                    f"{request.method} is not allowed on {request.url.path}; use "
                    f"{' or '.join(m for m in methods if m != 'HEAD')}", allow=methods)
            gateway.authorize(request)
            response = await handler(gateway, request)
        except ClawgateError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            response = internal_error()
        metrics = gateway.runtime.metrics
        metrics.inc("http_requests_total", route=route, status=str(response.status_code))
        metrics.observe("http_request_seconds", time.perf_counter() - started, route=route)
        return response

    return serve


def plugin_routes(gateway: Services) -> Endpoint:
    """The catch-all: a route registered by a plugin of the *current* generation (looked up per
    request, so a plugin reload changes routes without rebuilding the app)."""
    host = gateway.runtime.host

    async def serve(request: Request) -> Response:
        path = request.url.path
        if path in CORE_PATHS:  # a core route reached here only because the method is wrong
            allowed = ("GET", "HEAD") if path != "/metrics" else ("GET",)
            return error_response(MethodNotAllowed(f"{request.method} not allowed on {path}",
                                                   allow=allowed))
        generation = host.current
        route = next((r for r in generation.registry.routes if r.path == path), None)
        if route is None:
            return error_response(NotFound(f"no route {path}"))
        if request.method not in route.methods and not (
                request.method == "HEAD" and "GET" in route.methods):
            return error_response(MethodNotAllowed(f"{request.method} not allowed on {path}",
                                                   allow=route.methods))
        if route.auth == "gateway":
            try:
                gateway.authorize(request)
            except ClawgateError as exc:
                return error_response(exc)
        started = time.perf_counter()
        lease = host.checkout(generation)  # a reload waits for this request
        try:
            if inspect.iscoroutinefunction(route.handler):
                response = await route.handler(request)
            else:  # a sync endpoint must not block the loop: the plugin pool runs it
                response = await host.run_sync(route.handler, request)
                if inspect.isawaitable(response):
                    response = await response
        except Exception:
            log.exception("plugin route %s of plugin %r failed", path, route.plugin_id)
            return error_response(ClawgateError(f"plugin route {path} failed"))
        finally:
            lease.release()
            gateway.runtime.metrics.observe("http_request_seconds",
                                            time.perf_counter() - started, route="plugin")
        if not isinstance(response, Response):
            return error_response(ClawgateError(f"plugin route {path} returned no response"))
        return response

    return serve


def channel_webhooks(gateway: Services, limit: int) -> Endpoint:
    """``/channels/<channel>/<account>/<path>``: a platform calling a channel plugin (Telegram's
    webhook, Slack's Events API, the webhook channel's inbound). The plugin authenticates the
    request itself (a signature, a secret header); the core reads the body within ``limit``."""

    async def serve(request: Request) -> Response:
        channels = gateway.runtime.channels
        try:
            if channels is None:
                raise NotFound("this gateway runs no channels")
            body = await read_body(request, limit,
                                   gateway.settings.config.gateway.body_timeout_s)
            answer = await channels.webhook(
                str(request.path_params["channel"]), str(request.path_params["account"]),
                WebhookRequest(request.method, str(request.path_params.get("path", "")),
                               {k.lower(): v for k, v in request.headers.items()}, body,
                               dict(request.query_params)))
        except ClawgateError as exc:
            return error_response(exc)
        except Exception:
            log.exception("channel webhook %s failed", request.url.path)
            return internal_error()
        return JSONResponse(answer.body, status_code=answer.status, headers=dict(answer.headers))

    return serve
