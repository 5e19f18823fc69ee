"""The loader: import each planned plugin under a private module name, call its synchronous
``register(api)`` and commit its registrations only if the whole call succeeded (I8).

Each generation imports its plugins afresh under ``_clawgate_g<generation>_<id>``, a synthetic
package whose path is the plugin folder (so plugins may use relative imports). Nothing is
shared with another generation through ``sys.modules``; retiring a generation removes its
modules. The loader is synchronous: the host runs it in a worker thread.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

from clawgate.errors import ClawgateError
from clawgate.plugins.api import PluginApi
from clawgate.plugins.metadata import Diagnostic, MetadataSnapshot, PluginMeta
from clawgate.plugins.plan import LoadPlan
from clawgate.plugins.registry import Phase, PluginRecord, Registry, RegistryBuilder


@dataclass(frozen=True, slots=True)
class BuildResult:
    registry: Registry
    modules: tuple[str, ...]
    owners: dict[str, str]  # private module prefix -> plugin id


def build_registry(
    plan: LoadPlan,
    snapshot: MetadataSnapshot,
    *,
    generation: int,
    namespace: str = "",
    root_config: Any,
    state_dir: Path,
    reserved_methods: frozenset[str] = frozenset(),
    reserved_paths: tuple[str, ...] = (),
    refused: Mapping[str, str] | None = None,
) -> BuildResult:
    """Load every plugin of ``plan`` (whose metadata is in ``snapshot``) into a new registry.

    A plugin in ``refused`` (id -> reason: its probe crashed, exited or timed out) is never
    imported: it gets status ``error``, phase ``probe``.
    """
    refused = refused or {}
    builder = RegistryBuilder(reserved_methods, reserved_paths)
    builder.diagnostics.extend(snapshot.diagnostics)
    planned = plan.ids
    modules: list[str] = []
    owners: dict[str, str] = {}
    order = count()
    for meta in snapshot.plugins:
        if meta.id is None:
            continue
        if meta.status != "enabled" or meta.id not in planned:
            # Not loaded here: disabled, refused, overridden, or outside this scope. The first
            # record of an id wins, so an overridden copy never hides the loaded one.
            builder.records.setdefault(meta.id, _record_from_meta(meta, planned))
            continue
        if meta.id in refused:
            reason = refused[meta.id]
            builder.diagnostics.append(Diagnostic("error", f"plugin {meta.id!r}: {reason}",
                                                  meta.id))
            builder.records[meta.id] = PluginRecord(
                meta.id, meta.origin, str(meta.root), "error", reason, phase="probe",
                error=reason, manifest=meta.manifest.summary() if meta.manifest else {})
            continue
        safe_id = "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in meta.id)
        prefix = f"_clawgate_{namespace}g{generation}_{safe_id}"
        owners[prefix] = meta.id
        record = _load_one(meta, prefix, builder, root_config, state_dir, lambda: next(order))
        builder.records[meta.id] = record
        modules.extend(m for m in list(sys.modules) if m == prefix or m.startswith(prefix + "."))
    return BuildResult(builder.build(), tuple(modules), owners)


def purge_modules(names: tuple[str, ...]) -> None:
    """Forget a retired generation's plugin modules."""
    for name in names:
        sys.modules.pop(name, None)


def _load_one(
    meta: PluginMeta,
    prefix: str,
    builder: RegistryBuilder,
    root_config: Any,
    state_dir: Path,
    next_order: Callable[[], int],
) -> PluginRecord:
    assert meta.id is not None and meta.manifest is not None
    manifest = meta.manifest

    plugin_id = meta.id

    def failed(phase: Phase, message: str) -> PluginRecord:
        purge_modules(tuple(m for m in sys.modules if m == prefix or m.startswith(prefix + ".")))
        builder.diagnostics.append(Diagnostic("error", f"plugin {meta.id!r}: {message}", meta.id))
        return PluginRecord(
            plugin_id, meta.origin, str(meta.root), "error", message, phase=phase, error=message,
            manifest=manifest.summary(),
        )

    try:
        register = import_entry(prefix, meta.root, manifest.entry_module(),
                                 manifest.entry_function())
    except (Exception, SystemExit) as exc:  # a plugin must not be able to exit the gateway
        return failed("load", f"failed to load plugin: {describe(exc)}")
    if inspect.iscoroutinefunction(register):
        return failed("register", "register must be synchronous (found 'async def')")
    api = PluginApi(manifest, config=meta.config, root_config=root_config, state_dir=state_dir,
                    hook_counter=next_order)
    try:
        outcome = register(api)
        if inspect.isawaitable(outcome):
            if inspect.iscoroutine(outcome):
                outcome.close()
            raise TypeError("register must be synchronous (it returned an awaitable)")
    except (Exception, SystemExit) as exc:
        api.close()
        return failed("register", f"register failed: {describe(exc)}")
    got = builder.commit(meta.id, api.close())
    return PluginRecord(
        meta.id, meta.origin, str(meta.root), "loaded", meta.reason,
        manifest=manifest.summary(), tools=got["tools"], hooks=got["hooks"],
        providers=got["providers"], channels=got["channels"], methods=got["methods"],
        routes=got["routes"], services=got["services"], commands=got["commands"],
    )


def import_entry(prefix: str, root: Path, module: str, function: str) -> Callable[..., Any]:
    """Import a plugin's entry module as ``<prefix>.<module>`` and return its function."""
    # A synthetic package rooted at the plugin folder: the entry module becomes
    # "<prefix>.<module>", and "from . import x" inside a plugin finds its sibling files.
    spec = importlib.machinery.ModuleSpec(prefix, None, is_package=True)
    spec.submodule_search_locations = [str(root)]
    package = importlib.util.module_from_spec(spec)
    sys.modules[prefix] = package
    loaded = importlib.import_module(f"{prefix}.{module}")
    fn = getattr(loaded, function, None)
    if fn is None:
        raise ClawgateError(f"entry module {module!r} has no function {function!r}")
    if not callable(fn):
        raise ClawgateError(f"entry {module}:{function} is not callable")
    return fn  # type: ignore[no-any-return]


def describe(exc: BaseException) -> str:
    """``Type: message (file:line)`` of the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def _record_from_meta(meta: PluginMeta, planned: frozenset[str]) -> PluginRecord:
    assert meta.id is not None
    status = meta.status
    reason = meta.reason
    if status == "enabled":  # enabled, but this (scoped) generation does not carry it
        status, reason = "disabled", "not in this load's scope"
    phase: Phase | None = None
    if status == "blocked" or (status == "error" and meta.manifest is None):
        phase = "discovery"  # refused before its manifest could be used
    elif status == "error":
        phase = "validation"  # its config failed the manifest's schema
    return PluginRecord(
        meta.id, meta.origin, str(meta.root), status,
        reason, phase=phase, error=reason if status in ("error", "blocked") else None,
        manifest=meta.manifest.summary() if meta.manifest else {},
    )
