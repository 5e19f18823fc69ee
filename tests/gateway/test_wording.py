"""Error wording through real servers (issue 7, items 13, 14 and 19): a body that is not JSON
is 415, a seed past 64 bits is out of range (not "not an integer"), a WebSocket frame that is
not UTF-8 says so, ``config.get`` shows the auth mode, and ``ToolError("msg")`` reaches the
model as "error: msg"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.gateway_server import serve_gateway
from tests.support.ws_client import WsClient, connect_params, open_client

pytestmark = pytest.mark.anyio
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
CHAT = b'{"model": "clawgate", "messages": [{"role": "user", "content": "hi"}]}'


async def test_a_body_that_is_not_json_is_415(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path) as server, server.client() as http:
        for media in ("text/plain", "application/x-www-form-urlencoded"):
            r = await http.post("/v1/chat/completions", content=CHAT,
                                headers={"Content-Type": media})
            assert r.status_code == 415, media
            assert "send application/json" in r.json()["error"]["message"]
        r = await http.post("/v1/chat/completions", content=CHAT,
                            headers={"Content-Type": "application/json; charset=utf-8"})
        assert r.status_code == 200


async def test_a_seed_past_64_bits_is_out_of_range(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path) as server, server.client() as http:
        big = CHAT[:-1] + b', "seed": ' + str(2 ** 70).encode() + b"}"
        r = await http.post("/v1/chat/completions", content=big,
                            headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["message"] == (
            "`seed` is out of range: it must be an integer from -2^63 to 2^63 - 1")
        r = await http.post("/v1/chat/completions", json={
            "model": "clawgate", "seed": "7", "messages": [{"role": "user", "content": "x"}]})
        assert r.json()["error"]["message"] == "`seed` must be an integer"


@pytest.mark.parametrize(("text", "reason"), [
    (True, "text frame is not valid UTF-8"), (False, "binary frame is not valid UTF-8 JSON")])
async def test_a_frame_that_is_not_utf8_says_so(tmp_path: Path, text: bool, reason: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    async with serve_gateway(tmp_path) as server:
        client = await WsClient.open(server)
        await client.challenge()
        assert (await client.connect(connect_params()))["ok"]
        await client.ws.send(b"\xff\xfe{", text=text)
        assert await client.closed() == (1007, reason)
    assert "Traceback" not in caplog.text


async def test_config_get_shows_the_auth_mode_but_not_the_token(tmp_path: Path) -> None:
    config = {"gateway": {"auth": {"mode": "token", "token": "not-for-your-eyes"}}}
    async with serve_gateway(tmp_path, config) as server, \
            open_client(server, scopes=["operator.admin"]) as ws:
        auth = (await ws.ok("config.get"))["config"]["gateway"]["auth"]
        assert auth["mode"] == "token"
        assert auth["token"] == "__REDACTED__"


async def test_tool_error_reaches_the_model_as_its_message(tmp_path: Path) -> None:
    config = {"plugins": {"load_paths": [str(FIXTURES / "tool_error")]}}
    async with serve_gateway(tmp_path, config) as server, server.client() as http:
        r = await http.post("/v1/chat/completions", json={
            "model": "clawgate", "messages": [{"role": "user", "content": "/tool lookup {}"}]})
        assert r.status_code == 200, r.text
        reply = r.json()["choices"][0]["message"]["content"]
        assert reply == "tool lookup said: error: no such word"
