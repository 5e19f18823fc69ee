"""PluginHost: owns the current generation, builds new ones, and retires old ones (I2-I5, I7).

- ``start()`` scans once, derives the plan and builds the first generation.
- ``acquire(ids)`` is what the request path calls: it returns a live generation whose plan
  contains exactly the requested plugins' entries (reuse by capability, I3). It only builds when
  no live generation qualifies — which, after start-up, never happens for enabled plugins; the
  counter ``plugin_loads_on_request_total`` proves it (I4).
- Builds are single-flight per plan digest (I5).
- ``reload()`` rescans, builds a new generation if the plan changed, swaps one reference, and
  retires the old generation once its leases drain (services stopped in reverse order, each
  with a deadline; providers closed; private modules purged).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from clawgate.config import Settings
from clawgate.diagnostics.metrics import Metrics
from clawgate.diagnostics.timeline import Timeline
from clawgate.errors import ConfigError, PluginError, Unavailable
from clawgate.plugins import discovery
from clawgate.plugins.loader import build_registry, purge_modules
from clawgate.plugins.metadata import MetadataSnapshot, build_snapshot
from clawgate.plugins.plan import LoadPlan, derive_plan
from clawgate.plugins.probe import Prober
from clawgate.plugins.registry import Registry, Service, ServiceContext
from clawgate.plugins.schemas import SchemaCache

log = logging.getLogger("clawgate.plugins")
T = TypeVar("T")

COUNTERS = (
    "plugin_metadata_scans_total",
    "plugin_generation_builds_total",
    "plugin_loads_on_request_total",
    "plugin_generation_reuses_total",
    "plugin_generations_retired_total",
)


@dataclass(frozen=True, slots=True)
class Generation:
    """One immutable build: plan, metadata snapshot and registry. Never mutated (I2)."""

    id: int
    plan: LoadPlan
    snapshot: MetadataSnapshot
    registry: Registry
    modules: tuple[str, ...]
    built_at: float
    owners: Mapping[str, str] = field(default_factory=dict)  # module prefix -> plugin id

    @property
    def key(self) -> str:
        return self.plan.digest

    def satisfies(self, plan: LoadPlan) -> bool:
        """True when this generation carries every entry of ``plan`` unchanged (I3)."""
        return self.plan.contains(plan)


@dataclass(slots=True)
class _Leases:
    count: int = 0
    drained: asyncio.Event | None = None


class Lease:
    """A hold on one generation; ``release()`` once (later calls do nothing)."""

    __slots__ = ("generation", "_leases")

    def __init__(self, generation: Generation, leases: _Leases) -> None:
        self.generation = generation
        self._leases: _Leases | None = leases

    def release(self) -> None:
        leases, self._leases = self._leases, None
        if leases is None:
            return
        leases.count -= 1
        if leases.count == 0 and leases.drained is not None:
            leases.drained.set()


class PluginHost:
    """The plugin runtime of one gateway (or one CLI command)."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        timeline: Timeline | None = None,
        bundled_root: Path | None = discovery.BUNDLED_ROOT,
        entry_points: Iterable[EntryPoint] | None = None,
        reserved_methods: frozenset[str] = frozenset(),
        reserved_paths: tuple[str, ...] = (),
        keep: int = 4,
        plugin_threads: int | None = None,
        stop_deadline_s: float = 5.0,
        drain_deadline_s: float = 30.0,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics(COUNTERS)
        for name in COUNTERS:
            self.metrics.inc(name, 0)
        self.timeline = timeline or Timeline(None)
        self._bundled_root = bundled_root
        self._entry_points = None if entry_points is None else tuple(entry_points)
        self._reserved_methods = reserved_methods
        self._reserved_paths = reserved_paths
        self._keep = max(1, keep)
        self._stop_deadline = stop_deadline_s
        self._drain_deadline = drain_deadline_s
        # Remembers the manifest and config checks that passed (<state>/plugin-schemas.json),
        # so an unchanged restart does not import jsonschema at all.
        self._schemas = SchemaCache(settings.state_dir)
        self.metrics.gauge("plugin_schema_checks", lambda: self._schemas.checked)
        self._snapshots: OrderedDict[tuple[str, str], MetadataSnapshot] = OrderedDict()
        self._plans: dict[tuple[str, str], LoadPlan] = {}  # derived once per snapshot key
        # Private module names carry this host's namespace, so two hosts in one process never
        # share (or purge) each other's plugin modules.
        self._namespace = secrets.token_hex(4)
        self._snapshot: MetadataSnapshot | None = None
        self._live: OrderedDict[str, Generation] = OrderedDict()
        self._current: Generation | None = None
        self._building: dict[str, asyncio.Future[Generation]] = {}
        self._leases: dict[int, _Leases] = {}
        self._started_services: dict[int, list[Service]] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._inventory: discovery.Inventory | None = None
        self._roots: tuple[object, ...] = ()
        self._startup: asyncio.Task[Generation] | None = None
        self._next_id = 1
        self._started = False
        self._reload_lock = asyncio.Lock()
        self._prober = Prober(settings.state_dir, timeout_s=settings.config.plugins.probe_timeout_s)
        # Plugin code that blocks (sync tools, RPC methods, routes) runs here, not on the default
        # pool that core file reads use: a hung plugin can exhaust only its own threads.
        plugins = settings.config.plugins
        self._pool_size = plugins.pool_threads if plugin_threads is None else plugin_threads
        self._stuck_after = plugins.stuck_call_s
        self._running: dict[object, tuple[float, str]] = {}  # calls on a worker: (start, what)
        self._executor = ThreadPoolExecutor(max_workers=self._pool_size,
                                            thread_name_prefix="clawgate-plugin")
        self.metrics.gauge("plugin_pool_stuck_workers", lambda: len(self._stuck_calls()))

    # -- reading -------------------------------------------------------------------------------

    @property
    def current(self) -> Generation:
        """The generation new work should use. Raises Unavailable before start-up."""
        if self._current is None:
            raise Unavailable("plugin runtime is not started")
        return self._current

    @property
    def snapshot(self) -> MetadataSnapshot:
        """The current metadata snapshot (never rescans)."""
        if self._snapshot is None:
            raise Unavailable("plugin metadata has not been scanned")
        return self._snapshot

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plugin's synchronous callable on the plugin thread pool, in a copy of the
        caller's context (as ``asyncio.to_thread`` does), so what it logs stays attributed.

        The pool has ``plugins.pool_threads`` workers. A call running longer than
        ``plugins.stuck_call_s`` is a stuck worker (gauge ``plugin_pool_stuck_workers``); a
        thread cannot be killed, so when every worker is stuck new calls are refused at once
        (Unavailable naming the oldest call) instead of queueing behind them forever.
        """
        stuck = self._stuck_calls()
        if len(stuck) >= self._pool_size:
            started, label = min(stuck)
            raise Unavailable(
                f"all {self._pool_size} plugin worker threads are stuck in calls that have not "
                f"returned (the oldest: {label}, running for {time.monotonic() - started:.0f} "
                "s); synchronous plugin calls are refused until one returns",
                reason="plugin_pool_exhausted")
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        label = self.describe_callable(fn)

        def call() -> T:
            token = object()
            self._running[token] = (time.monotonic(), label)
            try:
                return context.run(fn, *args)
            finally:
                del self._running[token]

        return await loop.run_in_executor(self._executor, call)

    def describe_callable(self, fn: Callable[..., Any]) -> str:
        """``plugin 'x' fn`` for plugin code, else the callable's qualified name."""
        name = getattr(fn, "__qualname__", None) or repr(fn)
        owner = self.owner_of(getattr(fn, "__module__", "") or "")
        return f"plugin {owner!r} {name}" if owner else name

    def owner_of(self, module: str) -> str | None:
        """The id of the plugin whose private module ``module`` is, or None."""
        if not module.startswith("_clawgate_"):
            return None
        for generation in tuple(self._live.values()):
            for prefix, plugin_id in generation.owners.items():
                if module == prefix or module.startswith(prefix + "."):
                    return plugin_id
        return None

    def describe_frame(self, frame: FrameType) -> str | None:
        """What plugin code a (blocked) stack is in: ``hook <name> of plugin 'x' (fn, file:line)``,
        ``tool <name> of plugin 'x' (...)`` or ``plugin 'x' fn (file:line)``; None when no
        plugin code is on it. Used by the event-loop watchdog from its own thread."""
        current: FrameType | None = frame
        while current is not None:
            owner = self.owner_of(str(current.f_globals.get("__name__", "")))
            if owner is not None:
                break
            current = current.f_back
        if current is None or owner is None:
            return None
        where = (f"{current.f_code.co_qualname}, {Path(current.f_code.co_filename).name}:"
                 f"{current.f_lineno}")
        inner: FrameType | None = current
        while inner is not None:  # the outermost plugin frame is the registered callable
            code = inner.f_code
            generation = self._current
            if generation is not None:
                for handler in generation.registry.hooks.all():
                    if getattr(handler.fn, "__code__", None) is code:
                        return f"hook {handler.hook} of plugin {owner!r} ({where})"
                for tool in generation.registry.tools.values():
                    if getattr(tool.handler, "__code__", None) is code:
                        return f"tool {tool.name} of plugin {owner!r} ({where})"
            inner = inner.f_back
            if inner is not None and self.owner_of(
                    str(inner.f_globals.get("__name__", ""))) is None:
                break
        return f"plugin {owner!r} ({where})"

    def _stuck_calls(self) -> list[tuple[float, str]]:
        limit = time.monotonic() - self._stuck_after
        return [call for call in list(self._running.values()) if call[0] <= limit]

    def live(self) -> tuple[Generation, ...]:
        return tuple(self._live.values())

    def in_flight(self, generation: Generation) -> int:
        leases = self._leases.get(generation.id)
        return 0 if leases is None else leases.count

    # -- start, acquire, lease -----------------------------------------------------------------

    async def start(self, *, services: bool = True) -> Generation:
        """Scan, build and publish the first generation; start its services.

        Concurrent callers (and ``acquire`` calls made during start-up) share the one start.
        """
        if self._startup is None:
            self._startup = asyncio.get_running_loop().create_task(self._start(services))
        return await asyncio.shield(self._startup)

    async def _start(self, services: bool) -> Generation:
        snapshot = await self._scan()
        generation = await self._build(derive_plan(snapshot), snapshot)
        if services:
            await self._start_services(generation)
        self._publish(generation)
        self._started = True
        return generation

    def plan(
        self, settings: Settings | None = None, plugin_ids: Iterable[str] | None = None
    ) -> LoadPlan:
        """The plan a caller's effective inputs give, derived without touching the disk.

        However a caller assembled its ``settings``, only what changes loading reaches the
        plan, so equal effective inputs give an equal plan (I1).
        """
        snapshot = self._snapshot_for(settings)
        plan = self._plans.get(snapshot.key)
        if plan is None:
            plan = self._plans[snapshot.key] = derive_plan(snapshot)
        if plugin_ids is None:
            return plan
        wanted = set(plugin_ids)
        missing = sorted(wanted - plan.ids)
        if missing:
            raise PluginError(f"plugins not enabled: {', '.join(missing)}")
        return plan.subset(wanted)

    async def acquire(
        self, plugin_ids: Iterable[str] | None = None, *, settings: Settings | None = None
    ) -> Generation:
        """A live generation that carries ``plugin_ids`` (default: every enabled plugin).

        This is the request path: it derives the caller's plan from the scanned inventory and
        looks up live generations. It builds only if none qualifies, and counts that as a load
        on the request path.
        """
        if self._current is None and self._startup is not None:
            await asyncio.shield(self._startup)
        plan = self.plan(settings, plugin_ids)
        for generation in self._candidates():
            # A full request needs exactly its plan: a wider generation would carry plugins
            # the caller's config disabled or denied. A scoped request may use a wider one.
            fits = generation.plan == plan if plugin_ids is None else generation.satisfies(plan)
            if fits:
                self.metrics.inc("plugin_generation_reuses_total")
                return generation
        if self._started:
            self.metrics.inc("plugin_loads_on_request_total")
            log.warning("plugin load on the request path (plan %s)", plan.digest[:12])
        generation = await self._build(plan, self._snapshot_for(settings))
        self._remember(generation)
        return generation

    def checkout(self, generation: Generation | None = None) -> Lease:
        """Hold ``generation`` (default: the current one) until the lease is released.

        A retiring generation waits for its leases, so work admitted on it finishes on it.
        """
        generation = generation or self.current
        leases = self._leases.setdefault(generation.id, _Leases())
        leases.count += 1
        return Lease(generation, leases)

    @asynccontextmanager
    async def lease(self, plugin_ids: Iterable[str] | None = None) -> AsyncIterator[Generation]:
        """``checkout`` as a context manager, for work that lives in one block."""
        generation = (
            self.current if plugin_ids is None and self._current else await self.acquire(plugin_ids)
        )
        lease = self.checkout(generation)
        try:
            yield generation
        finally:
            lease.release()

    # -- reload and shutdown -------------------------------------------------------------------

    async def reload(self, settings: Settings | None = None, *, force: bool = False) -> Generation:
        """Rescan (with new settings if given); build and swap if the plan changed.

        A new generation that would lose a plugin the running one has loaded (its config no
        longer validates, it is gone, its import or ``register()`` now fails) is refused as a
        whole: ConfigError naming the plugin and the JSON path, and the running generation
        (and the settings it was built from) stay. ``force`` accepts the partial generation.
        """
        async with self._reload_lock:
            kept = (self.settings, self._inventory, self._snapshot, self._roots)
            if settings is not None:
                self.settings = settings
            try:
                snapshot = await self._scan(force=True)
                plan = derive_plan(snapshot)
                old = self._current
                if old is not None and old.plan == plan:
                    return old
                if old is not None and not force:
                    # Lost: still wanted but broken (config, gates), or gone from disk. A
                    # plugin the config now disables, denies or leaves out is not lost.
                    present = {m.id for m in snapshot.plugins if m.id}
                    broken = {m.id: m.reason for m in snapshot.plugins
                              if m.id and m.status in ("error", "blocked")}
                    gone = {pid: "no longer found" for pid in old.registry.records
                            if pid not in present}
                    _refuse_losses(old, {**gone, **broken})
                generation = next((g for g in self._live.values() if g.plan == plan), None)
                built = generation is None
                if generation is None:
                    generation = await self._build(plan, snapshot)
                if old is not None and not force:
                    try:
                        _refuse_losses(old, {i: r.reason for i, r in
                                             generation.registry.records.items()
                                             if r.status == "error"})
                    except ConfigError:
                        if built:
                            self._retire_later(generation)
                        raise
            except BaseException:
                self.settings, self._inventory, self._snapshot, self._roots = kept
                raise
            if generation.id not in self._started_services:
                await self._start_services(generation)
            self._publish(generation)
            return generation

    async def aclose(self) -> None:
        """Retire every live generation (draining each) and wait for all retirements."""
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()
            await asyncio.gather(self._startup, return_exceptions=True)
        generations = list(self._live.values())
        self._live.clear()
        self._current = None
        for generation in reversed(generations):
            self._retire_later(generation)
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)
        # A plugin call that never returns must not hold up shutdown: don't wait for threads.
        self._executor.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------------------------

    def _candidates(self) -> list[Generation]:
        ordered = list(self._live.values())
        if self._current is not None:
            ordered.remove(self._current)
            ordered.insert(0, self._current)
        return ordered

    async def scan(self) -> MetadataSnapshot:
        """Scan once and return the metadata snapshot without loading any plugin code (for
        read-only tools such as ``clawgate sessions list``)."""
        return await self._scan()

    async def _scan(self, *, force: bool = False) -> MetadataSnapshot:
        settings = self.settings
        with self.timeline.span("plugins.metadata.scan", phase="reload" if force else "startup",
                                workspaces=len(settings.workspaces())):
            self._inventory = await asyncio.to_thread(self._discover, settings)
        self.metrics.inc("plugin_metadata_scans_total")
        self._roots = _roots(settings)
        self._snapshot = self._snapshot_for(settings)
        await asyncio.to_thread(self._schemas.save)  # the checks that passed, for the next start
        return self._snapshot

    def _snapshot_for(self, settings: Settings | None) -> MetadataSnapshot:
        """The snapshot for (scanned inventory, ``settings``' plugins config): a dict lookup,
        or a pure build from the inventory already in memory. Never scans."""
        if self._inventory is None:
            raise Unavailable("plugin metadata has not been scanned")
        settings = settings or self.settings
        if _roots(settings) != self._roots:
            raise PluginError(
                "these settings look for plugins in other folders (load_paths, state dir or "
                "agent workspaces differ); reload the plugin host with them first"
            )
        key = (self._inventory.digest, settings.config.plugins_digest())
        snapshot = self._snapshots.get(key)
        if snapshot is None:
            snapshot = build_snapshot(self._inventory, settings.config.plugins, self._schemas)
            self._snapshots[key] = snapshot
            while len(self._snapshots) > self._keep:
                evicted, _ = self._snapshots.popitem(last=False)
                self._plans.pop(evicted, None)
        return snapshot

    def _discover(self, settings: Settings) -> discovery.Inventory:
        found = discovery.sources(
            load_paths=settings.config.plugins.load_paths,
            state_dir=settings.state_dir,
            workspaces=settings.workspaces(),
            bundled_root=self._bundled_root,
            entry_points=self._entry_points,
        )
        return discovery.scan(found, self._schemas)

    async def _build(self, plan: LoadPlan, snapshot: MetadataSnapshot) -> Generation:
        pending = self._building.get(plan.digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        self._building[plan.digest] = future
        try:
            generation_id = self._next_id
            self._next_id += 1
            refused = await self._probe(plan, snapshot)
            result = await asyncio.to_thread(
                build_registry, plan, snapshot, generation=generation_id,
                namespace=self._namespace,
                root_config=self.settings.config, state_dir=self.settings.state_dir,
                reserved_methods=self._reserved_methods, reserved_paths=self._reserved_paths,
                refused=refused,
            )
            self.metrics.inc("plugin_generation_builds_total")
            generation = Generation(generation_id, plan, snapshot, result.registry,
                                    result.modules, time.time(), result.owners)
            future.set_result(generation)
            return generation
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._building[plan.digest]

    async def _probe(self, plan: LoadPlan, snapshot: MetadataSnapshot) -> dict[str, str]:
        """Probe the plan's plugins from outside the package (``plugins.probe``): the ids
        whose probe crashed, exited or timed out, with the reason. Bundled plugins are part of
        the package and are trusted as it is."""
        entries = [e for e in plan.entries if e.origin != "bundled"]
        if not entries:
            return {}
        self._prober.timeout_s = self.settings.config.plugins.probe_timeout_s
        metas = {e.id: snapshot.by_id[e.id] for e in entries}
        before = self._prober.probed
        started = time.perf_counter()
        with self.timeline.span("plugins.probe", plugins=len(entries)):
            verdicts = await self._prober.check(
                entries, metas, root_config=self.settings.config.model_dump(mode="json"),
                starting=lambda n: log.info("probing %d new or changed plugin(s) in a child "
                                            "process", n))
        if self._prober.probed > before:
            log.info("probed %d plugin(s) in %.0f ms", self._prober.probed - before,
                     (time.perf_counter() - started) * 1000)
        refused = {pid: v.reason for pid, v in verdicts.items() if not v.ok}
        for pid, reason in refused.items():
            log.error("plugin %r is not loaded: %s", pid, reason)
        return refused

    def _remember(self, generation: Generation) -> None:
        self._live[generation.key] = generation
        self._live.move_to_end(generation.key)
        while len(self._live) > self._keep:
            oldest = next(iter(self._live.values()))
            if oldest is self._current:
                self._live.move_to_end(oldest.key)
                continue
            del self._live[oldest.key]
            self._retire_later(oldest)

    def _publish(self, generation: Generation) -> None:
        old = self._current
        self._current = generation  # the swap: one reference assignment
        self._remember(generation)
        if old is not None and old is not generation and old.key in self._live:
            del self._live[old.key]
            self._retire_later(old)

    def _retire_later(self, generation: Generation) -> None:
        task = asyncio.get_running_loop().create_task(
            self._retire(generation), name=f"retire-generation-{generation.id}"
        )
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, generation: Generation) -> None:
        leases = self._leases.get(generation.id)
        if leases is not None and leases.count > 0:
            leases.drained = asyncio.Event()
            try:
                await asyncio.wait_for(leases.drained.wait(), self._drain_deadline)
            except TimeoutError:
                log.warning("generation %d retired with %d leases still held",
                            generation.id, leases.count)
        for service in reversed(self._started_services.pop(generation.id, [])):
            if service.stop is not None:
                await self._call(service, service.stop, "stop")
        for entry in generation.registry.providers.values():
            try:
                await asyncio.wait_for(entry.provider.aclose(), self._stop_deadline)
            except Exception as exc:  # a provider's close must not block retirement
                log.warning("provider %s close failed: %s", entry.provider.id, exc)
        purge_modules(generation.modules)
        self._leases.pop(generation.id, None)
        self.metrics.inc("plugin_generations_retired_total")

    async def _start_services(self, generation: Generation) -> None:
        started: list[Service] = []
        for service in generation.registry.services:
            if await self._call(service, service.start, "start"):
                started.append(service)
        self._started_services[generation.id] = started

    async def _call(self, service: Service, fn: Any, what: str) -> bool:
        context = ServiceContext(state_dir=self.settings.state_dir, config=self.settings.config)
        try:
            outcome = fn(context)
            if inspect.isawaitable(outcome):
                await asyncio.wait_for(outcome, self._stop_deadline)
            return True
        except Exception as exc:  # one broken service must not stop the others
            log.error("service %s of plugin %r failed to %s: %s", service.id, service.plugin_id,
                      what, exc)
            return False


def _refuse_losses(old: Generation, missing: dict[str, str]) -> None:
    """Raise ConfigError when a plugin loaded in ``old`` is among ``missing`` (id -> reason)."""
    lost = [(pid, missing[pid]) for pid, record in old.registry.records.items()
            if record.status == "loaded" and pid in missing]
    if not lost:
        return
    pid, reason = lost[0]
    path = f"plugins.entries.{pid}"
    if reason.startswith("invalid config at $"):  # "invalid config at $.delay_ms: ..."
        path += ".config" + reason.removeprefix("invalid config at $").split(":", 1)[0]
    names = ", ".join(repr(p) for p, _ in lost)
    raise ConfigError(f"reload refused: it would lose plugin {pid!r} ({reason}); the running "
                      f"plugins stay (lost: {names}; --force accepts a partial generation)",
                      path=path)


def _roots(settings: Settings) -> tuple[object, ...]:
    """What decides where discovery looks: two settings with equal roots see one inventory."""
    return (settings.config.plugins.load_paths, settings.state_dir, settings.workspaces())
