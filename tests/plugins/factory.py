"""Small factories for plugin-runtime tests: plugin folders on disk, settings, started hosts."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from clawgate import config
from clawgate.config import Settings
from clawgate.plugins.host import PluginHost
from clawgate.plugins.manifest import MANIFEST_NAME
from tests.support.poll import until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "plugins"

DEFAULT_CODE = """
def register(api):
    pass
"""


def make_plugin(
    parent: Path,
    plugin_id: str,
    *,
    code: str = DEFAULT_CODE,
    manifest_overrides: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
    folder: str | None = None,
) -> Path:
    """Write a plugin folder ``parent/<folder or id>`` with a manifest and ``plugin.py``."""
    root = parent / (folder or plugin_id)
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"id": plugin_id, "configSchema": {"type": "object"}}
    manifest.update(manifest_overrides or {})
    (root / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    (root / "plugin.py").write_text(textwrap.dedent(code), encoding="utf-8")
    for name, text in (files or {}).items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def make_settings(
    state_dir: Path,
    *,
    plugins: Mapping[str, Any] | None = None,
    agents: Sequence[Mapping[str, Any]] | None = None,
    **sections: Any,
) -> Settings:
    """Settings built the way ``config.load`` builds them, from a plain dict."""
    data: dict[str, Any] = dict(sections)
    if plugins is not None:
        data["plugins"] = dict(plugins)
    if agents is not None:
        data["agents"] = list(agents)
    return Settings(
        config=config.parse(data), state_dir=state_dir, config_path=state_dir / "clawgate.toml"
    )


def copy_fixtures(dest: Path, *names: str) -> Path:
    """Copy fixture plugins into ``dest`` (a folder of plugins) so tests may modify them."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copytree(FIXTURES / name, dest / name)
    return dest


@asynccontextmanager
async def running_host(
    settings: Settings, *, bundled_root: Path | None = None, **kwargs: Any
) -> AsyncIterator[PluginHost]:
    """A started PluginHost (no bundled plugins unless asked) that is always closed."""
    host = PluginHost(settings, bundled_root=bundled_root, **kwargs)
    try:
        await host.start()
        yield host
    finally:
        await host.aclose()


async def wait_for(predicate: Callable[[], bool], *, deadline_s: float = 5.0) -> None:
    """Yield to the loop until ``predicate()`` holds; fail after the deadline (no sleeping)."""
    await until(predicate, within=deadline_s)
