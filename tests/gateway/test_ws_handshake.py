"""The WebSocket handshake and framing against a real gateway on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawgate.gateway.auth import FailureLimiter
from clawgate.gateway.methods import CORE
from clawgate.gateway.methods.system import EVENTS
from tests.support.gateway_server import GatewayServer, serve_gateway
from tests.support.ws_client import Device, WsClient, connect_params, open_client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path):
    async with serve_gateway(tmp_path) as running:
        yield running


async def handshake(server: GatewayServer, params: dict) -> tuple[WsClient, dict]:
    client = await WsClient.open(server)
    await client.challenge()
    return client, await client.connect(params)


async def test_hello_ok_has_the_reference_shape(server: GatewayServer) -> None:
    client, res = await handshake(server, connect_params())
    try:
        assert res["ok"] and res["id"] == "c1"
        hello = res["payload"]
        assert hello["type"] == "hello-ok" and hello["protocol"] == 4
        assert hello["server"]["version"] == server.gateway.version
        assert hello["server"]["connId"]
        methods = hello["features"]["methods"]
        assert methods == sorted(methods) and set(CORE) <= set(methods)
        assert hello["features"]["events"] == list(EVENTS)
        snapshot = hello["snapshot"]
        assert {"presence", "health", "stateVersion", "uptimeMs", "stateDir",
                "sessionDefaults", "authMode"} <= set(snapshot)
        assert snapshot["sessionDefaults"] == {"defaultAgentId": "main", "mainKey": "main",
                                               "mainSessionKey": "agent:main:main",
                                               "scope": "per-sender"}
        assert snapshot["authMode"] == "token" and snapshot["health"]["ok"] is True
        assert any(p.get("mode") == "test" for p in snapshot["presence"])
        assert hello["auth"]["role"] == "operator"
        assert "operator.admin" in hello["auth"]["scopes"]  # no scopes asked: full trust
        assert hello["policy"] == {"maxPayload": 26214400, "maxBufferedBytes": 524288,
                                   "tickIntervalMs": 15000}
    finally:
        await client.close()


@pytest.mark.parametrize(("low", "high", "expected"), [(3, 3, 3), (4, 4, 4), (3, 4, 4),
                                                       (1, 9, 4)])
async def test_protocol_negotiates_the_highest_common_version(
        server: GatewayServer, low: int, high: int, expected: int) -> None:
    client, res = await handshake(server, connect_params(min_protocol=low, max_protocol=high))
    await client.close()
    assert res["ok"] and res["payload"]["protocol"] == expected


async def test_protocol_out_of_range_is_refused_and_closed(server: GatewayServer) -> None:
    client, res = await handshake(server, connect_params(min_protocol=5, max_protocol=6))
    assert not res["ok"] and res["error"]["code"] == "INVALID_REQUEST"
    assert res["error"]["details"]["code"] == "PROTOCOL_MISMATCH"
    assert (await client.closed())[0] == 1002


@pytest.mark.parametrize(("token", "detail"), [("wrong", "AUTH_TOKEN_MISMATCH"),
                                               (None, "AUTH_TOKEN_MISSING")])
async def test_bad_token_is_refused_and_closed(server: GatewayServer, token: str | None,
                                               detail: str) -> None:
    client, res = await handshake(server, connect_params(token=token))
    assert not res["ok"] and res["error"]["code"] == "INVALID_REQUEST"
    assert res["error"]["details"]["code"] == detail
    assert (await client.closed())[0] == 1008
    assert not server.gateway.hub.connections


async def test_failed_attempts_are_rate_limited(server: GatewayServer) -> None:
    server.gateway.limiter = FailureLimiter(max_attempts=2)
    for n in range(2):
        client, res = await handshake(server, connect_params(token=f"wrong-{n}"))
        await client.close()
        assert res["error"]["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    client, res = await handshake(server, connect_params(token="wrong-2"))
    await client.close()
    assert res["error"]["details"]["code"] == "AUTH_RATE_LIMITED"
    assert res["error"]["retryable"] is True and res["error"]["retryAfterMs"] > 0
    client, res = await handshake(server, connect_params())  # the right token still connects
    await client.close()
    assert res["ok"], res


async def test_unknown_connect_fields_are_ignored(server: GatewayServer) -> None:
    # OpenClaw's clients add connect fields from release to release: unknown ones pass.
    params = connect_params(bogusField=1)
    params["client"]["futureField"] = "x"
    client, res = await handshake(server, params)
    await client.close()
    assert res["ok"], res


async def test_refused_connect_names_the_field_and_the_version(server: GatewayServer) -> None:
    params = connect_params()
    params["client"]["buildId"] = 7  # a known field of the wrong type is still refused
    client, res = await handshake(server, params)
    version = server.gateway.version
    assert res["error"]["code"] == "INVALID_REQUEST"
    assert res["error"]["message"].startswith("invalid connect params: client.buildId:")
    assert f"clawgate {version}" in res["error"]["message"]
    code, reason = await client.closed()
    assert code == 1008 and reason.startswith(f"clawgate {version}: invalid connect params: "
                                              "client.buildId")


async def test_missing_client_is_invalid(server: GatewayServer) -> None:
    params = connect_params()
    del params["client"]
    client, res = await handshake(server, params)
    await client.close()
    assert res["error"]["message"].startswith("invalid connect params: client:")


async def test_first_frame_must_be_connect(server: GatewayServer) -> None:
    client = await WsClient.open(server)
    await client.challenge()
    res = await client.call("health")
    assert not res["ok"] and res["error"]["code"] == "INVALID_REQUEST"
    assert (await client.closed())[0] == 1008


async def test_garbage_first_frame_closes(server: GatewayServer) -> None:
    client = await WsClient.open(server)
    await client.challenge()
    await client.send("not json")
    assert (await client.closed())[0] == 1008


async def test_oversized_pre_connect_frame_closes_1009(server: GatewayServer) -> None:
    client = await WsClient.open(server)
    await client.challenge()
    await client.send({"type": "req", "id": "c1", "method": "connect",
                       "params": {"pad": "x" * 70_000}})
    assert (await client.closed())[0] == 1009


@pytest.mark.parametrize("how", ["config", "env"])
async def test_handshake_timeout_closes(tmp_path: Path, how: str) -> None:
    config = {"gateway": {"ws": {"handshake_timeout_ms": 200}}} if how == "config" else {}
    env = {"OPENCLAW_HANDSHAKE_TIMEOUT_MS": "200"} if how == "env" else {}
    async with serve_gateway(tmp_path, config, env=env) as server:
        client = await WsClient.open(server)
        await client.challenge()
        code, reason = await client.closed()
        assert code == 1008 and "handshake timeout" in reason


async def test_not_ready_answers_unavailable(server: GatewayServer) -> None:
    server.gateway.state = "starting"
    try:
        client, res = await handshake(server, connect_params())
        await client.close()
    finally:
        server.gateway.state = "ready"
    assert res["error"]["code"] == "UNAVAILABLE"
    assert res["error"]["details"]["reason"] == "startup-sidecars"
    assert res["error"]["retryAfterMs"] > 0


@pytest.mark.parametrize("version", ["v2", "v3"])
async def test_signed_device_is_accepted(server: GatewayServer, version: str) -> None:
    device = Device()
    client = await WsClient.open(server)
    nonce = (await client.challenge())["nonce"]
    params = connect_params(scopes=["operator.read"])
    params["client"]["deviceFamily"] = "Desktop"
    params["device"] = device.block(params, nonce, version=version)
    res = await client.connect(params)
    await client.close()
    assert res["ok"], res
    assert res["payload"]["auth"]["scopes"] == ["operator.read"]


@pytest.mark.parametrize("tamper", ["signature", "nonce", "device-id"])
async def test_invalid_device_is_refused(server: GatewayServer, tamper: str) -> None:
    device = Device()
    client = await WsClient.open(server)
    nonce = (await client.challenge())["nonce"]
    params = connect_params()
    if tamper == "signature":  # signed over another nonce, presented with the right one
        params["device"] = {**device.block(params, "other-nonce"), "nonce": nonce}
    elif tamper == "nonce":
        params["device"] = device.block(params, "other-nonce")
    else:
        params["device"] = {**device.block(params, nonce), "id": Device().id}
    res = await client.connect(params)
    assert not res["ok"] and res["error"]["details"]["code"] == "DEVICE_AUTH_INVALID"
    assert (await client.closed())[0] == 1008


async def test_malformed_frames_after_hello_keep_the_connection(server: GatewayServer) -> None:
    async with open_client(server) as client:
        await client.send("{not json")
        await client.send("[1, 2, 3]")
        await client.send({"type": "req", "method": "health"})  # no id
        await client.send({"type": "req", "id": "", "method": "health"})
        await client.send({"type": "event", "id": "e1", "event": "x"})
        assert (await client.response("e1"))["error"]["code"] == "INVALID_REQUEST"
        await client.send({"type": "req", "id": "m1"})
        assert (await client.response("m1"))["error"]["code"] == "INVALID_REQUEST"
        error = await client.error("no.such.method")
        assert error == {"code": "INVALID_REQUEST", "message": "unknown method: no.such.method"}
        assert (await client.error("health", [1]))["code"] == "INVALID_REQUEST"
        assert (await client.error("connect", connect_params()))["code"] == "INVALID_REQUEST"
        assert (await client.ok("health"))["ok"] is True


async def test_frame_over_max_payload_closes_1009(tmp_path: Path) -> None:
    config = {"gateway": {"ws": {"max_payload_bytes": 100_000}}}
    async with serve_gateway(tmp_path, config) as server:
        async with open_client(server) as client:
            assert client.hello["policy"]["maxPayload"] == 100_000
            await client.send({"type": "req", "id": "big", "method": "health",
                               "params": {"pad": "x" * 200_000}})
            assert (await client.closed())[0] == 1009


async def test_ticks_arrive_with_increasing_seq(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path, {"gateway": {"ws": {"tick_interval_ms": 50}}}) as server:
        async with open_client(server) as client:
            assert client.hello["policy"]["tickIntervalMs"] == 50
            first = await client.event("tick")
            second = await client.event("tick", start=client.events.index(first) + 1)
            assert second["seq"] > first["seq"] and second["payload"]["ts"] >= first[
                "payload"]["ts"]


async def test_password_mode(tmp_path: Path) -> None:
    config = {"gateway": {"auth": {"mode": "password", "password": "hunter2"}}}
    async with serve_gateway(tmp_path, config) as server:
        client, res = await handshake(server, {**connect_params(token=None),
                                               "auth": {"password": "hunter2"}})
        await client.close()
        assert res["ok"] and res["payload"]["snapshot"]["authMode"] == "password"
        client, res = await handshake(server, {**connect_params(token=None),
                                               "auth": {"password": "nope"}})
        await client.close()
        assert res["error"]["details"]["code"] == "AUTH_PASSWORD_MISMATCH"
