"""The Gateway: one object that owns the plugin host, the store, the engine and the servers.

Nothing here is module-level state (I6): two gateways in one process each have their own
host, store, metrics and connections. Start-up and shutdown live in one lifespan; background
work (ticks, health broadcasts) lives in one task group owned by that lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette

from clawgate import __version__
from clawgate import config as config_module
from clawgate.agents.engine import Engine
from clawgate.config import Settings
from clawgate.diagnostics.metrics import Metrics
from clawgate.diagnostics.timeline import Timeline
from clawgate.errors import ClawgateError, ConfigError
from clawgate.gateway.auth import Credentials, FailureLimiter, resolve_credentials
from clawgate.gateway.http import RESERVED_PATHS
from clawgate.plugins.host import COUNTERS, Generation, PluginHost
from clawgate.sessions.store import SessionStore

log = logging.getLogger("clawgate.gateway")

GATEWAY_COUNTERS = (*COUNTERS, "ws_connections_total", "ws_requests_total")


class Gateway:
    """One running gateway. ``app`` is its ASGI application; ``serve()`` runs it."""

    def __init__(self, settings: Settings, *, env: Mapping[str, str] | None = None,
                 host: str | None = None, port: int | None = None,
                 drain_deadline_s: float = 10.0) -> None:
        self.settings = settings
        self.env = dict(os.environ if env is None else env)
        self.bind = host or settings.config.gateway.bind
        self.port = settings.config.gateway.port if port is None else port
        self.drain_deadline_s = drain_deadline_s
        self.metrics = Metrics(GATEWAY_COUNTERS)
        self.timeline = Timeline.from_env(self.env)
        from clawgate.gateway.methods import core_method_names

        self.plugins = PluginHost(
            settings, metrics=self.metrics, timeline=self.timeline,
            reserved_methods=core_method_names(), reserved_paths=RESERVED_PATHS,
        )
        self.store = SessionStore(settings.state_dir / "clawgate.db")
        self.engine = Engine(settings, self.plugins, self.store, metrics=self.metrics,
                             timeline=self.timeline)
        self.limiter = FailureLimiter()
        self.credentials = Credentials("token", None)
        self.started_at = time.time()
        self.ready = False
        self.draining = False
        self.connections: set[Any] = set()  # live WebSocket connections (gateway.ws.Connection)
        # Tunables of the WebSocket side; None means the protocol default (tests lower them).
        self.tick_interval_s: float | None = None
        self.handshake_timeout_s: float | None = None
        self.ws_max_buffered_bytes: int | None = None
        self.ws_max_queued_frames: int | None = None
        self.ws_max_payload: int | None = None
        self.log_file: str | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._on_ready: list[Callable[[], None]] = []
        self.check_bind()
        from clawgate.gateway.http import build_app

        self.app: Starlette = build_app(self)

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

    @property
    def uptime_ms(self) -> int:
        return int((time.time() - self.started_at) * 1000)

    # -- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, _app: Any = None) -> AsyncIterator[None]:
        """Start everything, serve, then drain and stop in reverse order."""
        from clawgate.gateway.methods.system import SERVING

        SERVING.set(self)  # tasks started here (ticks, relay) log as this gateway
        self.credentials = await asyncio.to_thread(
            resolve_credentials, self.settings.config.gateway.auth, self.settings.state_dir,
            self.env)
        if self.credentials.generated:
            print(f"clawgate: generated gateway token (stored in "
                  f"{self.settings.state_dir / 'gateway.token'}): {self.credentials.secret}",
                  flush=True)
        await self.store.open()
        try:
            await self.plugins.start()
            await self.engine.start()
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self._stop = asyncio.Event()
                from clawgate.gateway.ws import tick_loop

                tasks.create_task(tick_loop(self, self._stop), name="gateway-tick")
                self.ready = True
                await self._hook("gateway_start", gateway=self)
                try:
                    yield
                finally:
                    await self._shutdown()
        finally:
            await self.plugins.aclose()
            await self.store.close()
            self.timeline.close()

    def _announce_shutdown(self) -> None:
        """Enter draining: not ready, no new work, clients told once."""
        self.ready = False
        if self.draining:
            return
        self.draining = True
        from clawgate.gateway.ws import broadcast

        broadcast(self, "shutdown", {"reason": "gateway stopping"})

    async def _shutdown(self) -> None:
        self._announce_shutdown()
        await self._hook("gateway_stop", gateway=self, reason="shutdown")
        await self.engine.aclose(self.drain_deadline_s)
        for connection in list(self.connections):
            await connection.close(1012, "gateway shutting down")
        if self._stop is not None:
            self._stop.set()

    async def reload_plugins(self) -> tuple[Generation, bool]:
        """Re-read the config file and rescan plugins; swap in a new generation if the plan
        changed. Work already admitted finishes on the generation it started with (I2).

        Only the plugin side is hot: ``[plugins]`` and plugin files. Agents, engine and gateway
        settings need a restart. An invalid config raises ConfigError and changes nothing.
        """
        settings = await asyncio.to_thread(
            config_module.load, self.env, path=self.settings.config_path)
        before = self.plugins.current
        plugins_only = self.plugins.settings.config.model_copy(
            update={"plugins": settings.config.plugins})
        generation = await self.plugins.reload(
            dataclasses.replace(self.plugins.settings, config=plugins_only))
        changed = generation is not before
        if changed:
            log.info("plugins reloaded: generation %d -> %d", before.id, generation.id)
        return generation, changed

    async def _hook(self, name: str, **values: Any) -> None:
        try:
            await self.plugins.current.registry.hooks.call(name, **values)
        except Exception as exc:  # observe hooks never stop the gateway
            log.warning("%s hook failed: %s", name, exc)

    async def serve(self) -> None:
        """Run under uvicorn until SIGINT/SIGTERM; drain in-flight turns, then return."""
        config = uvicorn.Config(
            self.app, host=self.bind, port=self.port, lifespan="on", log_level="warning",
            ws_max_size=26_214_400, ws_ping_interval=None,
            timeout_graceful_shutdown=int(self.drain_deadline_s) + 5, access_log=False,
        )
        server = _Server(config)
        loop = asyncio.get_running_loop()
        # Our handlers first drain the engine (in-flight turns finish and their streams end),
        # then ask uvicorn to exit; a second signal forces the exit.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: self._request_exit(server))
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        try:
            await server.serve()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)

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
            await self.engine.aclose(self.drain_deadline_s)
            server.should_exit = True

        if self._tasks is not None:
            self._tasks.create_task(drain(), name="gateway-drain")
        else:
            server.should_exit = True

    def version(self) -> str:
        return __version__


class _Server(uvicorn.Server):
    """uvicorn without its own signal capture (it re-raises the signal after a graceful
    shutdown, which would turn a clean SIGTERM drain into a non-zero exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
