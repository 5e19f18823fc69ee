"""The plugin thread pool is bounded, counts stuck workers and refuses new synchronous calls
when every worker is stuck (issue 7, item 9). Through a real server and real turns."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.support.gateway_server import serve_gateway
from tests.support.poll import until

pytestmark = pytest.mark.anyio
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"


def config() -> dict[str, object]:
    return {"plugins": {"load_paths": [str(FIXTURES / "hanging_tool")], "pool_threads": 2,
                        "stuck_call_s": 0.2}}


def chat(text: str, user: str) -> dict[str, object]:
    return {"model": "clawgate", "user": user, "messages": [{"role": "user", "content": text}]}


def stuck(metrics: str) -> int:
    line = next(x for x in metrics.splitlines() if x.startswith("plugin_pool_stuck_workers "))
    return int(line.split()[1])


async def test_stuck_workers_are_counted_and_new_sync_calls_refused(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path, config()) as server, server.client() as http:
        hangs = [asyncio.create_task(http.post("/v1/chat/completions", json=chat(
            '/tool hang {"seconds": 1.5}', f"hang-{n}"))) for n in range(2)]

        async def two_stuck() -> bool:
            return stuck((await http.get("/metrics")).text) == 2

        await until(two_stuck)
        r = await http.post("/v1/chat/completions", json=chat('/tool hang {"seconds": 0}', "x"))
        assert r.status_code == 200
        text = r.json()["choices"][0]["message"]["content"]
        assert "all 2 plugin worker threads are stuck" in text
        assert "plugin 'hanging_tool'" in text
        for reply in await asyncio.gather(*hangs):
            assert reply.json()["choices"][0]["message"]["content"] == "tool hang said: done"

        async def none_stuck() -> bool:
            return stuck((await http.get("/metrics")).text) == 0

        await until(none_stuck)
        r = await http.post("/v1/chat/completions", json=chat('/tool hang {"seconds": 0}', "y"))
        assert r.json()["choices"][0]["message"]["content"] == "tool hang said: done"
        workers = [t for t in threading.enumerate() if t.name.startswith("clawgate-plugin")]
        assert len(workers) <= 2  # the pool never grew past its bound
