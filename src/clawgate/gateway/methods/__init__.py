"""The RPC method table of the WebSocket control plane, and the one dispatcher.

Core methods live by family in ``sessions``, ``chat``, ``agents`` and ``system``; each module
exports a ``METHODS`` tuple. Plugin methods (``api.register_method``) come from the plugin
generation captured when the request is admitted (I4) and are dispatched exactly like core
ones: same scope check, same error mapping, sync handlers run on a worker thread.

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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from clawgate.errors import ClawgateError
from clawgate.gateway.protocol import RpcError, error_shape, has_scope, invalid
from clawgate.plugins.host import Generation

if TYPE_CHECKING:
    from clawgate.gateway.app import Gateway
    from clawgate.gateway.ws import Connection

log = logging.getLogger("clawgate.gateway.rpc")

READ, WRITE, ADMIN = "operator.read", "operator.write", "operator.admin"
Handler = Callable[["CallContext", Any], Awaitable[Any]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CoreMethod:
    """One built-in method: its name, the scope a caller needs, and its handler."""

    name: str
    scope: str
    handler: Handler


@dataclass(slots=True)
class CallContext:
    """What a core handler gets besides its params: the gateway, the calling connection, the
    request id and the plugin generation captured at admission."""

    gateway: Gateway
    conn: Connection
    req_id: str
    method: str
    generation: Generation
    replied: bool = False

    def reply(self, payload: Any) -> None:
        """Send a response now; the handler may keep running and answer again later."""
        self.conn.respond(self.req_id, payload)
        self.replied = True


@dataclass(frozen=True, slots=True)
class PluginCallContext:
    """The ``context`` a plugin method handler receives.

    ``broadcast(event, payload)`` sends an event to every connection holding
    ``operator.read``; it may be called from the worker thread a sync handler runs on.
    """

    method: str
    conn_id: str
    client_id: str
    role: str
    scopes: frozenset[str]
    plugin_id: str
    broadcast: Callable[[str, Any], None] = field(repr=False)


@functools.cache
def core_methods() -> Mapping[str, CoreMethod]:
    """Every core method by name (built once; the table is immutable)."""
    from clawgate.gateway.methods import agents, chat, sessions, system

    table = {m.name: m for mod in (system, sessions, chat, agents) for m in mod.METHODS}
    return MappingProxyType(table)


def core_method_names() -> frozenset[str]:
    """Names no plugin may register: every core method, and ``connect``."""
    return frozenset(core_methods()) | {"connect"}


def method_names(generation: Generation) -> list[str]:
    """``features.methods``: core and the generation's plugin methods, sorted."""
    return sorted(set(core_methods()) | set(generation.registry.methods))


def attached(gateway: Gateway, name: str, factory: Callable[[], T]) -> T:
    """Per-gateway state of the control plane, created on first use and kept on the gateway
    object (never in a module global: two gateways in one process stay apart)."""
    value: T | None = getattr(gateway, name, None)
    if value is None:
        value = factory()
        setattr(gateway, name, value)
    return value


async def dispatch(gateway: Gateway, conn: Connection, req_id: str, method: str,
                   params: Any) -> None:
    """Serve one request and send its response(s); never raises (except cancellation)."""
    started = time.perf_counter()
    gateway.metrics.inc("ws_requests_total")
    try:
        await _call(gateway, conn, req_id, method, params)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not isinstance(exc, ClawgateError):
            log.exception("method %s failed", method)
        conn.respond_error(req_id, error_shape(exc))
    finally:
        if method in core_methods():
            gateway.metrics.observe("ws_request_seconds", time.perf_counter() - started,
                                    method=method)


async def _call(gateway: Gateway, conn: Connection, req_id: str, method: str,
                params: Any) -> None:
    if method == "connect":
        raise invalid("connect is only valid as the first request")
    generation = gateway.plugins.current  # captured once: this call uses nothing else (I4)
    core = core_methods().get(method)
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
    lease = gateway.plugins.checkout(generation)
    try:
        context = PluginCallContext(
            method, conn.conn_id, conn.client_id, conn.role, conn.scopes, plugin.plugin_id,
            broadcast=_threadsafe_broadcast(gateway))
        args = ({} if params is None else params, context)
        if inspect.iscoroutinefunction(plugin.handler):
            result = await plugin.handler(*args)
        else:
            result = await gateway.plugins.run_sync(plugin.handler, *args)
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


def _check_scope(conn: Connection, method: str, scope: str) -> None:
    if not has_scope(conn.scopes, scope):
        raise RpcError("FORBIDDEN", f"missing scope: {scope}",
                       details={"method": method, "scope": scope})


def _threadsafe_broadcast(gateway: Gateway) -> Callable[[str, Any], None]:
    from clawgate.gateway.ws import broadcast

    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def send(event: str, payload: Any) -> None:
        if threading.get_ident() == loop_thread:
            broadcast(gateway, event, payload, scope=READ)
        else:
            loop.call_soon_threadsafe(functools.partial(broadcast, gateway, event, payload,
                                                        scope=READ))

    return send
