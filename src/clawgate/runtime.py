"""The runtime: the one place that wires plugin host -> store -> engine (-> channels, cron),
for every caller.

The gateway, the CLI, the tests and the benchmarks all build the runtime the same way::

    async with Runtime.open(settings) as runtime:
        turn = await runtime.engine.submit(Submission("hello"))

Start-up order is host, store, engine (workspaces, crash recovery), then — where a gateway
serves — channels and cron; shutdown is the reverse (cron first, so no job starts a turn while
the engine drains; then drain turns, stop plugin services, close the store). A Runtime is
built once and started once; construction is synchronous, so an owner (the Gateway) can hold
one before it serves.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

from clawgate import __version__
from clawgate.agents.engine import Engine
from clawgate.agents.fanout import Fanout
from clawgate.channels.runtime import ChannelRuntime
from clawgate.config import Settings
from clawgate.cron.service import CronService
from clawgate.diagnostics.metrics import Metrics
from clawgate.diagnostics.timeline import Timeline
from clawgate.errors import Unavailable
from clawgate.plugins.host import COUNTERS, PluginHost
from clawgate.sessions.replica import Registry, Replica, ReplicaRow
from clawgate.sessions.store import SessionStore
from clawgate.types import now_ms

DB_FILE = "clawgate.db"


class Runtime:
    """Plugin host, session store and engine of one gateway (or one CLI command)."""

    def __init__(self, settings: Settings, *, env: Mapping[str, str] | None = None,
                 metrics: Metrics | None = None, timeline: Timeline | None = None,
                 reserved_methods: frozenset[str] = frozenset(),
                 reserved_paths: tuple[str, ...] = (), services: bool = True,
                 channels: bool = False, cron: bool = False,
                 drain_deadline_s: float = 10.0) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(COUNTERS)
        self.timeline = timeline or Timeline.from_env(env or {})
        self.host = PluginHost(settings, metrics=self.metrics, timeline=self.timeline,
                               reserved_methods=reserved_methods, reserved_paths=reserved_paths)
        self.store = SessionStore(settings.store_location())
        # This process among the gateways on one store: an id and a liveness lease that
        # others probe before they take over what it owned.
        self.replica = Replica(self.store)
        self.engine = Engine(settings, self.host, self.store, metrics=self.metrics,
                             timeline=self.timeline, replica=self.replica)
        # The channel runtime (accounts, monitors, durable delivery): only where a gateway
        # serves; a CLI command has no business polling Telegram.
        self.channels = ChannelRuntime(settings, self.host, self.engine, self.metrics,
                                       env or {}, replica_id=self.replica.id) \
            if channels else None
        # Jobs and heartbeats run only where a gateway serves, like the channels.
        self.cron = CronService(self.engine, channels=self.channels,
                                metrics=self.metrics) if cron else None
        # Where a gateway serves on a shared store (PostgreSQL): the registry row other
        # replicas and `status` see, and the fan-out of engine events between replicas.
        serving = channels or cron
        self.registry = Registry(self.store.replicas, self.replica, version=__version__,
                                 owned=self.owned, clock=now_ms) \
            if serving and self.store.shared else None
        self.fanout = Fanout(self.engine.bus, self.store.events, self.store.doorbell,
                             self.metrics, replica_id=self.replica.id) \
            if serving and self.store.shared else None
        self.drain_deadline_s = drain_deadline_s
        self._services = services
        self._stack: contextlib.AsyncExitStack | None = None
        self._started_at = now_ms()

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, **options: Any) -> AsyncIterator[Runtime]:
        """Build and start a runtime for the block; it is closed on the way out."""
        runtime = cls(settings, **options)
        async with runtime:
            yield runtime

    async def start(self) -> None:
        """Open the store, start the plugin host (one scan, one build) and the engine."""
        if self._stack is not None:
            raise Unavailable("the runtime is already started")
        stack = contextlib.AsyncExitStack()
        try:
            await self.store.open()
            stack.push_async_callback(self.store.close)
            await self.replica.start()
            stack.push_async_callback(self.replica.stop)
            if self.fanout is not None:
                await self.store.doorbell.start()
                stack.push_async_callback(self.store.doorbell.stop)
                await self.fanout.start()
                stack.push_async_callback(self.fanout.stop)
            stack.callback(self.timeline.close)
            # Closed even when its start is interrupted (a signal while plugins load): the
            # start task, and any probe child it runs, end with it.
            stack.push_async_callback(self.host.aclose)
            await self.host.start(services=self._services)
            await self.engine.start()
            stack.push_async_callback(self.engine.aclose, self.drain_deadline_s)
            if self.channels is not None:
                await self.channels.start()
                stack.push_async_callback(self.channels.aclose)
            if self.cron is not None:
                await self.cron.start()
                stack.push_async_callback(self.cron.stop)
            if self.registry is not None:
                await self.registry.start()
                stack.push_async_callback(self.registry.stop)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    def owned(self) -> list[str]:
        """The lease names this gateway holds for others to see: ``cron`` when it leads, the
        channel accounts it owns."""
        names = ["cron"] if self.cron is not None and self.cron.leading else []
        return names + (self.channels.owned() if self.channels is not None else [])

    async def replicas(self) -> list[dict[str, Any]]:
        """The gateways on this store (``status``): the registry's live rows, or this one
        alone where there is no registry (SQLite, a CLI command)."""
        if self.registry is not None:
            with contextlib.suppress(Exception):  # the store is down: show this one
                return [r.wire(self.replica.id) for r in await self.registry.rows()]
        row = ReplicaRow(self.replica.id, socket.gethostname(), os.getpid(), __version__,
                         self._started_at, now_ms(), tuple(self.owned()))
        return [row.wire(self.replica.id)]

    async def stop_schedules(self) -> None:
        """Stop cron jobs and heartbeats now (the first step of a shutdown: nothing new may be
        started while the engine drains)."""
        if self.cron is not None:
            await self.cron.stop()
    def problems(self) -> list[str]:
        """What start-up warns about, one line each: plugin diagnostics (bad config, an
        unknown id in ``plugins.entries``, a ``load_paths`` folder that does not exist, a
        plugin that failed to load), discovery warnings, and agents whose model needs a
        provider that no loaded plugin provides."""
        generation = self.host.current
        lines = [d.message for d in generation.registry.diagnostics]
        lines += list(generation.snapshot.warnings)
        for agent in self.engine.roster:
            missing = dict.fromkeys(ref.provider for ref in agent.models
                                    if generation.registry.provider(ref.provider) is None)
            for provider in missing:
                refs = ", ".join(str(r) for r in agent.models if r.provider == provider)
                lines.append(f"agent {agent.id!r}: no loaded plugin provides {provider!r} "
                             f"(needed by {refs})")
        return list(dict.fromkeys(lines))

    def trusted(self) -> list[str]:
        """Loaded plugins from outside the package (``id (origin path)``): trusted code that
        runs in this process with the gateway's rights (docs/plugins.md, trust model)."""
        records = self.host.current.registry.records.values()
        return [f"{r.id} ({r.origin} {r.root})" for r in records
                if r.origin != "bundled" and r.status == "loaded"]

    async def aclose(self) -> None:
        """Drain and stop everything, in reverse order of start (safe to call twice)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
