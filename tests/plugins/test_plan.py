"""LoadPlan identity (I1): equal effective inputs give equal digests however they were spelled;
any behaviour-relevant change gives a different digest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clawgate import config
from clawgate.errors import PluginError
from clawgate.plugins import discovery
from clawgate.plugins.discovery import Inventory
from clawgate.plugins.metadata import build_snapshot
from clawgate.plugins.plan import LoadPlan, derive_plan, make_plan
from clawgate.plugins.schemas import SchemaCache
from tests.plugins.factory import copy_fixtures, make_plugin, make_settings, running_host

IDS = ("good_tool", "good_provider", "slow_service", "memory_a")
LOG = "/var/tmp/clawgate-plan-test.log"


def scan(src: Path) -> Inventory:
    return discovery.scan(discovery.sources(
        load_paths=[str(src)], state_dir=src.parent, workspaces=(), bundled_root=None,
        entry_points=()))


def plan_for(inventory: Inventory, data: dict[str, Any]) -> LoadPlan:
    plugins = config.parse(data).plugins
    return derive_plan(build_snapshot(inventory, plugins, SchemaCache()))


def baseline(src: Path) -> dict[str, Any]:
    return {"plugins": {
        "load_paths": [str(src)],
        "allow": list(IDS),
        "entries": {"slow_service": {"config": {"log": LOG}}},
    }}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Inventory, LoadPlan]:
    src = copy_fixtures(tmp_path_factory.mktemp("plan") / "load", *IDS)
    inventory = scan(src)
    plan = plan_for(inventory, baseline(src))
    assert plan.ids == frozenset(IDS)
    return src, inventory, plan


def shuffled(draw: st.DrawFn, mapping: dict[str, Any]) -> dict[str, Any]:
    keys = draw(st.permutations(list(mapping)))
    return {k: mapping[k] for k in keys}


def spelled_ids(draw: st.DrawFn, ids: list[str]) -> list[str]:
    """The same set of ids, reordered, with duplicates and whitespace."""
    out: list[str] = []
    for pid in draw(st.permutations(ids)):
        for _ in range(draw(st.integers(1, 3))):
            out.append(draw(st.sampled_from(["", " ", "\t"])) + pid
                       + draw(st.sampled_from(["", " ", "  "])))
    return out


@st.composite
def equivalent(draw: st.DrawFn, src: Path) -> dict[str, Any]:
    """A config dict whose effective plugin inputs equal baseline(src)'s."""
    entries: dict[str, Any] = {}
    tool = draw(st.sampled_from([None, {}, {"config": {}}, {"config": {"greeting": "hello"}},
                                 {"enabled": True}, {"enabled": True, "config": {}}]))
    if tool is not None:
        entries["good_tool"] = tool
    slow_config = {"log": LOG}
    if draw(st.booleans()):
        slow_config["tag"] = "one"  # the schema default, given explicitly
    slow: dict[str, Any] = {"config": shuffled(draw, slow_config)}
    if draw(st.booleans()):
        slow["enabled"] = True
    entries["slow_service"] = shuffled(draw, slow)
    if draw(st.booleans()):
        entries["good_provider"] = {"config": {}}
    plugins: dict[str, Any] = {"load_paths": [str(src)], "allow": spelled_ids(draw, list(IDS)),
                               "entries": shuffled(draw, entries)}
    if draw(st.booleans()):
        plugins["deny"] = spelled_ids(draw, ["nobody"])
    if draw(st.booleans()):
        plugins["enabled"] = True
    if draw(st.booleans()):
        plugins["slots"] = {}
    data: dict[str, Any] = {"plugins": shuffled(draw, plugins)}
    if draw(st.booleans()):
        data["gateway"] = {"port": draw(st.integers(0, 65535)),
                           "bind": draw(st.sampled_from(["127.0.0.1", "0.0.0.0"]))}
    if draw(st.booleans()):
        data["engine"] = {"max_concurrent": draw(st.integers(1, 64)),
                          "queue_mode": draw(st.sampled_from(["followup", "collect"]))}
    if draw(st.booleans()):
        data["session"] = {"main_key": draw(st.sampled_from(["main", "home"]))}
    return shuffled(draw, data)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_equal_effective_inputs_give_equal_plans(
    world: tuple[Path, Inventory, LoadPlan], data: st.DataObject
) -> None:
    src, inventory, expected = world
    spelled = data.draw(equivalent(src))
    plan = plan_for(inventory, spelled)
    assert plan.digest == expected.digest
    assert plan == expected


@settings(max_examples=60, deadline=None)
@given(greeting=st.text(max_size=12).filter(lambda s: s != "hello"))
def test_any_plugin_config_value_change_changes_the_plan(
    world: tuple[Path, Inventory, LoadPlan], greeting: str
) -> None:
    src, inventory, expected = world
    data = baseline(src)
    data["plugins"]["entries"]["good_tool"] = {"config": {"greeting": greeting}}
    plan = plan_for(inventory, data)
    assert plan.digest != expected.digest
    assert plan.ids == expected.ids
    changed = {a.id for a, b in zip(plan.entries, expected.entries, strict=True) if a != b}
    assert changed == {"good_tool"}


CHANGES: dict[str, Any] = {
    "entry disabled": lambda p: p["entries"].update(good_tool={"enabled": False}),
    "denied": lambda p: p.update(deny=["good_provider"]),
    "removed from allow": lambda p: p.update(allow=list(IDS[:-1])),
    "other config value": lambda p: p["entries"]["slow_service"]["config"].update(tag="two"),
    "plugins disabled": lambda p: p.update(enabled=False),
    "memory slot none": lambda p: p.update(slots={"memory": "none"}),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_behaviour_relevant_config_changes_change_the_plan(
    world: tuple[Path, Inventory, LoadPlan], change: str
) -> None:
    src, inventory, expected = world
    data = baseline(src)
    CHANGES[change](data["plugins"])
    assert plan_for(inventory, data).digest != expected.digest


def test_manifest_change_changes_the_plan(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", *IDS)
    before = plan_for(scan(src), baseline(src))
    manifest = src / "good_tool" / "clawgate.plugin.json"
    manifest.write_text(manifest.read_text().replace("one hook", "one hook, v2"))
    after = plan_for(scan(src), baseline(src))
    assert after.digest != before.digest
    assert plan_for(scan(src), baseline(src)) == after


def test_entry_file_change_changes_the_plan(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", *IDS)
    before = plan_for(scan(src), baseline(src))
    entry = src / "good_tool" / "plugin.py"
    entry.write_text(entry.read_text() + "\n# edited\n")
    assert plan_for(scan(src), baseline(src)).digest != before.digest


def test_same_size_entry_edit_with_preserved_mtime_changes_the_plan(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", *IDS)
    entry = src / "good_tool" / "plugin.py"
    before = plan_for(scan(src), baseline(src))
    info = entry.stat()
    entry.write_text(entry.read_text().replace("someone by name", "someone by nick"))
    os.utime(entry, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert entry.stat().st_size == info.st_size
    assert plan_for(scan(src), baseline(src)).digest != before.digest


def test_edit_of_an_imported_sibling_module_changes_the_plan(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_plugin(src, "helped", code="from . import helper\n\n\ndef register(api):\n    pass\n",
                files={"helper.py": "VALUE = 1\n"})
    data = {"plugins": {"load_paths": [str(src)]}}
    before = plan_for(scan(src), data)
    (src / "helped" / "helper.py").write_text("VALUE = 22222\n")
    assert plan_for(scan(src), data).digest != before.digest


def test_make_plan_is_order_sensitive_and_subset_keeps_entries(
    world: tuple[Path, Inventory, LoadPlan]
) -> None:
    _, _, plan = world
    assert make_plan(reversed(plan.entries)).digest != plan.digest
    sub = plan.subset(["good_tool", "unknown"])
    assert sub.ids == {"good_tool"}
    assert plan.contains(sub)
    assert not sub.contains(plan)
    assert plan.subset(plan.ids) == plan


@pytest.mark.anyio
async def test_host_plan_ignores_how_settings_were_spelled(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", *IDS)
    rich = make_settings(
        tmp_path,
        plugins={**baseline(src)["plugins"], "deny": [" nobody ", "nobody"],
                 "entries": {"slow_service": {"config": {"tag": "one", "log": LOG}},
                             "good_tool": {"config": {"greeting": "hello"}, "enabled": True}}},
        agents=[{"id": "main", "name": "Main", "model": "openai/gpt-5", "default": True}],
        gateway={"port": 9999}, engine={"max_concurrent": 9},
    )
    lean = make_settings(tmp_path, plugins=baseline(src)["plugins"])
    async with running_host(rich) as host:
        assert host.plan(lean) == host.current.plan
        assert host.plan(rich) == host.current.plan
        assert host.plan(lean, ["good_tool"]) == host.current.plan.subset(["good_tool"])
        with pytest.raises(PluginError, match="not enabled"):
            host.plan(lean, ["good_tool", "nope"])
        elsewhere = make_settings(tmp_path, plugins={"load_paths": [str(tmp_path)]})
        with pytest.raises(PluginError, match="other folders"):
            host.plan(elsewhere)
        other_agents = make_settings(tmp_path, plugins=baseline(src)["plugins"],
                                     agents=[{"id": "b", "workspace": "wb"}])
        with pytest.raises(PluginError, match="other folders"):
            host.plan(other_agents)
