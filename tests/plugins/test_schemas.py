"""Schema checks are remembered by content in the state dir: an unchanged restart never imports
jsonschema, while a changed or broken manifest or config is checked again and refused with the
same message every time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from clawgate.config import PluginsConfig
from clawgate.errors import ManifestError
from clawgate.plugins import discovery
from clawgate.plugins.manifest import MANIFEST_NAME, read_manifest
from clawgate.plugins.metadata import build_snapshot
from clawgate.plugins.schemas import CACHE_FILE, SchemaCache
from tests.plugins.factory import make_plugin

BROKEN = {"id": "broken", "configSchema": {"type": "object", "properties": {"n": {"type": 5}}}}
TYPED = {"type": "object", "properties": {"port": {"type": "integer", "default": 80}}}


def scan(load: Path, state: Path) -> tuple[discovery.Inventory, SchemaCache]:
    schemas = SchemaCache(state)
    found = discovery.sources(load_paths=[str(load)], state_dir=state, workspaces=(),
                              bundled_root=None, entry_points=())
    inventory = discovery.scan(found, schemas)
    schemas.save()
    return inventory, schemas


def test_an_unchanged_manifest_is_checked_once_per_state_dir(tmp_path: Path) -> None:
    make_plugin(tmp_path / "load", "weather", manifest_overrides={"configSchema": TYPED})
    state = tmp_path / "state"
    first, schemas = scan(tmp_path / "load", state)
    assert [c.id for c in first.candidates] == ["weather"]
    assert (schemas.checked, schemas.remembered) == (1, 0)
    assert (state / CACHE_FILE).stat().st_mode & 0o077 == 0
    again, schemas = scan(tmp_path / "load", state)
    assert (schemas.checked, schemas.remembered) == (0, 1)
    assert again.digest == first.digest


def test_a_changed_manifest_is_checked_again_and_a_broken_one_every_time(
        tmp_path: Path) -> None:
    root = make_plugin(tmp_path / "load", "weather", manifest_overrides={"configSchema": TYPED})
    state = tmp_path / "state"
    scan(tmp_path / "load", state)
    (root / MANIFEST_NAME).write_text(json.dumps(
        {**BROKEN, "id": "weather"}), encoding="utf-8")
    reasons = []
    for _ in range(2):
        inventory, schemas = scan(tmp_path / "load", state)
        assert inventory.candidates == () and schemas.checked == 1
        (refusal,) = inventory.refusals
        reasons.append(refusal.reason)
    with pytest.raises(ManifestError) as fresh:  # what a check without any cache says
        read_manifest(root / MANIFEST_NAME)
    assert reasons == [str(fresh.value)] * 2
    assert "not a valid JSON Schema at 'properties/n/type'" in reasons[0]


def test_a_damaged_or_foreign_cache_file_only_costs_a_check(tmp_path: Path) -> None:
    make_plugin(tmp_path / "load", "weather")
    state = tmp_path / "state"
    scan(tmp_path / "load", state)
    data = orjson.loads((state / CACHE_FILE).read_bytes())
    for body in (b"{not json", orjson.dumps({**data, "stamp": ["0.0.0", "1.0"]})):
        (state / CACHE_FILE).write_bytes(body)
        inventory, schemas = scan(tmp_path / "load", state)
        assert [c.id for c in inventory.candidates] == ["weather"]
        assert (schemas.checked, schemas.remembered) == (1, 0)


def test_config_validation_is_remembered_and_an_invalid_config_is_refused_each_time(
        tmp_path: Path) -> None:
    make_plugin(tmp_path / "load", "weather", manifest_overrides={"configSchema": TYPED})
    state = tmp_path / "state"

    def snapshot(config: dict[str, Any]) -> tuple[str, str, int]:
        inventory, schemas = scan(tmp_path / "load", state)
        plugins = PluginsConfig.model_validate({"entries": {"weather": {"config": config}}})
        meta = build_snapshot(inventory, plugins, schemas).by_id["weather"]
        schemas.save()
        return meta.status, meta.reason, schemas.checked

    assert snapshot({"port": 8080})[::2] == ("enabled", 2)  # the manifest, then the config
    assert snapshot({"port": 8080})[::2] == ("enabled", 0)
    bad = snapshot({"port": "eighty"})
    assert bad == snapshot({"port": "eighty"})
    assert bad[0] == "error" and bad[1].startswith("invalid config at $.port:")
    assert bad[2] == 1


def test_a_gateway_restart_with_unchanged_plugins_does_not_import_jsonschema(
        tmp_path: Path) -> None:
    # A fresh interpreter per start, as `clawgate gateway` is: sys.modules tells what it read.
    script = textwrap.dedent("""
        import asyncio, sys
        from clawgate import config
        from clawgate.plugins.host import PluginHost

        async def main():
            host = PluginHost(config.load())
            generation = await host.start(services=False)
            await host.aclose()
            loaded = sorted(r.id for r in generation.registry.records.values()
                            if r.status == "loaded")
            print(host.metrics.value("plugin_schema_checks"), "jsonschema" in sys.modules,
                  ",".join(loaded))

        asyncio.run(main())
    """)
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(tmp_path)}
    env.pop("CLAWGATE_CONFIG", None)

    def start() -> list[str]:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout.split()

    checks, imported, first = start()
    assert int(checks) > 0 and imported == "True"
    checks, imported, again = start()
    assert (int(checks), imported) == (0, "False")
    assert again == first and "echo" in first.split(",")
