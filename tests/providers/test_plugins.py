"""The provider plugins as the gateway loads them: the anthropic SDK stays out of a zero-config
gateway, config is validated by the manifests, and the catalogue reaches the registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clawgate import config
from clawgate.plugins.host import PluginHost
from clawgate.providers.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio

PROBE = textwrap.dedent("""
    import asyncio, sys, tempfile
    from pathlib import Path
    from clawgate import config
    from clawgate.plugins.host import PluginHost

    async def main(entries):
        with tempfile.TemporaryDirectory() as tmp:
            settings = config.Settings(config.parse({"plugins": {"entries": entries}}),
                                       state_dir=Path(tmp), config_path=Path(tmp) / "c.toml")
            host = PluginHost(settings)
            await host.start()
            providers = sorted(host.current.registry.providers)
            await host.aclose()
        print("anthropic" in sys.modules, ",".join(providers))

    asyncio.run(main(eval(sys.argv[1])))
""")


def probe(entries: dict) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, repr(entries)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_zero_config_gateway_does_not_import_the_sdk() -> None:
    assert probe({}) == "False echo"


def test_enabling_the_plugin_imports_the_sdk_and_registers_the_provider() -> None:
    assert probe({"anthropic": {"enabled": True}}) == "True anthropic,echo"


async def _host(tmp_path: Path, entries: dict) -> PluginHost:
    settings = config.Settings(config.parse({"plugins": {"entries": entries}}),
                               state_dir=tmp_path, config_path=tmp_path / "c.toml")
    host = PluginHost(settings)
    await host.start()
    return host


async def test_the_configured_catalogue_reaches_models(tmp_path: Path) -> None:
    models = [{"id": "claude-a", "alias": "a", "context_window": 200_000,
               "cost": {"input": 3, "output": 15}}, "claude-b"]
    host = await _host(tmp_path, {
        "anthropic": {"enabled": True, "config": {"models": models}},
        "openai": {"enabled": True, "config": {"api": "responses",
                                               "models": [{"id": "o", "api": "chat"}]}}})
    try:
        registry = host.current.registry
        catalog = Catalog.of(e.provider for e in registry.providers.values())
        assert catalog.resolve("", "a") == ("anthropic", "claude-a")
        assert [r["ref"] for r in catalog.rows()] == [
            "anthropic/claude-a", "anthropic/claude-b", "echo/echo", "openai/o"]
        openai = registry.provider("openai")
        assert openai is not None and openai.api_for("o") == "chat"  # type: ignore[attr-defined]
        assert openai.api_for("x") == "responses"  # type: ignore[attr-defined]
    finally:
        await host.aclose()


@pytest.mark.parametrize("bad", [
    {"models": [{"id": "x", "cost": {"input": 1}}]},  # output price missing
    {"profiles": [{"id": "a"}]},  # no api_key_env
    {"thinking_budgets": {"high": 10}},  # below the API's floor
    {"cooldowns_s": []},
])
async def test_bad_config_is_refused_by_the_schema(tmp_path: Path, bad: dict) -> None:
    host = await _host(tmp_path, {"anthropic": {"enabled": True, "config": bad}})
    try:
        record = host.current.registry.record("anthropic")
        assert record is not None and record.status == "error"
        assert "invalid config" in record.reason or "invalid config" in (record.error or "")
        assert host.current.registry.provider("anthropic") is None
    finally:
        await host.aclose()


async def test_the_documented_example_loads(tmp_path: Path) -> None:
    import re
    import tomllib

    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = doc.split("## Provider plugins", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None
    data = tomllib.loads(match[1])
    settings = config.Settings(config.parse(data), state_dir=tmp_path,
                               config_path=tmp_path / "c.toml")
    host = PluginHost(settings)
    await host.start()
    try:
        registry = host.current.registry
        for plugin in ("anthropic", "openai"):
            record = registry.record(plugin)
            assert record is not None and record.status == "loaded", record
        catalog = Catalog.of(e.provider for e in registry.providers.values())
        assert catalog.resolve("", "sonnet") == ("anthropic", "claude-sonnet-4-5")
        assert catalog.get("openai", "o3-pro").api == "responses"  # type: ignore[union-attr]
    finally:
        await host.aclose()
