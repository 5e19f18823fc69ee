"""clawgate.client: the async GatewayClient and the sync call_remote, against a real gateway."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from clawgate.client import GatewayClient, GatewayError, call_remote
from tests.support.gateway_server import TOKEN, GatewayServer, echo, serve_gateway

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path):
    async with serve_gateway(tmp_path / "state", echo(chunk_chars=5)) as running:
        yield running


def ws_url(server: GatewayServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


async def test_client_handshake_calls_and_events(server: GatewayServer) -> None:
    async with GatewayClient(ws_url(server), TOKEN) as client:
        assert client.hello["type"] == "hello-ok" and client.hello["protocol"] == 4
        assert "operator.admin" in client.hello["auth"]["scopes"]
        presence = client.hello["snapshot"]["presence"]
        # One-shot CLI connections are not presence entries (OpenClaw's rule); the gateway is.
        assert [p["mode"] for p in presence] == ["gateway"]
        assert (await client.call("health"))["ok"] is True
        ack = await client.call("chat.send", {"sessionKey": "main", "message": "via client",
                                              "idempotencyKey": "cli-1"})
        assert ack == {"runId": "cli-1", "status": "started"}
        async with asyncio.timeout(5):
            async for event in client.events():
                name, payload = event  # an Event unpacks as (name, payload)
                if name == "chat" and payload["runId"] == "cli-1" and \
                        payload["state"] == "final":
                    break
        assert payload["message"]["content"] == [{"type": "text", "text": "via client"}]
        assert event.name == "chat" and event.payload is payload and event.seq > 0
        final = await client.call("agent", {"message": "agent turn", "idempotencyKey": "cli-2"})
        assert final["status"] == "ok" and final["result"]["payloads"] == [{"text": "agent turn"}]
        accepted = await client.call("agent", {"message": "x", "idempotencyKey": "cli-3"},
                                     expect_final=False)
        assert accepted["status"] == "accepted"
        with pytest.raises(GatewayError) as refused:
            await client.call("no.such.method")
        assert refused.value.code == "INVALID_REQUEST"


async def test_client_refused_handshake_raises(server: GatewayServer) -> None:
    with pytest.raises(GatewayError) as refused:
        async with GatewayClient(ws_url(server), "wrong-token"):
            pass
    assert refused.value.code == "INVALID_REQUEST"
    assert refused.value.details["code"] == "AUTH_TOKEN_MISMATCH"


async def test_pending_calls_fail_when_the_connection_closes(server: GatewayServer) -> None:
    async with GatewayClient(ws_url(server), TOKEN) as client:
        conn = next(iter(server.gateway.hub.connections))
        await conn.close(1012, "going away")
        with pytest.raises(GatewayError) as closed:
            await client.call("health", wait_s=5)
        assert closed.value.code == "UNAVAILABLE"
        assert [e async for e in client.events() if e.name == "nothing"] == []


async def test_a_close_during_the_send_fails_the_call_once(server: GatewayServer) -> None:
    # The race CI hit: the reader sees the close (and fails the pending call) while the send
    # is still failing. The caller gets the error; no unretrieved copy is left on the loop.
    async with GatewayClient(ws_url(server), TOKEN) as client:
        ws, reader = client._ws, client._reader
        assert ws is not None and reader is not None
        send = ws.send

        async def send_after_the_reader_ends(message: str) -> None:
            await asyncio.gather(reader, return_exceptions=True)
            await send(message)

        ws.send = send_after_the_reader_ends  # type: ignore[method-assign]
        await next(iter(server.gateway.hub.connections)).close(1012, "going away")
        with pytest.raises(GatewayError) as closed:
            await client.call("health", wait_s=5)
        assert closed.value.code == "UNAVAILABLE"
    del closed, client
    gc.collect()  # an unretrieved future's error would reach the loop now, failing the test


async def test_call_remote_with_explicit_url_and_token(server: GatewayServer) -> None:
    out = await asyncio.to_thread(call_remote, "agents.list", url=ws_url(server), token=TOKEN)
    assert out["defaultId"] == "main"
    presence = await asyncio.to_thread(call_remote, "system-presence", url=ws_url(server),
                                       token=TOKEN)
    assert presence["value"][0]["mode"] == "gateway"  # a list payload comes back wrapped


async def test_call_remote_reads_port_and_token_from_the_state_dir(
        server: GatewayServer, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "gateway.token").write_text(TOKEN + "\n")
    env = {"CLAWGATE_STATE_DIR": str(state), "CLAWGATE_GATEWAY_PORT": str(server.port)}
    out = await asyncio.to_thread(call_remote, "health", env=env)
    assert out["ok"] is True
    with pytest.raises(GatewayError) as refused:
        await asyncio.to_thread(call_remote, "health", env={**env,
                                                            "CLAWGATE_GATEWAY_TOKEN": "bad"})
    assert refused.value.details["code"] == "AUTH_TOKEN_MISMATCH"
