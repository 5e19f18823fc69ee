"""The RPC method table of the WebSocket control plane, and the one dispatcher.

Core methods live by family in ``system``, ``sessions`` (and ``compact``), ``chat``, ``agents``
and ``channels``; each module
exports a ``METHODS`` tuple built on :mod:`clawgate.gateway.rpc`. Plugin methods
(``api.register_method``) come from the plugin generation captured when the request is admitted
(I4) and are dispatched exactly like core ones: same scope check, same error mapping, sync
handlers on the plugin pool.

A handler is ``async handler(ctx, params) -> payload``. It may answer early with
``ctx.reply(payload)`` (the ``agent`` method's ``accepted`` response) and keep working; what it
returns is then a second response with the same id, or nothing when it returns None.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from clawgate.errors import ClawgateError, RpcError
from clawgate.gateway.methods import agents, channels, chat, compact, sessions, system
from clawgate.gateway.protocol import error_shape, has_scope, invalid
from clawgate.gateway.rpc import READ, CallContext, Caller, CoreMethod, Services
from clawgate.plugins.host import Generation
from clawgate.plugins.registry import MethodContext

log = logging.getLogger("clawgate.gateway.rpc")

CORE: Mapping[str, CoreMethod] = MappingProxyType(
    {m.name: m for family in (system, sessions, compact, chat, agents, channels)
     for m in family.METHODS})
# Names no plugin may register: every core method, and ``connect``.
RESERVED = frozenset(CORE) | {"connect"}


def method_names(generation: Generation) -> list[str]:
    """``features.methods``: core and the generation's plugin methods, sorted."""
    return sorted(set(CORE) | set(generation.registry.methods))


async def dispatch(gateway: Services, conn: Caller, req_id: str, method: str,
                   params: Any) -> None:
    """Serve one request and send its response(s); never raises (except cancellation)."""
    started = time.perf_counter()
    metrics = gateway.runtime.metrics
    metrics.inc("ws_requests_total")
    try:
        await _call(gateway, conn, req_id, method, params)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not isinstance(exc, ClawgateError):
            log.exception("method %s failed", method)
        conn.respond_error(req_id, error_shape(exc))
    finally:
        if method in CORE:
            metrics.observe("ws_request_seconds", time.perf_counter() - started, method=method)


async def _call(gateway: Services, conn: Caller, req_id: str, method: str,
                params: Any) -> None:
    if method == "connect":
        raise invalid("connect is only valid as the first request")
    host = gateway.runtime.host
    generation = host.current  # captured once: this call uses nothing else (I4)
    core = CORE.get(method)
    if core is not None:
        _check_scope(conn, method, core.scope)
        ctx = CallContext(gateway, conn, req_id, method, generation)
        result = await core.handler(ctx, params)
        if not (ctx.replied and result is None):
            conn.respond(req_id, result)
        return
    plugin = generation.registry.methods.get(method)
    if plugin is None:
        raise invalid(f"unknown method: {method}")
    _check_scope(conn, method, plugin.scope)
    lease = host.checkout(generation)
    try:
        context = MethodContext(
            method, conn.conn_id, conn.client_id, conn.role, conn.scopes, plugin.plugin_id,
            broadcast=_threadsafe_broadcast(gateway))
        args = ({} if params is None else params, context)
        if inspect.iscoroutinefunction(plugin.handler):
            result = await plugin.handler(*args)
        else:
            result = await host.run_sync(plugin.handler, *args)
            if inspect.isawaitable(result):
                result = await result
    except (ValueError, TypeError) as exc:
        raise invalid(f"{method}: {exc}") from None
    except ClawgateError:
        raise
    except Exception as exc:
        log.warning("plugin %r method %s failed: %r", plugin.plugin_id, method, exc)
        raise RpcError("UNAVAILABLE", f"plugin method {method} failed: {type(exc).__name__}",
                       details={"pluginId": plugin.plugin_id}) from None
    finally:
        lease.release()
    conn.respond(req_id, result)


def _check_scope(conn: Caller, method: str, scope: str) -> None:
    if not has_scope(conn.scopes, scope):
        raise RpcError("FORBIDDEN", f"missing scope: {scope}",
                       details={"method": method, "scope": scope})


def _threadsafe_broadcast(gateway: Services) -> Callable[[str, Any], None]:
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    hub = gateway.hub

    def send(event: str, payload: Any) -> None:
        if threading.get_ident() == loop_thread:
            hub.broadcast(event, payload, scope=READ)
        else:
            loop.call_soon_threadsafe(functools.partial(hub.broadcast, event, payload,
                                                        scope=READ))

    return send
