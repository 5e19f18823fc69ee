"""The bundled plugins load through the ordinary path on a zero-config start."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawgate import config
from clawgate.plugins.host import PluginHost
from clawgate.providers.base import ModelRequest, TextDelta


@pytest.mark.anyio
async def test_zero_config_start_loads_bundled_plugins(tmp_path: Path) -> None:
    settings = config.load({"CLAWGATE_STATE_DIR": str(tmp_path)})
    host = PluginHost(settings)
    generation = await host.start()
    try:
        records = generation.registry.records
        assert records["echo"].status == "loaded"
        assert records["clock"].status == "loaded"
        assert records["openai"].status == "disabled"
        assert records["openai"].reason == "bundled (disabled by default)"
        assert generation.registry.tool("current_time") is not None
        echo = generation.registry.provider("echo")
        assert echo is not None
        request = ModelRequest("echo", ({"role": "user", "content": "hello"},))
        text = "".join([e.text async for e in echo.stream(request) if isinstance(e, TextDelta)])
        assert text == "hello"
        counters = host.metrics.counters()
        assert counters["plugin_generation_builds_total"] == 1
        assert counters["plugin_metadata_scans_total"] == 1
    finally:
        await host.aclose()
