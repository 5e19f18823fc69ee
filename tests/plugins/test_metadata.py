"""The metadata snapshot: config validation, owner maps, keys, pure lookups, schema cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from clawgate import config
from clawgate.config import PluginsConfig
from clawgate.plugins import discovery
from clawgate.plugins.discovery import Inventory
from clawgate.plugins.metadata import MetadataSnapshot, build_snapshot
from clawgate.plugins.schemas import SchemaCache
from tests.plugins.factory import copy_fixtures, make_plugin


def inventory(*load_paths: Path, state: Path | None = None) -> Inventory:
    state = state or load_paths[0].parent
    return discovery.scan(discovery.sources(
        load_paths=[str(p) for p in load_paths], state_dir=state, workspaces=(),
        bundled_root=None, entry_points=()))


def snapshot(inv: Inventory, plugins: dict[str, Any] | None = None,
             cache: SchemaCache | None = None) -> MetadataSnapshot:
    cache = SchemaCache() if cache is None else cache
    return build_snapshot(inv, PluginsConfig.model_validate(plugins or {}), cache)


def test_invalid_plugin_config_is_an_error_with_json_path(tmp_path: Path) -> None:
    inv = inventory(copy_fixtures(tmp_path / "load", "bad_config_schema", "good_tool"))
    snap = snapshot(inv, {"entries": {"bad_config_schema": {"config": {"port": "eighty"}}}})
    meta = snap.by_id["bad_config_schema"]
    assert meta.status == "error"
    assert meta.reason.startswith("invalid config at $.port:")
    assert "integer" in meta.reason
    assert snap.by_id["good_tool"].status == "enabled"
    assert [p.id for p in snap.enabled()] == ["good_tool"]
    (diag,) = [d for d in snap.diagnostics if d.plugin_id == "bad_config_schema"]
    assert diag.level == "error"
    assert "plugins.entries.bad_config_schema.config" in diag.message and "$.port" in diag.message


def test_missing_required_config_and_nested_paths(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_plugin(src, "nested", manifest_overrides={"configSchema": {
        "type": "object",
        "properties": {"servers": {"type": "array", "items": {
            "type": "object", "properties": {"host": {"type": "string"}}}}},
    }})
    inv = inventory(src, copy_fixtures(tmp_path / "load", "bad_config_schema"))
    snap = snapshot(inv, {"entries": {"nested": {"config": {"servers": [{"host": "a"},
                                                                        {"host": 5}]}}}})
    assert snap.by_id["nested"].reason.startswith("invalid config at $.servers[1].host:")
    assert snap.by_id["bad_config_schema"].status == "error"
    assert snap.by_id["bad_config_schema"].reason.startswith("invalid config at $:")
    assert "'port' is a required property" in snap.by_id["bad_config_schema"].reason


def test_disabled_plugin_config_is_not_validated(tmp_path: Path) -> None:
    inv = inventory(copy_fixtures(tmp_path / "load", "bad_config_schema"))
    snap = snapshot(inv, {"entries": {"bad_config_schema": {"enabled": False}}})
    assert snap.by_id["bad_config_schema"].status == "disabled"
    assert snap.diagnostics == ()


def test_schema_defaults_are_filled_and_input_not_mutated(tmp_path: Path) -> None:
    inv = inventory(copy_fixtures(tmp_path / "load", "good_tool", "slow_service"))
    given = {"log": "/tmp/x.log"}
    plugins = PluginsConfig.model_validate({"entries": {"slow_service": {"config": given}}})
    snap = build_snapshot(inv, plugins, SchemaCache())
    assert dict(snap.by_id["good_tool"].config) == {"greeting": "hello"}
    assert dict(snap.by_id["slow_service"].config) == {"log": "/tmp/x.log", "tag": "one"}
    assert plugins.entry("slow_service").config == {"log": "/tmp/x.log"}
    explicit = snapshot(inv, {"entries": {"good_tool": {"config": {"greeting": "hello"}},
                                          "slow_service": {"config": given}}})
    # a default given explicitly validates to the same config, so the same digest
    assert explicit.by_id["good_tool"].config_digest == snap.by_id["good_tool"].config_digest


def test_owner_maps(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_plugin(src, "chat_plugin", manifest_overrides={"channels": ["webchat", "sms"]})
    make_plugin(src, "zz_late", manifest_overrides={"channels": ["sms"], "providers": ["Other"]})
    inv = inventory(src, copy_fixtures(tmp_path / "load", "good_provider"))
    snap = snapshot(inv)
    assert dict(snap.channel_owners) == {"webchat": "chat_plugin", "sms": "chat_plugin"}
    assert dict(snap.provider_owners) == {"vercel-ai-gateway": "good_provider",
                                          "other": "zz_late"}
    # a disabled plugin owns nothing
    snap = snapshot(inv, {"deny": ["chat_plugin"]})
    assert dict(snap.channel_owners) == {"sms": "zz_late"}


def test_snapshot_key_is_inventory_digest_and_plugins_config_digest(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "good_tool")
    inv = inventory(src)
    plugins = {"entries": {"good_tool": {"config": {"greeting": "hi"}}}}
    snap = snapshot(inv, plugins)
    assert snap.key == (inv.digest, config.parse({"plugins": plugins}).plugins_digest())
    assert snapshot(inv, plugins).key == snap.key
    assert snapshot(inv, {}).key[0] == inv.digest
    assert snapshot(inv, {}).key[1] != snap.key[1]
    (src / "good_tool" / "plugin.py").write_text("def register(api):\n    pass\n")
    assert snapshot(inventory(src), plugins).key[0] != inv.digest


def test_refusals_become_metas_and_diagnostics(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_plugin(src, "broken", manifest_overrides={"kind": "nope"})
    inv = inventory(src)
    snap = snapshot(inv, {"entries": {"ghost": {"enabled": True}}})
    assert snap.by_id["broken"].status == "error"
    messages = [(d.level, d.plugin_id) for d in snap.diagnostics]
    assert ("error", "broken") in messages
    assert ("warn", "ghost") in messages  # config for a plugin that does not exist


def test_normalize_and_display_are_pure_lookups(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "good_provider")
    snap = snapshot(inventory(src))
    shutil.rmtree(src)  # nothing on disk any more: answers come from the snapshot alone
    assert snap.normalize_model("vercel-ai-gateway", "opus-4.6") == "anthropic/claude-opus-4-6"
    assert snap.normalize_model("VERCEL-AI-GATEWAY", "opus-4.6") == "anthropic/claude-opus-4-6"
    assert snap.normalize_model("unknown", "opus-4.6") is None
    assert snap.display_model("vercel-ai-gateway", "opus-4.6") == (
        "vercel-ai-gateway", "anthropic/claude-opus-4-6")
    assert snap.display_model("unknown", "m") == ("unknown", "m")
    assert snap.display_model(None, "opus-4.6") == (None, "opus-4.6")
    assert snap.display_model("vercel-ai-gateway", None) == ("vercel-ai-gateway", None)


def test_disabled_plugin_policies_do_not_apply(tmp_path: Path) -> None:
    snap = snapshot(inventory(copy_fixtures(tmp_path / "load", "good_provider")),
                    {"deny": ["good_provider"]})
    assert snap.normalize_model("vercel-ai-gateway", "opus-4.6") is None


def test_provider_owner_decides_its_policy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for pid, prefix in (("a_first", "one"), ("b_second", "two")):
        make_plugin(src, pid, manifest_overrides={
            "providers": ["shared"],
            "modelIdNormalization": {"providers": {"shared": {"prefixWhenBare": prefix}}}})
    inv = inventory(src)
    snap = snapshot(inv)
    assert snap.provider_owners["shared"] == "a_first"
    # a lower-precedence plugin declaring the same provider cannot override the owner's policy
    assert snap.normalize_model("shared", "m") == "one/m"
    # with the owner disabled, the next plugin owns the provider and its policy applies
    snap = snapshot(inv, {"deny": ["a_first"]})
    assert snap.provider_owners["shared"] == "b_second"
    assert snap.normalize_model("shared", "m") == "two/m"


def test_schema_cache_compiles_once_per_schema_digest(tmp_path: Path) -> None:
    src = tmp_path / "src"
    same = {"type": "object", "properties": {"n": {"type": "integer", "default": 1}}}
    for pid in ("one", "two"):
        make_plugin(src, pid, manifest_overrides={"configSchema": same})
    cache = SchemaCache()
    inv = inventory(src)
    snapshot(inv, cache=cache)
    assert len(cache) == 1
    snapshot(inv, {"entries": {"one": {"config": {"n": 2}}}}, cache=cache)
    assert len(cache) == 1
    make_plugin(src, "three", manifest_overrides={"configSchema": {"type": "object",
                                                                   "required": ["n"]}})
    snapshot(inventory(src), {"entries": {"three": {"config": {"n": 0}}}}, cache=cache)
    assert len(cache) == 2
    assert cache.validator(same) is cache.validator(dict(reversed(list(same.items()))))
