"""Streamed completions across agents while sessions.list runs: no plugin work on the request
path, read from /metrics as an operator would."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import orjson
import pytest

from tests.support.gateway_server import serve_gateway
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio
WATCHED = ("plugin_metadata_scans_total", "plugin_loads_on_request_total",
           "plugin_generation_builds_total")
AGENTS = ("main", "ops", "research", "support")


def counters(text: str) -> dict[str, float]:
    found = {}
    for name in WATCHED:
        match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
        assert match, name
        found[name] = float(match.group(1))
    return found


async def test_32_streams_over_4_agents_while_listing(tmp_path: Path) -> None:
    config = {
        "agents": [{"id": a, "default": a == "main"} for a in AGENTS],
        "plugins": {"entries": {"echo": {"config": {"delay_ms": 30, "chunk_chars": 3}}}},
    }
    async with serve_gateway(tmp_path, config) as server, server.client() as http:
        before = counters((await http.get("/metrics")).text)
        assert before["plugin_loads_on_request_total"] == 0

        async def stream(i: int) -> str:
            agent = AGENTS[i % 4]
            body = {"model": f"clawgate/{agent}", "user": f"user{i}", "stream": True,
                    "messages": [{"role": "user", "content": f"stream number {i}"}]}
            text = ""
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        for choice in orjson.loads(line[6:])["choices"]:
                            text += choice["delta"].get("content") or ""
            return text

        async with open_client(server) as ws:
            streams = asyncio.gather(*(stream(i) for i in range(32)))
            listings = 0
            while not streams.done():
                page = await ws.ok("sessions.list", {"limit": 50})
                assert page["sessions"] is not None
                listings += 1
            texts = await streams
            assert texts == [f"stream number {i}" for i in range(32)]
            assert listings > 1
            final = await ws.ok("sessions.list", {"limit": 50})
            assert final["totalCount"] == 32
            assert {row["key"].split(":")[1] for row in final["sessions"]} == set(AGENTS)

        assert counters((await http.get("/metrics")).text) == before
