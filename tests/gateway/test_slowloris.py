"""Unauthenticated connections are not held forever: an incomplete request head (or WebSocket
upgrade) is cut after ``gateway.header_timeout_s``, a trickled body gets 408 after
``gateway.body_timeout_s`` (issue 7, item 11). Through a real server, raw sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_server import TOKEN, serve_gateway

pytestmark = pytest.mark.anyio

QUICK = {"gateway": {"header_timeout_s": 0.5, "body_timeout_s": 0.5}}
PARTIAL = {
    "silent": b"",
    "headers": b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    "upgrade": (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
}


async def test_incomplete_request_heads_are_cut(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path, QUICK) as server:
        opened = []
        for n in range(60):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(list(PARTIAL.values())[n % 3])
            await writer.drain()
            opened.append((reader, writer))
        try:
            async with asyncio.timeout(10):
                ends = await asyncio.gather(*(reader.read() for reader, _ in opened))
            assert ends == [b""] * len(opened)  # every one closed by the server, unanswered
        finally:
            for _, writer in opened:
                writer.close()
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            assert (await http.get("/health")).status_code == 200


async def test_a_complete_request_is_not_cut(tmp_path: Path) -> None:
    config = {"gateway": {"header_timeout_s": 0.5},
              "plugins": {"entries": {"echo": {"config": {"delay_ms": 800}}}}}
    async with serve_gateway(tmp_path, config) as server, server.client() as http:
        r = await http.post("/v1/chat/completions", json={
            "model": "clawgate", "messages": [{"role": "user", "content": "slow reply"}]})
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "slow reply"


async def test_a_trickled_body_gets_408(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path, QUICK) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"mo")
            await writer.drain()
            async with asyncio.timeout(10):
                status = await reader.readline()
                rest = await reader.read(4096)
        finally:
            writer.close()
        assert status.startswith(b"HTTP/1.1 408"), status
        assert b"body_timeout_s" in rest
