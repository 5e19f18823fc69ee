"""Browser origins: the gateway's own, loopback pages and configured ones pass; others get 403
(no cross-site requests or DNS rebinding, even with auth off on loopback)."""

from __future__ import annotations

from pathlib import Path

import pytest
import websockets

from clawgate.gateway.http import host_allowed, origin_allowed
from tests.support.gateway_server import in_process, serve_gateway

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("origin", "host", "allowed", "ok"), [
    (None, "127.0.0.1:18789", (), True),
    ("http://127.0.0.1:5173", "127.0.0.1:18789", (), True),
    ("http://localhost:3000", "127.0.0.1:18789", (), True),
    ("https://gw.example:8443", "gw.example:8443", (), True),
    ("https://evil.example", "127.0.0.1:18789", (), False),
    ("https://evil.example", "evil.example", (), True),  # same origin; the Host rule decides
    ("https://ui.example/", "127.0.0.1:18789", ("https://ui.example",), True),
    ("null", "127.0.0.1:18789", (), False),
])
async def test_origin_rule(origin, host, allowed, ok) -> None:
    assert origin_allowed(origin, host, allowed) is ok


@pytest.mark.parametrize(("host", "loopback", "ok"), [
    ("127.0.0.1:18789", True, True), ("localhost:18789", True, True), ("[::1]:18789", True, True),
    ("evil.example:18789", True, False),  # DNS rebinding onto a loopback gateway
    ("ui.example", True, True),  # configured
    ("gw.lan:18789", False, True),  # a LAN bind needs auth anyway; any name may reach it
])
async def test_host_rule(host, loopback, ok) -> None:
    assert host_allowed(host, loopback_bind=loopback, allowed=("https://ui.example",)) is ok


async def test_foreign_origin_is_refused_on_http_and_websocket(tmp_path: Path) -> None:
    config = {"gateway": {"allowed_origins": ["https://ui.example"]}}
    async with serve_gateway(tmp_path, config) as server, server.client() as http:
        body = {"model": "clawgate", "messages": [{"role": "user", "content": "hi"}]}
        refused = await http.post("/v1/chat/completions", json=body,
                                  headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "origin_not_allowed"
        allowed = await http.post("/v1/chat/completions", json=body,
                                  headers={"Origin": "https://ui.example"})
        assert allowed.status_code == 200
        url = str(http.base_url).replace("http://", "ws://")
        with pytest.raises(websockets.InvalidStatus) as caught:
            async with websockets.connect(url, origin="https://evil.example"):
                pass
        assert caught.value.response.status_code == 403
        async with websockets.connect(url, origin="https://ui.example") as ws:
            assert "connect.challenge" in await ws.recv()
        # With a token, any name for the machine may be used (a rebinding page has no token).
        assert (await http.get("/health", headers={"Host": "mybox:18789"})).status_code == 200


async def test_dns_rebinding_is_refused_when_auth_is_off(tmp_path: Path) -> None:
    config = {"gateway": {"auth": {"mode": "none"}}}
    async with in_process(tmp_path, config) as server, server.client(token=None) as http:
        assert (await http.get("/v1/models")).status_code == 200  # loopback, no auth needed
        rebinding = await http.get("/v1/models", headers={"Host": "evil.example:18789"})
        assert rebinding.status_code == 403
