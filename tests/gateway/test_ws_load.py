"""The control plane under load: a client that stops reading is cut off with bounded memory,
and sessions.list stays free of plugin work while 32 turns run."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import orjson
import pytest
import websockets

from clawgate.agents.turn import Submission
from tests.support.gateway_server import GatewayServer, echo, serve_gateway, until
from tests.support.ws_client import WsClient, connect_params, open_client, write_demo_plugin

pytestmark = pytest.mark.anyio

LIMIT = 1_000_000


async def slow_reader(server: GatewayServer) -> WsClient:
    """A client that completes the handshake and then never reads again; its socket has a
    small receive buffer and its library a one-frame queue, so backpressure comes quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16_384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/", sock=sock, max_queue=1,
                                  max_size=None, close_timeout=1, compression=None)
    client = WsClient(ws)
    await client.challenge()
    assert (await client.connect(connect_params(client_id="slow")))["ok"]
    return client


async def test_slow_consumer_is_disconnected_with_bounded_memory(tmp_path: Path) -> None:
    write_demo_plugin(tmp_path / "plugins")

    config = {"plugins": {"load_paths": [str(tmp_path / "plugins")]},
              "gateway": {"ws": {"max_connection_buffered_bytes": LIMIT}}}
    async with serve_gateway(tmp_path / "state", config) as server:
        gateway = server.gateway
        slow = await slow_reader(server)
        try:
            conn = next(c for c in gateway.hub.connections if c.client_id == "slow")
            async with open_client(server) as fast:
                deadline = time.monotonic() + 30
                while conn in gateway.hub.connections:
                    assert time.monotonic() < deadline, "the slow client was never cut off"
                    out = await fast.ok("demo.flood", {"count": 32, "size": 16_384}, within=10)
                    assert out == {"sent": 32}
                    fast.events.clear()
                assert conn.peak_buffered <= LIMIT
                assert gateway.metrics.counters()["ws_slow_consumers_total"] >= 1
                assert (await fast.ok("health"))["ok"]  # the reader that keeps up stays
                assert [c.client_id for c in gateway.hub.connections] == ["test"]
        finally:
            slow.ws.transport.abort()  # it never reads: don't wait for a close handshake
        await until(lambda: conn.ended)


async def test_the_total_budget_holds_with_several_non_readers(tmp_path: Path) -> None:
    """All connections together may queue at most ``max_buffered_bytes``: with three clients
    that stop reading, the one holding the most is shed (1013) each time the total is spent,
    and the total never goes past its bound (issue 7, item 1)."""
    write_demo_plugin(tmp_path / "plugins")
    total = 256 * 1024
    config = {"plugins": {"load_paths": [str(tmp_path / "plugins")]},
              "gateway": {"ws": {"max_buffered_bytes": total,
                                 "max_connection_buffered_bytes": 4 * 1024 * 1024}}}
    async with serve_gateway(tmp_path / "state", config) as server:
        gateway = server.gateway
        sleepers = [await slow_reader(server) for _ in range(3)]
        try:
            async with open_client(server) as fast:
                deadline = time.monotonic() + 30
                while any(c.client_id == "slow" for c in gateway.hub.connections):
                    assert time.monotonic() < deadline, "non-readers were never shed"
                    # One frame at a time: the reader holds one frame, the others pile up.
                    await fast.ok("demo.flood", {"count": 1, "size": 65_536}, within=10)
                    await fast.event("demo.flood", within=10)
                    fast.events.clear()
                assert gateway.hub.peak_buffered <= total
                assert (await fast.ok("health"))["ok"]  # the reader stays
                assert [c.client_id for c in gateway.hub.connections] == ["test"]
        finally:
            for sleeper in sleepers:
                sleeper.ws.transport.abort()


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


async def test_sessions_list_adds_no_plugin_work_while_32_turns_run(tmp_path: Path) -> None:
    watched = ("plugin_metadata_scans_total", "plugin_loads_on_request_total")
    async with serve_gateway(tmp_path, echo(delay_ms=40, chunk_chars=8)) as server:
        engine = server.gateway.runtime.engine
        before = {n: server.gateway.metrics.counters()[n] for n in watched}
        async with server.client() as http:
            scraped = (await http.get("/metrics")).text
        assert {n: metric(scraped, n) for n in watched} == before
        async with open_client(server) as client:
            runs = [await engine.submit(Submission(f"turn {i}",
                                                   session_key=f"agent:main:load-{i % 8}"))
                    for i in range(32)]
            listings = 0
            while not all(r.done for r in runs):
                page = await client.ok("sessions.list", {"limit": 50})
                assert page["totalCount"] == 8
                listings += 1
            results = await asyncio.gather(*(r.result() for r in runs))
            assert {r.status for r in results} == {"ok"}
            assert listings > 1
            assert (await client.ok("sessions.list"))["totalCount"] == 8
        assert {n: server.gateway.metrics.counters()[n] for n in watched} == before
        async with server.client() as http:
            scraped = (await http.get("/metrics")).text
        assert {n: metric(scraped, n) for n in watched} == before


async def test_sessions_list_is_one_span_and_never_a_scan(tmp_path: Path) -> None:
    path = tmp_path / "timeline.jsonl"

    env = {"CLAWGATE_DIAGNOSTICS": "1", "CLAWGATE_DIAGNOSTICS_TIMELINE_PATH": str(path)}
    async with serve_gateway(tmp_path / "state", env=env) as server:
        async with open_client(server) as client:
            for _ in range(3):
                await client.ok("sessions.list", {"agentId": "main"})
    records = [orjson.loads(line) for line in path.read_text().splitlines()]
    scans = [r for r in records if r["name"] == "plugins.metadata.scan"]
    assert [r["type"] for r in scans] == ["span.start", "span.end"]  # start-up only
    lists = [r for r in records if r["name"] == "gateway.sessions.list"]
    assert [r["type"] for r in lists] == ["span.start", "span.end"] * 3
    assert lists[1]["phase"] == "sessions.list" and lists[1]["attributes"] == {"agentId": "main"}
