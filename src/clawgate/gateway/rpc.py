"""The vocabulary of RPC method handlers: scopes, :class:`CoreMethod`, :class:`CallContext`,
and :class:`Services` — what a handler may use of the gateway it serves.

Method families (``gateway/methods/*``) import only this module and the layers below; the
dispatcher (``gateway/methods/__init__.py``) and the connection (``gateway/ws.py``) sit above
them. Handlers reach the gateway through ``ctx.gateway`` (a :class:`Services`), never through
an import of the gateway's module, so the package has no import circle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from starlette.requests import Request

from clawgate.config import Settings
from clawgate.diagnostics.series import Series
from clawgate.gateway.hub import Hub
from clawgate.gateway.logfeed import LogFeed
from clawgate.gateway.logring import LogRing
from clawgate.gateway.policy import WsPolicy
from clawgate.gateway.protocol import ConnectParams, ErrorShape
from clawgate.plugins.host import Generation
from clawgate.runtime import Runtime

READ, WRITE, ADMIN = "operator.read", "operator.write", "operator.admin"
GatewayState = Literal["starting", "ready", "draining", "stopped"]
PAIRING = "operator.pairing"
APPROVALS = "operator.approvals"


class Services(Protocol):
    """What method handlers use of their gateway (the Gateway object provides it)."""

    settings: Settings
    runtime: Runtime
    hub: Hub
    policy: WsPolicy
    log_ring: LogRing
    log_feed: LogFeed  # logs.subscribe: pushed log lines
    series: Series
    log_file: Path | None
    version: str
    started_at: int  # epoch ms
    state: GatewayState

    @property
    def auth_mode(self) -> str: ...

    @property
    def ready(self) -> bool: ...

    @property
    def draining(self) -> bool: ...

    def authorize(self, request: Request) -> None:
        """Check an HTTP request's bearer token; raises AuthError or RateLimited."""
        ...

    def check_connect(self, address: str, params: ConnectParams) -> None:
        """Authenticate a ``connect``; raises ``protocol.Refusal`` when it may not."""
        ...

    @property
    def uptime_ms(self) -> int: ...

    async def reload_plugins(self, *, force: bool = False) -> tuple[Generation, bool]: ...


class Caller(Protocol):
    """The connection a request came in on, as a handler sees it."""

    conn_id: str
    role: str
    scopes: frozenset[str]

    @property
    def client_id(self) -> str: ...

    def respond(self, req_id: str, payload: Any) -> None: ...

    def respond_error(self, req_id: str, error: ErrorShape) -> None: ...


@dataclass(slots=True)
class CallContext:
    """What a core handler gets besides its params: the gateway's services, the calling
    connection, the request id and the plugin generation captured at admission (I4)."""

    gateway: Services
    conn: Caller
    req_id: str
    method: str
    generation: Generation
    replied: bool = False

    def reply(self, payload: Any) -> None:
        """Send a response now; the handler may keep running and answer again later."""
        self.conn.respond(self.req_id, payload)
        self.replied = True


Handler = Callable[[CallContext, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class CoreMethod:
    """One built-in method: its name, the scope a caller needs, and its handler."""

    name: str
    scope: str
    handler: Handler
