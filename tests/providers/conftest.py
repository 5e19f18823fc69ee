"""Fixtures for provider tests through the engine: a real plugin host (bundled plugins from
disk), a SQLite store in tmp_path, and the loopback fakes; everything is closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from clawgate import config
from clawgate.runtime import Runtime
from tests.agents.conftest import ENGINE_TOOLS, Harness
from tests.support.mock_anthropic import mock_anthropic_factory  # noqa: F401 (fixture)
from tests.support.mock_responses import mock_responses_factory  # noqa: F401 (fixture)

Factory = Callable[..., Awaitable[Harness]]


def plugins(**entries: Mapping[str, Any]) -> dict[str, Any]:
    """``[plugins]`` enabling the given bundled plugins with their config (and the engine
    tools fixture plugin, for its ``lookup`` tool)."""
    table = {name: {"enabled": True, "config": dict(cfg)} for name, cfg in entries.items()}
    table["engine_tools"] = {"enabled": True, "config": {}}
    return {"load_paths": [str(ENGINE_TOOLS)], "entries": table}


@pytest.fixture
async def engine_with(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Factory]:
    """``await engine_with(plugins=..., model=..., engine=...)`` -> a started Harness."""
    built: list[Harness] = []

    async def factory(*, plugins: Mapping[str, Any], model: Any,
                      engine: Mapping[str, Any] | None = None) -> Harness:
        data = {"plugins": dict(plugins), "engine": dict(engine or {}),
                "agents": [{"id": "main", "default": True, "model": model}]}
        settings = config.Settings(config.parse(data), state_dir=tmp_path,
                                   config_path=tmp_path / "clawgate.toml")
        runtime = Runtime(settings, drain_deadline_s=5.0)
        await runtime.start()
        harness = Harness(runtime)
        built.append(harness)
        return harness

    yield factory
    for harness in reversed(built):
        await harness.close()
