"""The enable decision: every rule of the table, and memory-slot exclusivity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clawgate.config import PluginsConfig
from clawgate.plugins import activation
from clawgate.plugins.activation import RULES, Decision, Subject, apply_memory_slot, decide
from clawgate.plugins.manifest import MANIFEST_NAME, Manifest, parse_manifest
from tests.plugins.factory import copy_fixtures, make_settings, running_host


def manifest(plugin_id: str, **extra: Any) -> Manifest:
    data = {"id": plugin_id, "configSchema": {}, **extra}
    return parse_manifest(data, path=Path("/p") / plugin_id / MANIFEST_NAME, digest=plugin_id)


def subject(origin: str, plugins: dict[str, Any], *, plugin_id: str = "p",
            **manifest_extra: Any) -> Subject:
    return Subject(plugin_id, origin, manifest(plugin_id, **manifest_extra),
                   PluginsConfig.model_validate(plugins))


ON = {"entries": {"p": {"enabled": True}}}
OFF = {"entries": {"p": {"enabled": False}}}
DEFAULT_ON = {"enabledByDefault": True}

# (case, origin, manifest extras, plugins config, enabled, source, rule, reason)
TABLE: list[tuple[str, str, dict[str, Any], dict[str, Any], bool, str, str, str]] = [
    ("plugins off", "config", {}, {"enabled": False}, False, "disabled", "plugins-disabled",
     "plugins disabled"),
    ("plugins off beats entry on", "bundled", DEFAULT_ON, {"enabled": False, **ON}, False,
     "disabled", "plugins-disabled", "plugins disabled"),
    ("deny", "global", {}, {"deny": ["p"]}, False, "disabled", "denylist",
     "blocked by denylist"),
    ("deny beats explicit enable", "config", {}, {"deny": ["p"], **ON}, False, "disabled",
     "denylist", "blocked by denylist"),
    ("deny beats memory slot", "config", {"kind": "memory"},
     {"deny": ["p"], "slots": {"memory": "p"}}, False, "disabled", "denylist",
     "blocked by denylist"),
    ("deny beats allow", "workspace", {}, {"deny": ["p"], "allow": ["p"]}, False, "disabled",
     "denylist", "blocked by denylist"),
    ("deny beats bundled default", "bundled", DEFAULT_ON, {"deny": ["p"]}, False, "disabled",
     "denylist", "blocked by denylist"),
    ("entry disabled", "bundled", DEFAULT_ON, OFF, False, "disabled", "entry-disabled",
     "disabled in config"),
    ("entry disabled beats allow", "config", {}, {"allow": ["p"], **OFF}, False, "disabled",
     "entry-disabled", "disabled in config"),
    ("workspace off by default", "workspace", {}, {}, False, "disabled",
     "workspace-default-off", "workspace plugin (disabled by default)"),
    ("workspace off even if memory slot", "workspace", {"kind": "memory"},
     {"slots": {"memory": "p"}}, False, "disabled", "workspace-default-off",
     "workspace plugin (disabled by default)"),
    ("workspace allowed", "workspace", {}, {"allow": ["p"]}, True, "explicit", "explicit",
     "enabled in config"),
    ("workspace entry enabled", "workspace", {}, ON, True, "explicit", "explicit",
     "enabled in config"),
    ("memory slot", "config", {"kind": "memory"}, {"slots": {"memory": "p"}}, True, "explicit",
     "memory-slot", "selected for the memory slot"),
    ("memory slot beats allowlist", "bundled", {"kind": "memory"},
     {"slots": {"memory": "p"}, "allow": ["other"]}, True, "explicit", "memory-slot",
     "selected for the memory slot"),
    ("allowlist", "config", {}, {"allow": ["other"]}, False, "disabled", "allowlist",
     "not in allowlist"),
    ("allowlist beats bundled default", "bundled", DEFAULT_ON, {"allow": ["other"]}, False,
     "disabled", "allowlist", "not in allowlist"),
    ("allowlist beats entry on", "config", {}, {"allow": ["other"], **ON}, False, "disabled",
     "allowlist", "not in allowlist"),
    ("explicit entry enables a bundled default-off", "bundled", {}, ON, True, "explicit",
     "explicit", "enabled in config"),
    ("explicit allow, non-bundled", "global", {}, {"allow": ["p"]}, True, "explicit",
     "explicit", "enabled in config"),
    ("bundled default on", "bundled", DEFAULT_ON, {}, True, "default", "bundled-default-on",
     "bundled (enabled by default)"),
    ("bundled default on, also allowed", "bundled", DEFAULT_ON, {"allow": ["p"]}, True,
     "default", "bundled-default-on", "bundled (enabled by default)"),
    ("bundled default off", "bundled", {}, {}, False, "disabled", "bundled-default-off",
     "bundled (disabled by default)"),
    ("bundled allow does not enable", "bundled", {}, {"allow": ["p"]}, False, "disabled",
     "bundled-default-off", "bundled (disabled by default)"),
    ("enabledByDefault ignored outside bundled", "config", DEFAULT_ON, {}, True, "default",
     "origin-default", "config plugin (enabled by default)"),
    ("global default", "global", {}, {}, True, "default", "origin-default",
     "global plugin (enabled by default)"),
    ("installed default", "installed", {}, {}, True, "default", "origin-default",
     "installed plugin (enabled by default)"),
    ("other plugin's entry is ignored", "config", {}, {"entries": {"q": {"enabled": False}}},
     True, "default", "origin-default", "config plugin (enabled by default)"),
]


@pytest.mark.parametrize(
    ("origin", "extra", "plugins", "enabled", "source", "rule", "reason"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_rule_table(origin: str, extra: dict[str, Any], plugins: dict[str, Any], enabled: bool,
                    source: str, rule: str, reason: str) -> None:
    decision = decide(subject(origin, plugins, **extra))
    assert decision == Decision(enabled, source, reason, rule)  # type: ignore[arg-type]


def test_every_rule_is_covered_by_the_table() -> None:
    covered = {row[6] for row in TABLE}
    assert {rule.name for rule in RULES} <= covered
    assert covered <= {rule.name for rule in RULES}


def test_decide_is_pure_over_its_inputs() -> None:
    s = subject("global", {"allow": ["p"]})
    assert decide(s) == decide(s)
    assert activation.RULES[-1].applies(s)  # the fallback rule always applies


# -- memory slot --------------------------------------------------------------------------------


def memory_subjects(slot: str | None, entries: dict[str, Any] | None = None) -> list[Subject]:
    plugins = PluginsConfig.model_validate({"slots": {"memory": slot}, "entries": entries or {}})
    specs = [
        ("tools", {}),
        ("memory_a", {"kind": "memory"}),
        ("hybrid", {"kind": ["memory", "context-engine"]}),
        ("memory_b", {"kind": "memory"}),
        ("engine", {"kind": "context-engine"}),
    ]
    return [Subject(pid, "config", manifest(pid, **extra), plugins) for pid, extra in specs]


def slot_outcome(slot: str | None, entries: dict[str, Any] | None = None
                 ) -> dict[str, tuple[bool, str, str]]:
    subjects = memory_subjects(slot, entries)
    decisions = apply_memory_slot(subjects, [decide(s) for s in subjects])
    return {s.plugin_id: (d.enabled, d.rule, d.reason) for s, d in zip(subjects, decisions,
                                                                      strict=True)}


def test_memory_slot_none_disables_single_kind_memory_plugins() -> None:
    got = slot_outcome("none")
    assert got["memory_a"] == (False, "memory-slot-none", "memory slot disabled")
    assert got["memory_b"] == (False, "memory-slot-none", "memory slot disabled")
    assert got["hybrid"][0] and got["tools"][0] and got["engine"][0]


def test_memory_slot_explicit_id_selects_that_plugin() -> None:
    got = slot_outcome("memory_b")
    assert got["memory_b"] == (True, "memory-slot", "selected for the memory slot")
    assert got["memory_a"] == (False, "memory-slot-other", 'memory slot set to "memory_b"')
    assert got["hybrid"][0] and got["tools"][0]


def test_memory_slot_unset_first_wins() -> None:
    got = slot_outcome(None)
    assert got["memory_a"][0] is True
    assert got["memory_b"] == (False, "memory-slot-taken",
                               'memory slot already filled by "memory_a"')
    assert got["hybrid"][0] is True  # multi-kind is never disabled by the slot


def test_memory_slot_unset_skips_disabled_plugins() -> None:
    got = slot_outcome(None, {"memory_a": {"enabled": False}})
    assert got["memory_a"][:2] == (False, "entry-disabled")
    assert got["memory_b"][0] is True


def test_memory_slot_empty_input() -> None:
    assert apply_memory_slot([], []) == []


@pytest.mark.anyio
async def test_memory_fixtures_through_the_host(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "memory_a", "memory_b")
    settings = make_settings(tmp_path, plugins={"load_paths": [str(src)]})
    async with running_host(settings) as host:
        records = host.current.registry.records
        assert records["memory_a"].status == "loaded"
        assert records["memory_b"].status == "disabled"
        assert records["memory_b"].reason == 'memory slot already filled by "memory_a"'
        assert host.current.registry.tool("recall_a") is not None
        assert host.current.registry.tool("recall_b") is None
    chosen = make_settings(tmp_path, plugins={"load_paths": [str(src)],
                                              "slots": {"memory": "memory_b"}})
    async with running_host(chosen) as host:
        assert host.current.registry.tool("recall_b") is not None
        assert host.current.registry.tool("recall_a") is None
