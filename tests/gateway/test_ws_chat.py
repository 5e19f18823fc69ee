"""chat.* and agent methods over WebSocket: acks, streamed chat events, idempotency, aborts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clawgate.agents.turn import Submission
from tests.support.gateway_server import GatewayServer, echo, serve_gateway, until
from tests.support.ws_client import WsClient, open_client

pytestmark = pytest.mark.anyio

TERMINAL = ("final", "aborted", "error")


@pytest.fixture
async def server(tmp_path: Path):
    async with serve_gateway(tmp_path, echo(chunk_chars=3)) as running:
        yield running


@pytest.fixture
async def slow(tmp_path: Path):
    """A gateway whose echo provider waits 10 s before answering (runs are aborted after)."""
    async with serve_gateway(tmp_path, echo(delay_ms=10_000)) as running:
        yield running
        engine = running.gateway.runtime.engine
        for key in engine.lanes.active_keys():
            engine.abort(key)


@pytest.fixture
async def client(server: GatewayServer):
    async with open_client(server) as connected:
        yield connected


def send(key: str, message: str, run_id: str, **extra: Any) -> dict[str, Any]:
    return {"sessionKey": key, "message": message, "idempotencyKey": run_id, **extra}


async def chat_until_done(client: WsClient, run_id: str) -> list[dict[str, Any]]:
    """Every chat event frame of ``run_id`` up to its terminal state."""
    await client.event("chat", lambda p: p["runId"] == run_id and p["state"] in TERMINAL)
    return [f for f in client.events if f["event"] == "chat" and f["payload"]["runId"] == run_id]


async def test_chat_send_acks_then_streams_deltas_then_final(client: WsClient) -> None:
    text = "hello world from the clawgate gateway"
    assert await client.ok("sessions.subscribe") == {"subscribed": True}
    ack = await client.ok("chat.send", send("main", text, "run-1"))
    assert ack == {"runId": "run-1", "status": "started"}
    frames = await chat_until_done(client, "run-1")
    status = [f["payload"]["phase"] for f in frames if f["payload"]["state"] == "status"]
    assert status == ["preparing_context", "starting_model"]
    frames = [f for f in frames if f["payload"]["state"] != "status"]
    states = [f["payload"]["state"] for f in frames]
    assert states[-1] == "final" and set(states[:-1]) == {"delta"} and len(states) >= 2
    assert len(states) - 1 < len(text) / 3  # deltas are throttled, not one per chunk
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    run_seqs = [f["payload"]["seq"] for f in frames]
    assert run_seqs == sorted(run_seqs)
    deltas = [f["payload"] for f in frames[:-1]]
    assert "".join(d["deltaText"] for d in deltas) == text
    assert deltas[-1]["message"]["content"] == [{"type": "text", "text": text}]
    assert all(d["sessionKey"] == "agent:main:main" for d in deltas)
    final = frames[-1]["payload"]
    assert final["message"]["role"] == "assistant"
    assert final["message"]["content"] == [{"type": "text", "text": text}]
    assert final["stopReason"] == "stop" and final["usage"]["output"] > 0
    lifecycle = [f["payload"]["data"]["phase"] for f in client.events
                 if f["event"] == "agent" and f["payload"]["runId"] == "run-1"
                 and f["payload"]["stream"] == "lifecycle"]
    assert lifecycle == ["start", "model", "end"]
    changed = await client.event("sessions.changed")
    assert changed["payload"]["sessionKey"] == "agent:main:main"
    assert changed["payload"]["reason"] == "send" and changed["payload"]["runId"] == "run-1"


async def test_chat_send_repeat_after_completion_returns_the_cached_result(
        client: WsClient) -> None:
    await client.ok("chat.send", send("s-idem", "once only", "idem-1"))
    await chat_until_done(client, "idem-1")
    again = await client.ok("chat.send", send("s-idem", "once only", "idem-1"))
    assert again["runId"] == "idem-1" and again["status"] == "ok"
    assert again["message"]["content"] == [{"type": "text", "text": "once only"}]
    history = await client.ok("chat.history", {"sessionKey": "s-idem"})
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]


async def test_chat_send_bad_params(client: WsClient) -> None:
    error = await client.error("chat.send", {"sessionKey": "main", "message": "x"})
    assert error["message"] == "invalid chat.send params: idempotencyKey: Field required"
    error = await client.error("chat.send", send("main", "x", "k", extra=1))
    assert error["message"] == "invalid chat.send params: extra: unknown field"
    assert (await client.error("chat.send", send("main", "   ", "k2")))["code"] == \
        "INVALID_REQUEST"


async def test_chat_history_in_display_form(server: GatewayServer, client: WsClient) -> None:
    for i in range(3):
        await server.gateway.runtime.engine.run(
            Submission(f"message {i}", session_key="agent:main:hist"))
    out = await client.ok("chat.history", {"sessionKey": "hist", "limit": 4})
    assert out["sessionKey"] == "hist" and out["sessionId"]  # echoed as asked, like OpenClaw
    assert out["sessionInfo"]["key"] == "agent:main:hist"
    messages = out["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == [{"type": "text", "text": "message 1"}]
    assert messages[1]["stopReason"] == "stop" and isinstance(messages[1]["timestamp"], int)
    empty = await client.ok("chat.history", {"sessionKey": "never-used"})
    assert empty["messages"] == [] and empty["sessionId"] is None
    error = await client.error("chat.history", {"sessionKey": "hist", "limit": 1001})
    assert error["message"].startswith("invalid chat.history params: limit:")


async def test_chat_inject(client: WsClient) -> None:
    out = await client.ok("chat.inject", {"sessionKey": "inj", "message": "from outside"})
    assert out["ok"] is True and out["messageId"]
    event = await client.event("chat", lambda p: p["runId"] == out["runId"])
    assert event["payload"]["state"] == "final"
    assert event["payload"]["message"]["stopReason"] == "injected"
    history = await client.ok("chat.history", {"sessionKey": "inj"})
    assert history["messages"][-1]["content"] == [{"type": "text", "text": "from outside"}]
    assert history["messages"][-1]["stopReason"] == "injected"
    assert (await client.error("chat.inject", {"sessionKey": "inj"}))["code"] == \
        "INVALID_REQUEST"


async def test_agent_answers_twice_with_the_same_id(client: WsClient) -> None:
    req_id = await client.request("agent", {"message": "do the thing",
                                            "idempotencyKey": "agent-1",
                                            "sessionKey": "agent:main:ag"})
    first = await client.response(req_id)
    assert first["ok"] and first["payload"]["status"] == "accepted"
    assert first["payload"]["runId"] == "agent-1" and first["payload"]["acceptedAt"] > 0
    second = await client.response(req_id)
    final = second["payload"]
    assert final["runId"] == "agent-1" and final["status"] == "ok"
    assert final["summary"] == "completed"
    assert final["result"]["payloads"] == [{"text": "do the thing"}]
    assert final["result"]["meta"]["stopReason"] == "stop"
    waited = await client.ok("agent.wait", {"runId": "agent-1", "timeoutMs": 1000})
    assert waited["status"] == "ok" and waited["endedAt"] >= waited["startedAt"]
    repeat = await client.ok("agent", {"message": "do the thing", "idempotencyKey": "agent-1"})
    assert repeat["status"] == "ok" and repeat["runId"] == "agent-1"
    assert (await client.ok("agent.wait", {"runId": "nope", "timeoutMs": 0}))["status"] == \
        "timeout"
    error = await client.error("agent", {"message": "x"})
    assert error["message"] == "invalid agent params: idempotencyKey: Field required"
    assert (await client.error("agent.wait", {}))["code"] == "INVALID_REQUEST"


async def test_chat_abort_mid_run(slow: GatewayServer) -> None:
    async with open_client(slow) as client:
        assert (await client.ok("chat.send", send("ab", "never answered", "ab-1")))[
            "status"] == "started"
        again = await client.ok("chat.send", send("ab", "never answered", "ab-1"))
        assert again == {"runId": "ab-1", "status": "in_flight"}
        await until(lambda: slow.gateway.runtime.engine.lanes.active("agent:main:ab") is not None)
        out = await client.ok("chat.abort", {"sessionKey": "ab"})
        assert out == {"ok": True, "aborted": True, "runIds": ["ab-1"]}
        frames = await chat_until_done(client, "ab-1")
        assert frames[-1]["payload"]["state"] == "aborted"
        assert (await client.ok("chat.abort", {"sessionKey": "ab"}))["aborted"] is False
        waited = await client.ok("agent.wait", {"runId": "ab-1"})
        assert waited["status"] == "error"


async def test_queued_runs_and_stop_command(slow: GatewayServer) -> None:
    async with open_client(slow) as client:
        await client.ok("chat.send", send("q", "first", "q-1"))
        await client.ok("chat.send", send("q", "second", "q-2"))
        mismatch = await client.error("chat.abort", {"sessionKey": "other", "runId": "q-2"})
        assert mismatch["code"] == "INVALID_REQUEST"
        out = await client.ok("chat.abort", {"sessionKey": "q", "runId": "q-2"})
        assert out["runIds"] == ["q-2"]
        queued = await client.event("chat", lambda p: p["runId"] == "q-2")
        assert queued["payload"]["state"] == "aborted"
        stop = await client.ok("chat.send", send("q", "/stop", "q-3"))
        assert stop == {"ok": True, "aborted": True, "runIds": ["q-1"]}
        assert (await chat_until_done(client, "q-1"))[-1]["payload"]["state"] == "aborted"


async def test_agent_timeout_and_wait_timeout(slow: GatewayServer) -> None:
    async with open_client(slow) as client:
        req_id = await client.request("agent", {"message": "slow", "idempotencyKey": "t-1",
                                                "timeout": 0.2})
        assert (await client.response(req_id))["payload"]["status"] == "accepted"
        waited = await client.ok("agent.wait", {"runId": "t-1", "timeoutMs": 10})
        assert waited == {"runId": "t-1", "status": "timeout"}
        final = (await client.response(req_id))["payload"]
        assert final["status"] == "error" and final["result"]["meta"]["aborted"] is True


async def test_commands_from_chat_send_answer_as_chat_events(client: WsClient) -> None:
    ack = await client.ok("chat.send", send("main", "/status", "cmd-status"))
    assert ack == {"runId": "cmd-status", "status": "started"}
    frames = await chat_until_done(client, "cmd-status")
    final = frames[-1]["payload"]
    assert final["state"] == "final"
    assert "Session: agent:main:main" in final["message"]["content"][0]["text"]
    history = await client.ok("chat.history", {"sessionKey": "main"})
    assert history["messages"] == []  # a command is not part of the transcript
    ack = await client.ok("chat.send", send("main", "/new", "cmd-new"))
    frames = await chat_until_done(client, "cmd-new")
    assert frames[-1]["payload"]["message"]["content"][0]["text"] == "Started a new session."


async def test_the_relay_listens_to_the_bus_only_while_a_client_is_connected(
        server: GatewayServer) -> None:
    bus = server.gateway.runtime.engine.bus
    idle = bus.subscribers  # the engine's own listeners (the channel runtime's)
    async with open_client(server) as first:
        await until(lambda: bus.subscribers == idle + 1)  # the relay joined the bus
        async with open_client(server) as second:
            await first.ok("chat.send", send("main", "seen by both", "run-both"))
            await chat_until_done(first, "run-both")
            await chat_until_done(second, "run-both")
        assert bus.subscribers == idle + 1  # one client is still there
    # Nobody is connected: the relay leaves the bus at the first event after that.
    await server.gateway.runtime.engine.run(Submission("for nobody"))
    await until(lambda: bus.subscribers == idle)
    async with open_client(server) as again:  # and comes back with the next client
        await again.ok("chat.send", send("main", "back again", "run-again"))
        frames = await chat_until_done(again, "run-again")
        assert frames[-1]["payload"]["state"] == "final"
