"""Plugin HTTP routes are served by the gateway, with auth, 404/405 and core paths protected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.gateway_server import in_process, serve_gateway

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "plugins" / "http-route"


@pytest.mark.anyio
async def test_plugin_routes_through_the_gateway(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "plugins" / "http_route")
    config = {"plugins": {"load_paths": [str(tmp_path / "plugins")]}}
    async with in_process(tmp_path, config) as server:
        record = server.gateway.runtime.host.current.registry.record("http-route")
        assert record is not None and record.status == "loaded"
        assert set(record.routes) == {"/hello", "/public", "/broken"}
        refused = [d.message for d in server.gateway.runtime.host.current.registry.diagnostics
                   if d.plugin_id == "http-route"]
        assert any("/v1/chat/completions" in m and "gateway core" in m for m in refused)
        assert any("'/health'" in m for m in refused)

        async with server.client() as http:
            hello = await http.get("/hello", params={"name": "ada"})
            assert hello.status_code == 200
            assert hello.json() == {"hello": "ada", "method": "GET"}
            assert (await http.post("/hello")).json()["method"] == "POST"
            wrong = await http.delete("/hello")
            assert wrong.status_code == 405 and "GET" in wrong.headers["allow"]
            assert (await http.get("/no-such-route")).status_code == 404
            broken = await http.get("/broken")
            assert broken.status_code == 500
            assert broken.json()["error"]["message"] == "plugin route /broken failed"
            assert (await http.get("/health")).json() == {"ok": True, "status": "live"}
            assert (await http.post("/health")).status_code == 405
        async with server.client(token=None) as anonymous:
            assert (await anonymous.get("/hello")).status_code == 401
            public = await anonymous.get("/public")
            assert public.status_code == 200 and public.text == "open to all"
        async with server.client() as http:  # still serving after the broken route
            assert (await http.get("/hello")).status_code == 200


@pytest.mark.anyio
async def test_two_gateways_in_one_process_keep_their_logs_apart(tmp_path: Path) -> None:
    from tests.support.ws_client import open_client

    for name in ("a", "b"):
        shutil.copytree(FIXTURE, tmp_path / name / "plugins" / "http_route")
    config = {"plugins": {"load_paths": [str(tmp_path / "a" / "plugins")]}}
    other = {"plugins": {"load_paths": [str(tmp_path / "b" / "plugins")]}}
    async with serve_gateway(tmp_path / "a", config) as first, \
            serve_gateway(tmp_path / "b", other) as second:
        async with first.client() as http:
            for _ in range(2):
                assert (await http.get("/broken")).status_code == 500

        async def failures(server) -> int:
            async with open_client(server) as ws:
                lines = (await ws.ok("logs.tail", {"limit": 500}))["lines"]
            return sum("plugin route /broken of plugin" in line for line in lines)

        assert await failures(first) == 2
        assert await failures(second) == 0
