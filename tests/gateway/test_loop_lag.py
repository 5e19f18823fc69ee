"""A blocking call in async plugin code is seen: ``event_loop_lag_seconds``, a warning naming
the hook and plugin that was running, and a diagnostics timeline record (issue 7, item 6)."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from tests.support.gateway_server import serve_gateway
from tests.support.poll import until

pytestmark = pytest.mark.anyio
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


async def test_a_blocking_async_hook_is_named(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    timeline = tmp_path / "timeline.jsonl"
    config = {"plugins": {"load_paths": [str(FIXTURES / "blocking_hook")]}}
    env = {"CLAWGATE_DIAGNOSTICS": "1", "CLAWGATE_DIAGNOSTICS_TIMELINE_PATH": str(timeline)}
    caplog.set_level(logging.WARNING, logger="clawgate.loop")
    async with serve_gateway(tmp_path / "state", config, env=env) as server, \
            server.client() as http:
        r = await http.post("/v1/chat/completions", json={
            "model": "clawgate", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        metrics = server.gateway.metrics
        await until(lambda: metrics.get("event_loop_stalls_total") >= 1)
        text = (await http.get("/metrics")).text
        assert "event_loop_lag_seconds_bucket" in text
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "clawgate.loop" and "blocking_hook" in r.getMessage()]
    assert len(warnings) == 1
    assert "event loop blocked for" in warnings[0]
    assert "hook before_prompt_build of plugin 'blocking_hook'" in warnings[0]
    assert "stall_the_loop" in warnings[0]
    records = [orjson.loads(line) for line in timeline.read_bytes().splitlines()]
    stall = next(r for r in records if r.get("name") == "event_loop.stall")
    assert stall["type"] == "diagnostic.event"
    assert stall["attributes"]["lagMs"] >= 250
    assert "blocking_hook" in stall["attributes"]["running"]
