"""Discovery finds every origin, resolves duplicate ids by precedence and refuses unsafe folders
(checked on real files) before any plugin code runs."""

from __future__ import annotations

import importlib.metadata
import os
import stat
from pathlib import Path

import pytest

from clawgate.plugins import discovery
from clawgate.plugins.discovery import Candidate, Inventory, Refusal
from clawgate.plugins.manifest import MANIFEST_NAME
from tests.plugins.factory import make_plugin, make_settings, running_host

# Code that would betray an import: discovery must never run it.
TRIPWIRE = "raise SystemExit('discovery imported plugin code')\n"


def scan(
    state: Path,
    *,
    load_paths: tuple[str, ...] = (),
    workspaces: tuple[Path, ...] = (),
    bundled_root: Path | None = None,
    entry_points: tuple[importlib.metadata.EntryPoint, ...] = (),
) -> Inventory:
    found = discovery.sources(load_paths=load_paths, state_dir=state, workspaces=workspaces,
                              bundled_root=bundled_root, entry_points=entry_points)
    return discovery.scan(found)


def only_refusal(inventory: Inventory) -> Refusal:
    assert inventory.candidates == ()
    assert len(inventory.refusals) == 1
    return inventory.refusals[0]


def test_config_load_path_single_plugin_folder(tmp_path: Path) -> None:
    root = make_plugin(tmp_path / "src", "solo", code=TRIPWIRE)
    inventory = scan(tmp_path, load_paths=(str(root),))
    (candidate,) = inventory.candidates
    assert (candidate.id, candidate.origin, candidate.root) == ("solo", "config", root)
    assert candidate.entry_file == root / "plugin.py"


def test_config_load_path_folder_of_plugins_relative_to_state_dir(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ("b", "a"):
        make_plugin(src, name, code=TRIPWIRE)
    (src / ".hidden").mkdir()
    (src / "_private").mkdir()
    (src / "notes.txt").write_text("not a plugin")
    inventory = scan(tmp_path, load_paths=("src",))
    assert [(c.id, c.origin) for c in inventory.candidates] == [("a", "config"), ("b", "config")]
    assert inventory.refusals == ()


def test_missing_load_path_is_empty(tmp_path: Path) -> None:
    assert scan(tmp_path, load_paths=("nowhere",)).candidates == ()


def test_bundled_origin(tmp_path: Path) -> None:
    bundled = tmp_path / "bundled"
    make_plugin(bundled, "core", code=TRIPWIRE)
    (candidate,) = scan(tmp_path, bundled_root=bundled).candidates
    assert (candidate.id, candidate.origin) == ("core", "bundled")


def test_real_bundled_plugins_are_found() -> None:
    found = discovery.sources(load_paths=(), state_dir=Path("/nonexistent"), workspaces=(),
                              entry_points=())
    inventory = discovery.scan(found)
    ids = {c.id for c in inventory.candidates if c.origin == "bundled"}
    assert {"echo", "clock", "openai"} <= ids


def test_installed_origin_via_entry_point_without_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    make_plugin(site, "installed_thing", folder="cg_installed_pkg", code=TRIPWIRE)
    monkeypatch.syspath_prepend(str(site))
    eps = (
        importlib.metadata.EntryPoint(name="x", value="cg_installed_pkg", group="clawgate.plugins"),
        importlib.metadata.EntryPoint(name="y", value="cg_no_such_pkg:register",
                                      group="clawgate.plugins"),
    )
    inventory = scan(tmp_path, entry_points=eps)
    (candidate,) = inventory.candidates
    assert (candidate.id, candidate.origin) == ("installed_thing", "installed")
    assert candidate.root == site / "cg_installed_pkg"


def test_global_origin(tmp_path: Path) -> None:
    make_plugin(tmp_path / "plugins", "glob", code=TRIPWIRE)
    (candidate,) = scan(tmp_path).candidates
    assert (candidate.id, candidate.origin, candidate.workspace) == ("glob", "global", None)


def test_workspace_origin_for_two_agents(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agents=[{"id": "a", "workspace": "ws-a"},
                                               {"id": "b", "workspace": "ws-b"}])
    ws_a, ws_b = settings.workspaces()
    make_plugin(ws_a / ".clawgate" / "plugins", "pa", code=TRIPWIRE)
    make_plugin(ws_b / ".clawgate" / "plugins", "pb", code=TRIPWIRE)
    inventory = scan(tmp_path, workspaces=settings.workspaces())
    got = {(c.id, c.origin, c.workspace) for c in inventory.candidates}
    assert got == {("pa", "workspace", ws_a), ("pb", "workspace", ws_b)}


def test_precedence_across_all_five_origins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "ws"
    roots = {
        "config": make_plugin(tmp_path / "cfg", "dup"),
        "bundled": make_plugin(tmp_path / "bundled", "dup"),
        "installed": make_plugin(tmp_path / "site", "dup", folder="cg_dup_pkg"),
        "global": make_plugin(tmp_path / "plugins", "dup"),
        "workspace": make_plugin(ws / ".clawgate" / "plugins", "dup"),
    }
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    ep = importlib.metadata.EntryPoint(name="dup", value="cg_dup_pkg", group="clawgate.plugins")
    kwargs = dict(workspaces=(ws,), bundled_root=tmp_path / "bundled", entry_points=(ep,))

    inventory = scan(tmp_path, load_paths=("cfg",), **kwargs)
    (winner,) = inventory.candidates
    assert winner.origin == "config"
    assert [(r.origin, r.status, r.plugin_id) for r in inventory.refusals] == [
        ("bundled", "overridden", "dup"), ("installed", "overridden", "dup"),
        ("global", "overridden", "dup"), ("workspace", "overridden", "dup"),
    ]
    assert all(r.reason == f"overridden by config plugin at {roots['config']}"
               for r in inventory.refusals)

    # Without the config copy, bundled wins: global and workspace copies cannot shadow it.
    inventory = scan(tmp_path, **kwargs)
    assert [c.origin for c in inventory.candidates] == ["bundled"]
    assert {r.origin for r in inventory.refusals} == {"installed", "global", "workspace"}
    assert all(r.reason.startswith("overridden by bundled plugin") for r in inventory.refusals)


# -- safety gates, on real files ---------------------------------------------------------------


def test_entry_symlink_escaping_the_root_is_blocked(tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text(TRIPWIRE)
    root = make_plugin(tmp_path / "src", "escaper")
    (root / "plugin.py").unlink()
    (root / "plugin.py").symlink_to(outside)
    refusal = only_refusal(scan(tmp_path, load_paths=("src",)))
    assert refusal.status == "blocked"
    assert refusal.plugin_id == "escaper"
    assert "outside the plugin root" in refusal.reason


def test_manifest_symlink_escaping_the_root_is_blocked(tmp_path: Path) -> None:
    elsewhere = make_plugin(tmp_path / "elsewhere", "other")
    root = make_plugin(tmp_path / "src", "linked")
    (root / MANIFEST_NAME).unlink()
    (root / MANIFEST_NAME).symlink_to(elsewhere / MANIFEST_NAME)
    refusal = only_refusal(scan(tmp_path, load_paths=("src",)))
    assert refusal.status == "blocked"
    assert "outside the plugin root" in refusal.reason


def test_symlink_inside_the_root_is_fine(tmp_path: Path) -> None:
    root = make_plugin(tmp_path / "src", "inner", manifest_overrides={"entry": "real:register"})
    (root / "plugin.py").rename(root / "real_impl.py")
    (root / "real.py").symlink_to(root / "real_impl.py")
    (candidate,) = scan(tmp_path, load_paths=("src",)).candidates
    assert candidate.id == "inner"


@pytest.mark.parametrize("target", ["root", "entry", "manifest"])
def test_world_writable_is_blocked_for_non_bundled(tmp_path: Path, target: str) -> None:
    root = make_plugin(tmp_path / "src", "loose")
    path = {"root": root, "entry": root / "plugin.py", "manifest": root / MANIFEST_NAME}[target]
    path.chmod(path.stat().st_mode | stat.S_IWOTH)
    refusal = only_refusal(scan(tmp_path, load_paths=("src",)))
    assert refusal.status == "blocked"
    assert "world-writable" in refusal.reason
    assert path.stat().st_mode & stat.S_IWOTH  # not "repaired" for a non-bundled origin


@pytest.mark.anyio
async def test_world_writable_bundled_plugin_is_repaired_and_loads(tmp_path: Path) -> None:
    bundled = tmp_path / "bundled"
    root = make_plugin(
        bundled, "core_tool", manifest_overrides={"enabledByDefault": True},
        code="def register(api):\n    api.register_tool(lambda a: 'ok', name='core_tool')\n",
    )
    root.chmod(0o777)
    (root / "plugin.py").chmod(0o666)
    settings = make_settings(tmp_path)
    async with running_host(settings, bundled_root=bundled) as host:
        assert host.current.registry.records["core_tool"].status == "loaded"
        assert host.current.registry.tool("core_tool") is not None
    assert not root.stat().st_mode & stat.S_IWOTH
    assert not (root / "plugin.py").stat().st_mode & stat.S_IWOTH
    assert stat.S_IMODE(root.stat().st_mode) == 0o775


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")


@needs_root
def test_foreign_owner_is_blocked_for_non_bundled(tmp_path: Path) -> None:
    root = make_plugin(tmp_path / "src", "foreign")
    os.chown(root / "plugin.py", 12345, 12345)
    refusal = only_refusal(scan(tmp_path, load_paths=("src",)))
    assert refusal.status == "blocked"
    assert "uid 12345" in refusal.reason
    os.chown(root / "plugin.py", 0, 0)
    os.chown(root, 12345, 12345)
    assert "uid 12345" in only_refusal(scan(tmp_path, load_paths=("src",))).reason


@needs_root
def test_foreign_owner_is_accepted_for_bundled(tmp_path: Path) -> None:
    root = make_plugin(tmp_path / "bundled", "shipped")
    os.chown(root, 12345, 12345)
    os.chown(root / "plugin.py", 12345, 12345)
    (candidate,) = scan(tmp_path, bundled_root=tmp_path / "bundled").candidates
    assert candidate.id == "shipped"


def test_missing_entry_module_is_an_error_refusal(tmp_path: Path) -> None:
    root = make_plugin(tmp_path / "src", "noentry", manifest_overrides={"entry": "main:register"})
    refusal = only_refusal(scan(tmp_path, load_paths=("src",)))
    assert refusal.status == "error"
    assert refusal.plugin_id == "noentry"
    assert "'main' not found" in refusal.reason
    # a package entry (folder with __init__.py) is accepted
    (root / "main").mkdir()
    (root / "main" / "__init__.py").write_text("def register(api):\n    pass\n")
    (candidate,) = scan(tmp_path, load_paths=("src",)).candidates
    assert candidate.entry_file == root / "main" / "__init__.py"


def test_invalid_manifest_and_missing_manifest_are_error_refusals(tmp_path: Path) -> None:
    bad = make_plugin(tmp_path / "src", "bad", manifest_overrides={"kind": "nope"})
    (tmp_path / "src" / "empty").mkdir()
    inventory = scan(tmp_path, load_paths=("src",))
    assert inventory.candidates == ()
    by_root = {r.root: r for r in inventory.refusals}
    assert by_root[bad].status == "error" and by_root[bad].plugin_id == "bad"
    assert "kind" in by_root[bad].reason
    assert by_root[tmp_path / "src" / "empty"].status == "error"


def test_manifest_warnings_reach_the_inventory(tmp_path: Path) -> None:
    make_plugin(tmp_path / "src", "newer", manifest_overrides={"fromTheFuture": True})
    inventory = scan(tmp_path, load_paths=("src",))
    assert [c.id for c in inventory.candidates] == ["newer"]
    assert any("fromTheFuture" in w for w in inventory.warnings)


def test_inventory_digest_tracks_manifest_and_entry_changes(tmp_path: Path) -> None:
    root = make_plugin(tmp_path / "src", "tracked")

    def digest() -> str:
        return scan(tmp_path, load_paths=("src",)).digest

    first = digest()
    assert digest() == first  # rescanning unchanged files gives the same digest
    make_plugin(tmp_path / "src", "tracked", manifest_overrides={"description": "v2"})
    after_manifest = digest()
    assert after_manifest != first
    (root / "plugin.py").write_text("def register(api):\n    api.logger.info('v2')\n")
    after_entry = digest()
    assert after_entry not in (first, after_manifest)
    make_plugin(tmp_path / "src", "another")
    assert digest() not in (first, after_manifest, after_entry)


def test_inspect_source_never_imports(tmp_path: Path) -> None:
    root = make_plugin(tmp_path, "quiet", code=TRIPWIRE)
    result = discovery.inspect_source(discovery.Source("config", root))
    assert isinstance(result, Candidate)


def test_every_python_file_passes_the_gates_not_only_the_entry(tmp_path: Path) -> None:
    outside = tmp_path / "outside.py"
    outside.write_text("print('runs with the plugin trust')\n")
    root = make_plugin(tmp_path / "plugins", "sneaky")
    (root / "helper.py").symlink_to(outside)
    result = discovery.inspect_source(discovery.Source("config", root))
    assert isinstance(result, Refusal) and result.status == "blocked"
    assert "helper.py" in result.reason and "outside the plugin root" in result.reason
    (root / "helper.py").unlink()
    (root / "helper.py").write_text("X = 1\n")
    os.chmod(root / "helper.py", 0o666)
    result = discovery.inspect_source(discovery.Source("config", root))
    assert isinstance(result, Refusal) and "world-writable" in result.reason
    os.chmod(root / "helper.py", 0o644)
    assert isinstance(discovery.inspect_source(discovery.Source("config", root)), Candidate)
