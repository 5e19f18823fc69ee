"""``clawgate.plugin.json``: read and validated without importing any plugin code.

Field names follow OpenClaw's ``openclaw.plugin.json`` where the concept is the same. ``id`` and
``configSchema`` are required; everything else is optional and normalized (string lists trimmed
and deduplicated, ``enabledByDefault`` counts only when literally ``true``). Unknown top-level
fields are kept out of the model and reported as warnings, so a manifest written for a newer
clawgate still loads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson

from clawgate.errors import ManifestError
from clawgate.plugins.schemas import SchemaCache

MANIFEST_NAME = "clawgate.plugin.json"
DEFAULT_ENTRY = "plugin:register"

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_ENTRY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_KINDS = frozenset({"memory", "context-engine"})
_KNOWN = frozenset(
    {
        "id", "name", "version", "description", "configSchema", "enabledByDefault", "kind",
        "channels", "providers", "modelIdNormalization", "entry", "contracts", "$schema",
    }
)


@dataclass(frozen=True, slots=True)
class BareRule:
    """``prefixWhenBareAfterAliasStartsWith`` entry: bare ids starting with ``model_prefix``."""

    model_prefix: str
    prefix: str


@dataclass(frozen=True, slots=True)
class ModelIdPolicy:
    """How one provider's model ids are normalized (OpenClaw reference §5.5)."""

    aliases: Mapping[str, str] = field(default_factory=dict)  # lower-cased id -> replacement
    strip_prefixes: tuple[str, ...] = ()
    prefix_when_bare: str | None = None
    bare_rules: tuple[BareRule, ...] = ()

    def apply(self, model_id: str) -> str:
        """Normalize ``model_id``: strip a prefix, resolve an alias, prefix a bare id."""
        value = model_id.strip()
        if not value:
            return value
        lowered = value.lower()
        for prefix in self.strip_prefixes:
            if lowered.startswith(prefix.lower()):
                value = value[len(prefix) :]
                break
        value = self.aliases.get(value.lower(), value)
        if "/" in value:
            return value
        lowered = value.lower()
        for rule in self.bare_rules:
            if lowered.startswith(rule.model_prefix.lower()):
                return _join(rule.prefix, value)
        if self.prefix_when_bare:
            return _join(self.prefix_when_bare, value)
        return value


def _join(prefix: str, model_id: str) -> str:
    return f"{prefix.rstrip('/')}/{model_id.lstrip('/')}"


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated plugin manifest."""

    id: str
    config_schema: dict[str, Any]
    path: Path
    digest: str
    name: str | None = None
    version: str | None = None
    description: str | None = None
    enabled_by_default: bool = False
    kinds: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    model_id_policies: tuple[tuple[str, ModelIdPolicy], ...] = ()
    entry: str = DEFAULT_ENTRY
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def is_memory(self) -> bool:
        return "memory" in self.kinds

    def entry_module(self) -> str:
        return self.entry.partition(":")[0]

    def entry_function(self) -> str:
        return self.entry.partition(":")[2]

    def summary(self) -> dict[str, Any]:
        """A JSON-able description, for the CLI and ``plugins.list``."""
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "kind": list(self.kinds),
            "channels": list(self.channels),
            "providers": list(self.providers),
            "entry": self.entry,
            "enabledByDefault": self.enabled_by_default,
        }


def read_manifest(path: Path, schemas: SchemaCache | None = None) -> Manifest:
    """Read and validate the manifest at ``path``; raise ManifestError naming file and field.
    ``schemas`` remembers which ``configSchema`` checks passed (a fresh one checks all)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest: {exc.strerror}", file=str(path)) from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"not valid JSON: {exc}", file=str(path)) from exc
    return parse_manifest(data, path=path, digest=hashlib.sha256(raw).hexdigest(),
                          schemas=schemas)


def parse_manifest(data: Any, *, path: Path, digest: str,
                   schemas: SchemaCache | None = None) -> Manifest:
    """Validate a decoded manifest (``digest``: of its bytes, the key of a remembered
    ``configSchema`` check in ``schemas``)."""
    file = str(path)
    if not isinstance(data, dict):
        raise ManifestError("plugin manifest must be an object", file=file)
    raw_id = data.get("id")
    if not isinstance(raw_id, str) or not raw_id.strip():
        raise ManifestError("plugin manifest requires id", file=file, field="id")
    plugin_id = raw_id.strip()
    if not _ID.match(plugin_id):
        raise ManifestError(
            f"id {plugin_id!r} must be lowercase letters, digits, '.', '_' or '-'",
            file=file,
            field="id",
        )

    def fail(name: str, message: str) -> ManifestError:
        return ManifestError(message, file=file, field=name, plugin_id=plugin_id)

    schema = data.get("configSchema")
    if not isinstance(schema, dict):
        raise fail("configSchema", "plugin manifest requires configSchema (a JSON Schema object)")
    problem = (SchemaCache() if schemas is None else schemas).check_schema(schema, digest)
    if problem is not None:
        raise fail("configSchema", f"not a valid JSON Schema {problem}")

    entry = data.get("entry", DEFAULT_ENTRY)
    if not isinstance(entry, str) or not _ENTRY.match(entry):
        raise fail("entry", "entry must look like 'module:function' (e.g. 'plugin:register')")

    kind = data.get("kind", [])
    kinds = _strings(fail, "kind", [kind] if isinstance(kind, str) else kind)
    for k in kinds:
        if k not in _KINDS:
            raise fail("kind", f"unknown kind {k!r}; expected one of {sorted(_KINDS)}")

    providers = _strings(fail, "providers", data.get("providers", []))
    contracts = data.get("contracts", {})
    if not isinstance(contracts, dict):
        raise fail("contracts", "contracts must be an object")
    unknown = sorted(set(data) - _KNOWN)
    return Manifest(
        id=plugin_id,
        config_schema=schema,
        path=path,
        digest=digest,
        name=_text(fail, "name", data.get("name")),
        version=_text(fail, "version", data.get("version")),
        description=_text(fail, "description", data.get("description")),
        enabled_by_default=data.get("enabledByDefault") is True,
        kinds=kinds,
        channels=_strings(fail, "channels", data.get("channels", [])),
        providers=providers,
        tools=_strings(fail, "contracts.tools", contracts.get("tools", [])),
        model_id_policies=_policies(fail, data.get("modelIdNormalization"), providers),
        entry=entry,
        warnings=tuple(f"{file}: unknown field {name!r} ignored" for name in unknown),
    )


def _text(fail: Any, name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(name, f"{name} must be a string")
    return value.strip() or None


def _strings(fail: Any, name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(name, f"{name} must be a list of strings")
    return tuple(dict.fromkeys(v.strip() for v in value if v.strip()))


def _policies(
    fail: Any, value: Any, owned: tuple[str, ...]
) -> tuple[tuple[str, ModelIdPolicy], ...]:
    if value is None:
        return ()
    name = "modelIdNormalization"
    if not isinstance(value, dict) or not isinstance(value.get("providers", {}), dict):
        raise fail(name, "modelIdNormalization must be {\"providers\": {<provider>: {...}}}")
    owned_lower = {p.lower() for p in owned}
    result: list[tuple[str, ModelIdPolicy]] = []
    for provider, spec in value.get("providers", {}).items():
        where = f"{name}.providers.{provider}"
        if provider.lower() not in owned_lower:
            raise fail(where, f"provider {provider!r} is not listed in this plugin's providers")
        if not isinstance(spec, dict):
            raise fail(where, "must be an object")
        aliases = spec.get("aliases", {})
        if not isinstance(aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()
        ):
            raise fail(f"{where}.aliases", "aliases must map strings to strings")
        bare = spec.get("prefixWhenBare")
        if bare is not None and not isinstance(bare, str):
            raise fail(f"{where}.prefixWhenBare", "prefixWhenBare must be a string")
        rules_raw = spec.get("prefixWhenBareAfterAliasStartsWith", [])
        if not isinstance(rules_raw, list):
            raise fail(f"{where}.prefixWhenBareAfterAliasStartsWith", "must be a list")
        rules: list[BareRule] = []
        for i, rule in enumerate(rules_raw):
            if not (
                isinstance(rule, dict)
                and isinstance(rule.get("modelPrefix"), str)
                and isinstance(rule.get("prefix"), str)
            ):
                raise fail(
                    f"{where}.prefixWhenBareAfterAliasStartsWith.{i}",
                    "each rule needs string fields modelPrefix and prefix",
                )
            rules.append(BareRule(rule["modelPrefix"], rule["prefix"]))
        policy = ModelIdPolicy(
            aliases=MappingProxyType({k.lower(): v for k, v in sorted(aliases.items())}),
            strip_prefixes=_strings(fail, f"{where}.stripPrefixes", spec.get("stripPrefixes", [])),
            prefix_when_bare=bare,
            bare_rules=tuple(rules),
        )
        result.append((provider.lower(), policy))
    return tuple(result)
