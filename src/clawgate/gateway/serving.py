"""How a Gateway is put on a socket: the bound listener, uvicorn's per-connection knobs and the
read timeouts that keep unauthenticated connections from being held forever.

``bind()`` takes the port before anything is announced, so a port in use or out of range is
one clear error. ``uvicorn_config()`` is the one place the server's knobs are set, for
``clawgate gateway`` and for the tests' servers alike:

- proxy headers (``X-Forwarded-For``) are honoured only from ``gateway.trusted_proxies``; with
  none configured the client address is the socket peer (uvicorn would otherwise trust
  loopback, so anything on the machine could choose the address that lockouts key on);
- ``timed_protocol()`` closes a connection that has not sent a complete request head (request
  line and headers, WebSocket upgrades included) within ``gateway.header_timeout_s``, from its
  first byte or from the moment it connected: uvicorn's own keep-alive timer only runs between
  requests, so a client trickling headers (slowloris) or a half-sent upgrade was held forever;
- every accepted socket gets a fixed kernel send buffer (``gateway.send_buffer_bytes``), so a
  client that stops reading costs at most that much kernel memory before the gateway's own
  per-connection budget (512 KiB of queued frames) cuts it off;
- WebSocket: no per-message compression unless ``gateway.ws.compression`` (a zlib context pair
  costs ~300 KB per connection), a small inbound queue, no protocol pings (the gateway ticks).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib.util
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any, Literal

from starlette.types import ASGIApp

from clawgate.config import GatewayConfig
from clawgate.errors import ConfigError


def _uvicorn_without_cli() -> None:
    """Make ``import uvicorn`` cost what the gateway uses of it, not uvicorn's command line.

    uvicorn's package ``__init__`` imports ``uvicorn.main`` (click, the reload and multiprocess
    supervisors, watchfiles, multiprocessing) only to offer ``uvicorn.run`` and ``uvicorn.main``,
    and every ``import uvicorn.<anything>`` runs that ``__init__`` first: about a tenth of the
    gateway's start-up and 2-3 MiB resident for code that never runs. There is no import path
    into uvicorn that skips it, so, once per process and only when nothing imported uvicorn yet,
    this puts the package module in ``sys.modules`` built from its own spec (``__path__``,
    ``__file__`` and ``__spec__`` as the import system makes them) without running its
    ``__init__``, and gives it the same names: ``__version__``, ``Config`` and ``Server`` at
    once (from ``uvicorn.config`` and ``uvicorn.server``, where ``__init__`` gets them), and
    ``main`` and ``run`` on first access (PEP 562 ``__getattr__``, importing ``uvicorn.main``
    then). Code that imports uvicorn afterwards sees an equivalent package. The cost of the trick
    is that it depends on that ``__init__`` staying a list of re-exports: the test suite checks
    that the package we build offers every name of ``uvicorn.__all__``.
    """
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.submodule_search_locations is None:
        return  # not a package we know: let the real import say what is wrong
    package = importlib.util.module_from_spec(spec)
    sys.modules["uvicorn"] = package
    try:
        from uvicorn._version import __version__
        from uvicorn.config import Config
        from uvicorn.server import Server
    except BaseException:
        del sys.modules["uvicorn"]
        raise

    def cli(name: str) -> Any:
        if name in ("main", "run"):
            import uvicorn.main  # lazy: the command line nobody here asked for until now

            return getattr(uvicorn.main, name)
        raise AttributeError(f"module 'uvicorn' has no attribute {name!r}")

    package.__dict__.update(__version__=__version__, Config=Config, Server=Server,
                            __all__=["main", "run", "Config", "Server"], __getattr__=cli)


_uvicorn_without_cli()

import uvicorn  # noqa: E402  (after _uvicorn_without_cli, which decides what it costs)
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: E402
from uvicorn.protocols.websockets.websockets_sansio_impl import (  # noqa: E402
    WebSocketsSansIOProtocol,
)

WS_MAX_QUEUE = 4  # inbound frames uvicorn buffers per connection before it stops reading


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), not yet listening; ConfigError when it cannot be."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range (0-65535)", path="gateway.port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve bind address {host!r}: {exc.strerror}",
                          path="gateway.bind") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{host}:{port} is already in use (another gateway?); stop it or "
                              "choose another port with --port", path="gateway.port") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          path="gateway.bind") from None
    sock.set_inheritable(True)
    return sock


def timed_protocol(header_timeout_s: float, send_buffer: int = 0) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a deadline on every request head and, when
    ``send_buffer`` is set, a fixed kernel send buffer per connection."""

    class TimedHttpProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            if send_buffer and sock is not None:
                # Without a fixed size the kernel grows a stalled client's send buffer up to
                # net.ipv4.tcp_wmem's maximum (4 MiB): memory outside every budget of ours.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _expired(self) -> None:
            self._head_timer = None
            # Only a connection still reading a request head is cut: one whose request is
            # being served (the cycle is running) keeps going.
            if self.cycle is None or self.cycle.response_complete:
                if not self.transport.is_closing():
                    self.transport.close()

    return TimedHttpProtocol


class Inbox:
    """What uvicorn's WebSocket protocol uses of an ``asyncio.Queue`` (``put_nowait``,
    ``get``, ``empty``) at a fraction of its size: a Queue is three deques (~2.3 KB) per
    connection, and the protocol holds at most a message or two (it stops reading until
    the app takes the one it has)."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class WsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, leaner per connection (I12: 5,000 idle clients
    must fit the budget): a small inbox instead of an ``asyncio.Queue``, and the handshake's
    request and response objects dropped once they are used. A text frame that is not valid
    UTF-8 is closed with 1007 and a reason that says so (uvicorn logs a traceback and closes
    without one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        self.request = None  # type: ignore[assignment]  # its headers are in the ASGI scope

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            self.response = None  # type: ignore[assignment]  # sent

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                self.conn.send_close(1007, "text frame is not valid UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()


def uvicorn_config(app: ASGIApp, config: GatewayConfig, *, max_frame: int,
                   drain_deadline_s: float, lifespan: Literal["on", "off"] = "off",
                   **overrides: Any) -> uvicorn.Config:
    """The uvicorn config of a gateway's ``app``: the one place its server knobs are set
    (``Gateway.server_config`` fills in its own values)."""
    trusted = list(config.trusted_proxies)
    options: dict[str, Any] = {
        "lifespan": lifespan, "log_level": "warning", "access_log": False,
        "http": timed_protocol(config.header_timeout_s, config.send_buffer_bytes),
        "ws": WsProtocol,
        "ws_max_size": max_frame,
        "ws_max_queue": WS_MAX_QUEUE,
        "ws_ping_interval": None,
        "ws_per_message_deflate": config.ws.compression,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted or [],
        "server_header": False,
        "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": int(drain_deadline_s) + 5,
        **overrides,
    }
    return uvicorn.Config(app, **options)


class Server(uvicorn.Server):
    """uvicorn without its own signal capture (it re-raises the signal after a graceful
    shutdown, which would turn a clean SIGTERM drain into a non-zero exit); ``on_started``
    runs once it accepts connections."""

    def __init__(self, config: uvicorn.Config,
                 on_started: Callable[[], None] | None = None) -> None:
        self._exit_wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        super().__init__(config)
        self._on_started = on_started

    # uvicorn's main loop wakes ten times a second to look at ``should_exit``; an idle
    # gateway then spends most of its CPU there. Here it wakes once a second (the Date
    # header's resolution) and at once when ``should_exit`` is set, from any thread.
    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        wake = self._exit_wake
        if value and wake is not None:
            loop, event = wake
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing waits
                loop.call_soon_threadsafe(event.set)

    async def main_loop(self) -> None:
        event = asyncio.Event()
        self._exit_wake = (asyncio.get_running_loop(), event)
        if self.should_exit:
            event.set()
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # every pass is a second: on_tick refreshes the Date header
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 1.0)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
