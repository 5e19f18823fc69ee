"""The metadata snapshot: everything known about plugins without running their code.

One snapshot covers every configured agent workspace at once (discovery already looked in all
of them), so no caller ever needs "the active workspace" to read it. It is keyed by
(inventory digest, plugins-config digest) and is immutable; per-row questions such as "which
plugin owns provider X" or "what is the display form of model id Y" are dict lookups.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from clawgate.config import PluginsConfig, digest
from clawgate.plugins.activation import Decision, Subject, apply_memory_slot, decide
from clawgate.plugins.discovery import Inventory, Origin
from clawgate.plugins.manifest import Manifest, ModelIdPolicy
from clawgate.plugins.schemas import SchemaCache

Status = Literal["enabled", "disabled", "error", "blocked", "overridden"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """Something an operator should know about a plugin."""

    level: Literal["warn", "error"]
    message: str
    plugin_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "message": self.message, "pluginId": self.plugin_id}


@dataclass(frozen=True, slots=True)
class PluginMeta:
    """What the control plane decided about one plugin folder."""

    id: str | None
    origin: Origin
    root: Path
    status: Status
    reason: str
    manifest: Manifest | None = None
    entry_file: Path | None = None
    code_digest: str = ""
    workspace: Path | None = None
    decision: Decision | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    config_digest: str = ""


@dataclass(frozen=True, slots=True)
class MetadataSnapshot:
    """The immutable control-plane view of every plugin, for one (inventory, config) pair."""

    key: tuple[str, str]
    plugins: tuple[PluginMeta, ...]
    by_id: Mapping[str, PluginMeta]
    channel_owners: Mapping[str, str]
    provider_owners: Mapping[str, str]
    policies: Mapping[str, ModelIdPolicy]
    diagnostics: tuple[Diagnostic, ...]
    warnings: tuple[str, ...] = ()

    def enabled(self) -> tuple[PluginMeta, ...]:
        """Plugins that will load, in precedence order."""
        return tuple(p for p in self.plugins if p.status == "enabled")

    def normalize_model(self, provider: str, model_id: str) -> str | None:
        """The normalized model id, or None when no plugin declares a policy for ``provider``."""
        policy = self.policies.get(provider.lower())
        return None if policy is None else policy.apply(model_id)

    def display_model(
        self, provider: str | None, model: str | None
    ) -> tuple[str | None, str | None]:
        """(provider, model) as a session row shows them; a pure lookup, never I/O."""
        if provider and model:
            normalized = self.normalize_model(provider, model)
            if normalized is not None:
                return provider, normalized
        return provider, model


def build_snapshot(
    inventory: Inventory, plugins: PluginsConfig, schemas: SchemaCache
) -> MetadataSnapshot:
    """Decide, validate and index every plugin of ``inventory`` under ``plugins`` config."""
    subjects = [Subject(c.id, c.origin, c.manifest, plugins) for c in inventory.candidates]
    decisions = apply_memory_slot(subjects, [decide(s) for s in subjects])
    metas: list[PluginMeta] = []
    diagnostics: list[Diagnostic] = []
    for candidate, decision in zip(inventory.candidates, decisions, strict=True):
        meta = PluginMeta(
            id=candidate.id,
            origin=candidate.origin,
            root=candidate.root,
            status="enabled" if decision.enabled else "disabled",
            reason=decision.reason,
            manifest=candidate.manifest,
            entry_file=candidate.entry_file,
            code_digest=candidate.code_digest,
            workspace=candidate.workspace,
            decision=decision,
        )
        if decision.enabled:
            meta = _validate_config(meta, plugins, schemas, diagnostics)
        metas.append(meta)
    for refusal in inventory.refusals:
        metas.append(
            PluginMeta(refusal.plugin_id, refusal.origin, refusal.root, refusal.status,
                       refusal.reason)
        )
        level: Literal["warn", "error"] = "warn" if refusal.status == "overridden" else "error"
        diagnostics.append(Diagnostic(level, refusal.reason, refusal.plugin_id))
    known = {m.id for m in metas if m.id}
    for name in sorted(set(plugins.entries) - known):
        diagnostics.append(Diagnostic("warn", f"plugins.entries.{name}: no such plugin", name))

    enabled = [m for m in metas if m.status == "enabled" and m.manifest]
    channels: dict[str, str] = {}
    providers: dict[str, str] = {}
    policies: dict[str, ModelIdPolicy] = {}
    for meta in enabled:
        assert meta.manifest is not None and meta.id is not None
        for channel in meta.manifest.channels:
            channels.setdefault(channel, meta.id)
        for provider in meta.manifest.providers:
            providers.setdefault(provider.lower(), meta.id)
        for provider, policy in meta.manifest.model_id_policies:
            # The provider's owner (first in precedence) decides its ids; a lower-precedence
            # plugin declaring the same provider cannot override the owner's policy.
            if providers.get(provider) == meta.id:
                policies.setdefault(provider, policy)
    return MetadataSnapshot(
        key=(inventory.digest, digest(plugins.model_dump(mode="json"))),
        plugins=tuple(metas),
        by_id=MappingProxyType({m.id: m for m in metas if m.id and m.status != "overridden"}),
        channel_owners=MappingProxyType(channels),
        provider_owners=MappingProxyType(providers),
        policies=MappingProxyType(policies),
        diagnostics=tuple(diagnostics),
        warnings=inventory.warnings,
    )


def _validate_config(
    meta: PluginMeta, plugins: PluginsConfig, schemas: SchemaCache, out: list[Diagnostic]
) -> PluginMeta:
    assert meta.manifest is not None and meta.id is not None
    raw, reason = apply_schema(meta.manifest.config_schema, plugins.entry(meta.id).config, schemas)
    if reason is not None:
        out.append(Diagnostic("error", f"plugins.entries.{meta.id}.config: {reason}", meta.id))
        return replace(meta, status="error", reason=reason)
    return replace(meta, config=MappingProxyType(raw), config_digest=digest(raw))


def apply_schema(schema: Mapping[str, Any], value: Mapping[str, Any],
                 schemas: SchemaCache) -> tuple[dict[str, Any], str | None]:
    """``value`` with the schema's top-level defaults filled in, and the first validation
    error as ``"invalid config at $.path: message"`` (None when it is valid)."""
    raw = copy.deepcopy(dict(value))
    # Fill top-level defaults so plugins see the documented values without repeating them.
    for name, prop in schema.get("properties", {}).items():
        if isinstance(prop, dict) and "default" in prop and name not in raw:
            raw[name] = copy.deepcopy(prop["default"])
    return raw, schemas.validate(schema, raw)

