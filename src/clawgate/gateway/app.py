"""The Gateway: the composition root of one running gateway.

It builds the runtime (plugin host, store, engine), the hub (WebSocket fan-out), the log ring,
the credentials and the route table, and runs them in one lifespan. Nothing here is
module-level state (I6): two gateways in one process each have their own of everything.
Background work (ticks, health, the relay of engine events) lives in one task group owned by
the lifespan. The lifecycle is one value, ``state``: starting -> ready -> draining -> stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute, Route, WebSocketRoute

from clawgate import __version__
from clawgate import config as config_module
from clawgate.config import Settings
from clawgate.diagnostics.lag import LagMonitor
from clawgate.diagnostics.metrics import Metrics, trim_heap
from clawgate.diagnostics.series import Series
from clawgate.errors import AuthError, ClawgateError, ConfigError, RateLimited
from clawgate.gateway import (
    endpoints,
    openai_api,
    openai_chat,
    openai_responses,
    protocol,
    serving,
)
from clawgate.gateway.auth import Credentials, FailureLimiter, resolve_credentials
from clawgate.gateway.control_ui import ControlUi
from clawgate.gateway.http import RESERVED_PATHS, OriginGuard, bearer, client_address
from clawgate.gateway.hub import Hub
from clawgate.gateway.logfeed import LogFeed
from clawgate.gateway.logring import SERVING, LogRing
from clawgate.gateway.methods import RESERVED
from clawgate.gateway.methods.system import health_summary
from clawgate.gateway.policy import WsPolicy
from clawgate.gateway.relay import relay
from clawgate.gateway.rpc import PAIRING, READ, GatewayState
from clawgate.gateway.ws import asgi_endpoint
from clawgate.gateway.ws import endpoint as ws_endpoint
from clawgate.plugins.hooks import Hook
from clawgate.plugins.host import COUNTERS, Generation
from clawgate.runtime import Runtime
from clawgate.types import now_ms

if TYPE_CHECKING:
    import uvicorn  # serving decides how uvicorn is imported (without its CLI)

log = logging.getLogger("clawgate.gateway")

GATEWAY_COUNTERS = (*COUNTERS, "ws_connections_total", "ws_requests_total",
                    "ws_slow_consumers_total", "ws_connections_refused_total")
PROBE = ["GET", "HEAD"]
TRIM_CHECK_S = 2.0
TRIM_AFTER_CLOSED = 256  # connections gone since the last look that make a heap trim worth it
CHANNEL_FLUSH_S = 5.0
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
OPENAI_ROUTES: tuple[tuple[str, tuple[str, ...], endpoints.Handler], ...] = (
    ("/chat/completions", ("POST",), openai_chat.completions),
    ("/responses", ("POST",), openai_responses.responses),
    ("/models", ("GET", "HEAD"), openai_api.models),
    ("/models/{model_id:path}", ("GET", "HEAD"), openai_api.model),
)


class Gateway:
    """One running gateway. ``app`` is its ASGI application; ``serve()`` runs it."""

    def __init__(self, settings: Settings, *, env: Mapping[str, str] | None = None,
                 host: str | None = None, port: int | None = None,
                 drain_deadline_s: float = 10.0, log_file: Path | None = None) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.bind = host or settings.config.gateway.bind
        self.port = settings.config.gateway.port if port is None else port
        self.drain_deadline_s = drain_deadline_s
        self.version = __version__
        self.metrics = Metrics(GATEWAY_COUNTERS)
        ui = settings.config.gateway.control_ui
        self.control_ui = ControlUi(ui)  # reads the UI's files now, before anything serves
        self.runtime = Runtime(settings, env=self.env, metrics=self.metrics,
                               reserved_methods=RESERVED,
                               reserved_paths=(*RESERVED_PATHS, *self.control_ui.reserved()),
                               channels=True, cron=True, drain_deadline_s=drain_deadline_s)
        self.policy = WsPolicy.from_config(settings.config.gateway.ws, self.env)
        self.hub = Hub(self.policy, self.metrics, version=__version__)
        self.series = Series(self.metrics, capacity=ui.samples, interval_s=ui.sample_interval_s,
                             connections=lambda: len(self.hub.joined))
        if self.runtime.cron is not None:  # cron and heartbeat events reach READ clients
            self.runtime.cron.listen(self._cron_event)
        if self.runtime.channels is not None:
            self.runtime.channels.listen_pairing(self._pairing_event)
        self.log_ring = LogRing(owner=self)
        self.log_feed = LogFeed(self.log_ring, self.hub, self.metrics)
        self.log_file = log_file
        self.limiter = FailureLimiter()
        self.lag = LagMonitor(self.metrics, self.runtime.timeline,
                              describe=self.runtime.host.describe_frame)
        self.credentials = Credentials("token", None)
        self.state: GatewayState = "starting"
        self.started_at = now_ms()
        self._stop = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self.check_bind()
        self.app = self._build_app()

    def _cron_event(self, event: str, payload: dict[str, Any]) -> None:
        self.hub.broadcast(event, payload, scope=READ)

    def _pairing_event(self, payload: dict[str, Any]) -> None:
        """A pairing request was created or decided: to whoever may list them (pairing scope)."""
        self.hub.broadcast("channels.pairing", payload, scope=PAIRING)

    def check_bind(self) -> None:
        """Refuse to listen beyond loopback without authentication."""
        if self.settings.config.gateway.auth.mode != "none":
            return
        try:
            loopback = ipaddress.ip_address(self.bind).is_loopback
        except ValueError:
            loopback = self.bind == "localhost"
        if not loopback:
            raise ConfigError(
                f"refusing to bind {self.bind} with gateway.auth.mode = \"none\": a "
                "non-loopback listener needs a token or password",
                path="gateway.auth.mode",
            )

    # -- state -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def draining(self) -> bool:
        return self.state == "draining"

    @property
    def uptime_ms(self) -> int:
        return now_ms() - self.started_at

    @property
    def auth_mode(self) -> str:
        return self.credentials.mode

    # -- authentication ----------------------------------------------------------------------

    def authorize(self, request: Request) -> None:
        """An HTTP request must carry the gateway's credentials as a bearer token.

        The right token always passes, lockout or not; a missing one is refused without
        counting; a wrong one counts toward its address's lockout (``FailureLimiter``).
        """
        presented = bearer(request)
        if self.credentials.check(presented):
            return
        if not presented:
            raise AuthError("missing or invalid bearer token" if request.headers.get(
                "authorization") else "authentication required: send 'Authorization: Bearer "
                "<token>'")
        address = client_address(request)
        wait = self.limiter.retry_after(address)
        if wait > 0:
            raise RateLimited("too many failed authentication attempts", retry_after_s=wait)
        self.limiter.failed(address, presented)
        raise AuthError("missing or invalid bearer token")

    def check_connect(self, address: str, params: protocol.ConnectParams) -> None:
        """A WebSocket ``connect`` must present the gateway's token or password (the same
        rules as ``authorize``: the right secret always passes, a missing one never counts)."""
        if self.credentials.mode == "none":
            return
        kind, presented = protocol.presented_secret(params, self.credentials.mode)
        if self.credentials.check(presented):
            return
        if presented:
            wait = self.limiter.retry_after(address)
            if wait > 0:
                raise protocol.rate_limited(wait)
            self.limiter.failed(address, presented)
        raise protocol.unauthorized(kind, presented)

    # -- the route table ---------------------------------------------------------------------

    def _build_app(self) -> OriginGuard:
        probe = endpoints.probes(self)
        routes: list[BaseRoute] = [
            Route("/health", probe["health"], methods=PROBE),
            Route("/healthz", probe["health"], methods=PROBE),
            Route("/ready", probe["ready"], methods=PROBE),
            Route("/readyz", probe["ready"], methods=PROBE),
            Route("/startup", probe["startup"], methods=PROBE),
            Route("/startupz", probe["startup"], methods=PROBE),
            Route("/metrics", probe["metrics"], methods=["GET"]),
            # OriginGuard serves WebSocket connections to "/" before the router (see there);
            # the route stays in the table, which is what the gateway serves.
            WebSocketRoute("/", ws_endpoint(self)),
            Route("/channels/{channel}/{account}/{path:path}", endpoints.channel_webhooks(
                self, self.settings.config.gateway.max_body_bytes), methods=ANY_METHOD),
        ]
        routes += self.control_ui.routes()  # the dashboard: "/" and "/ui/..." by default
        direct: dict[str, endpoints.Endpoint] = {}  # exact paths the guard serves itself
        for prefix in ("/v1", "/openclaw/v1"):
            for path, methods, handler in OPENAI_ROUTES:
                endpoint = endpoints.openai(self, prefix + path, methods, handler)
                routes.append(Route(prefix + path, endpoint, methods=ANY_METHOD))
                if "{" not in path:
                    direct[prefix + path] = endpoint
        routes.append(Route("/{path:path}", endpoints.plugin_routes(self), methods=ANY_METHOD))
        loopback = self.bind in ("localhost", "::1") or self.bind.startswith("127.")
        # The WebSocket control plane at "/" and the OpenAI endpoints are served by the guard
        # itself (see OriginGuard); their routes stay in the table, which is what it serves.
        return OriginGuard(Starlette(routes=routes, lifespan=self.lifespan), owner=self,
                           websocket=asgi_endpoint(self), direct=direct,
                           allowed=self.settings.config.gateway.allowed_origins,
                           loopback_bind=loopback
                           and self.settings.config.gateway.auth.mode == "none")

    # -- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """Start everything, serve, then drain and stop in reverse order."""
        SERVING.set(self)  # tasks started here (ticks, relay) log as this gateway
        self.credentials = await asyncio.to_thread(
            resolve_credentials, self.settings.config.gateway.auth, self.settings.state_dir,
            self.env)
        if self.credentials.generated:
            print(f"clawgate: generated gateway token (stored in "
                  f"{self.settings.state_dir / 'gateway.token'}): {self.credentials.secret}",
                  flush=True)
        self.log_ring.attach()
        try:
            async with self.runtime:
                for problem in self.runtime.problems():
                    log.warning("start-up: %s", problem)
                trusted = self.runtime.trusted()
                if trusted:
                    log.info("plugins from outside the package, running as trusted code in "
                             "this process: %s", "; ".join(trusted))
                async with asyncio.TaskGroup() as tasks:
                    self._tasks = tasks
                    tasks.create_task(self._tick(), name="gateway-tick")
                    tasks.create_task(self._relay(), name="gateway-relay")
                    tasks.create_task(self.lag.run(self._stop), name="gateway-loop-lag")
                    tasks.create_task(self._trim(), name="gateway-heap-trim")
                    tasks.create_task(self._sample(), name="gateway-metrics-sample")
                    tasks.create_task(self.log_feed.run(self._stop), name="gateway-logs-feed")
                    self.state = "ready"
                    await self._hook(Hook.GATEWAY_START, gateway=self)
                    try:
                        yield
                    finally:
                        await self._shutdown()
        finally:
            self.state = "stopped"
            self.log_ring.detach()

    def _announce_shutdown(self) -> None:
        """Enter draining: not ready, no new work, clients told once."""
        if self.state in ("draining", "stopped"):
            return
        self.state = "draining"
        self.hub.broadcast("shutdown", {"reason": "gateway stopping"})

    async def _shutdown(self) -> None:
        self._announce_shutdown()
        await self._hook(Hook.GATEWAY_STOP, gateway=self, reason="shutdown")
        await self.runtime.stop_schedules()  # no job or heartbeat starts a turn while draining
        await self.runtime.engine.aclose(self.drain_deadline_s)
        if self.runtime.channels is not None:  # the replies of drained runs, while we can
            await self.runtime.channels.flush(CHANNEL_FLUSH_S)
        for connection in list(self.hub.open):
            await connection.close(1012, "gateway shutting down")
        self._stop.set()

    async def _tick(self) -> None:
        """``tick {ts}`` every ``policy.tick_interval_s``, a ``health`` event every few ticks."""
        ticks = 0
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.policy.tick_interval_s)
            except TimeoutError:
                self.hub.broadcast("tick", {"ts": now_ms()})
                ticks += 1
                if ticks % self.policy.health_every_ticks == 0 and self.hub.joined:
                    self.hub.versions["health"] += 1
                    self.hub.broadcast("health", await health_summary(self),
                                       state=dict(self.hub.versions))

    async def _trim(self) -> None:
        """After many connections have gone, give their freed memory back to the OS: without
        it the process stays at its peak size although the memory is free (I12)."""
        high = 0
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TRIM_CHECK_S)
            now = len(self.hub.open)
            high = max(high, now)
            if high - now >= TRIM_AFTER_CLOSED:
                await asyncio.to_thread(trim_heap)
                high = now

    async def _sample(self) -> None:
        """One sample of the metrics every ``control_ui.sample_interval_s`` into the ring the
        Overview charts draw (``metrics.series``): a timer, never work per turn."""
        self.series.start(now_ms())
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.series.interval_s)
            if not self._stop.is_set():
                self.series.sample(now_ms())

    async def _relay(self) -> None:
        forward = asyncio.get_running_loop().create_task(
            relay(self.runtime.engine.bus, self.hub), name="gateway-relay-loop")
        try:
            await self._stop.wait()
        finally:
            forward.cancel()
            await asyncio.gather(forward, return_exceptions=True)

    async def reload_plugins(self, *, force: bool = False) -> tuple[Generation, bool]:
        """Re-read the config file and rescan plugins; swap in a new generation if the plan
        changed. Work already admitted finishes on the generation it started with (I2).

        Only the plugin side is hot: ``[plugins]`` and plugin files. Agents, engine and gateway
        settings need a restart. An invalid config, or a new generation that would lose a
        plugin the running one has loaded, raises ConfigError and changes nothing (``force``
        accepts a partial generation).
        """
        settings = await asyncio.to_thread(
            config_module.load, self.env, path=self.settings.config_path)
        host = self.runtime.host
        before = host.current
        plugins_only = host.settings.config.model_copy(
            update={"plugins": settings.config.plugins})
        generation = await host.reload(dataclasses.replace(host.settings, config=plugins_only),
                                       force=force)
        changed = generation is not before
        if changed:
            log.info("plugins reloaded: generation %d -> %d", before.id, generation.id)
            if self.runtime.channels is not None:
                await self.runtime.channels.reload()
        return generation, changed

    async def _hook(self, hook: Hook, **values: Any) -> None:
        try:
            await self.runtime.host.current.registry.hooks.call(hook, **values)
        except Exception as exc:  # observe hooks never stop the gateway
            log.warning("%s hook failed: %s", hook, exc)

    # -- serving -----------------------------------------------------------------------------

    def server_config(self, **overrides: Any) -> uvicorn.Config:
        """uvicorn's config for this gateway (``serving.uvicorn_config``): what ``serve()``
        runs, and what the tests' servers run."""
        return serving.uvicorn_config(
            self.app, self.settings.config.gateway, max_frame=self.policy.max_payload + 1024,
            drain_deadline_s=self.drain_deadline_s, **overrides)

    async def serve(self, on_ready: Callable[[], None] | None = None) -> None:
        """Bind, start, announce, serve until SIGINT/SIGTERM, drain in-flight turns, return.

        The port is taken first (a port in use is a ConfigError before anything starts), then
        the runtime starts (a failure raises its ClawgateError), then "listening on" is printed
        and ``on_ready`` is called. A signal during start-up stops the start and returns
        (exit 0).
        """
        sock = serving.bind(self.bind, self.port)
        self.port = int(sock.getsockname()[1])

        def started() -> None:
            self._announce()
            if on_ready is not None:
                on_ready()

        server = serving.Server(self.server_config(), on_started=started)
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        aborted = False

        def on_signal() -> None:
            nonlocal aborted
            if self.state == "starting" and main is not None:
                # Plugins may still be loading: stop the start itself (probes are killed).
                if not aborted:
                    aborted = True
                    log.warning("signal received during start-up: stopping")
                    main.cancel()
                return
            self._request_exit(server)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        try:
            async with self.lifespan():
                await server.serve(sockets=[sock])
        except asyncio.CancelledError:
            if not aborted or main is None:
                raise
            main.uncancel()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            sock.close()

    def _announce(self) -> None:
        print(f"clawgate: gateway listening on http://{self.bind}:{self.port} "
              f"(state {self.settings.state_dir})", flush=True)

    def _request_reload(self) -> None:
        """SIGHUP: reload plugins in the background task group; a bad config is logged."""

        async def reload() -> None:
            try:
                await self.reload_plugins()
            except ClawgateError as exc:
                log.error("plugin reload refused, keeping the running plugins: %s", exc)

        if self._tasks is not None and self.ready:
            self._tasks.create_task(reload(), name="gateway-reload")

    def _request_exit(self, server: uvicorn.Server) -> None:
        if server.should_exit:
            server.force_exit = True
            return

        async def drain() -> None:
            # uvicorn closes WebSockets before the lifespan ends: say goodbye while they listen.
            self._announce_shutdown()
            await self.runtime.stop_schedules()
            await self.runtime.engine.aclose(self.drain_deadline_s)
            server.should_exit = True

        if self._tasks is not None:
            self._tasks.create_task(drain(), name="gateway-drain")
        else:
            server.should_exit = True
