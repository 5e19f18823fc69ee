"""Live sessions over the WebSocket: ``sessions.subscribe`` (``sessions.changed`` with run
phases), ``sessions.messages.subscribe`` (``session.message`` in transcript order), their
bounds and clean-up, and ``chat.history`` pages, cursors and pending inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clawgate.agents.turn import Submission
from clawgate.gateway.hub import MAX_WATCHED_SESSIONS
from tests.support import openclaw_shapes as shapes
from tests.support.gateway_server import GatewayServer, echo, serve_gateway
from tests.support.poll import until
from tests.support.ws_client import WsClient, open_client

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path):
    async with serve_gateway(tmp_path / "state", echo(chunk_chars=4)) as running:
        yield running


def send(key: str, text: str, run_id: str) -> dict[str, Any]:
    return {"sessionKey": key, "message": text, "idempotencyKey": run_id}


def changed(client: WsClient, run_id: str | None = None) -> list[dict[str, Any]]:
    return [f["payload"] for f in client.events if f["event"] == "sessions.changed"
            and (run_id is None or f["payload"].get("runId") == run_id)]


async def test_subscriber_sees_the_run_of_another_client(server: GatewayServer) -> None:
    async with open_client(server) as watcher, open_client(server) as sender, \
            open_client(server) as bystander:
        assert await watcher.ok("sessions.subscribe") == {"subscribed": True}
        await sender.ok("chat.send", send("main", "hello from elsewhere", "run-a"))
        end = await watcher.event("sessions.changed",
                                  lambda p: p.get("runId") == "run-a" and p.get("phase") == "end")
        seen = changed(watcher, "run-a")
        for payload in seen:
            shapes.check(shapes.SESSIONS_CHANGED, payload)
        assert [p.get("reason") or p.get("phase") for p in seen] == [
            "send", "start", "model", "end"]
        start = seen[1]
        assert start["status"] == "running" and start["hasActiveRun"] is True
        assert start["activeRunIds"] == ["run-a"] and start["agentId"] == "main"
        assert seen[2]["modelProvider"] == "echo" and seen[2]["model"] == "echo"
        end = end["payload"]
        assert end["status"] == "done" and end["hasActiveRun"] is False
        assert end["endedAt"] >= end["startedAt"] and end["runtimeMs"] >= 0
        assert end["lastRunId"] == "run-a" and end["sessionKey"] == "agent:main:main"
        # chat events reach every reader; session changes only subscribers (as in OpenClaw)
        await bystander.event("chat", lambda p: p["runId"] == "run-a" and p["state"] == "final")
        assert changed(bystander) == [] and changed(sender) == []


async def test_failed_and_aborted_runs_say_so(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path, echo(delay_ms=10_000)) as server, \
            open_client(server) as client:
        await client.ok("sessions.subscribe", {})
        await client.ok("chat.send", send("slow", "wait for me", "run-slow"))
        await client.event("sessions.changed", lambda p: p.get("phase") == "start")
        await client.ok("chat.abort", {"sessionKey": "slow"})
        end = await client.event("sessions.changed", lambda p: p.get("phase") == "end")
        assert end["payload"]["status"] == "killed" and end["payload"]["abortedLastRun"] is True


async def test_unsubscribe_and_close_end_the_feed(server: GatewayServer) -> None:
    hub = server.gateway.hub
    async with open_client(server) as client:
        await client.ok("sessions.subscribe")
        await client.ok("sessions.messages.subscribe", {"key": "main"})
        assert len(hub.subs.sessions) == 1 and list(hub.subs.by_key) == ["agent:main:main"]
        assert await client.ok("sessions.unsubscribe") == {"subscribed": False}
        await client.ok("chat.send", send("main", "quiet now", "run-q"))
        await client.event("chat", lambda p: p["runId"] == "run-q" and p["state"] == "final")
        assert changed(client) == []  # still gets session.message: it follows the transcript
        assert any(f["event"] == "session.message" for f in client.events)
        assert await client.ok("sessions.messages.unsubscribe", {"key": "main"}) == {
            "subscribed": False, "key": "agent:main:main"}
        assert hub.subs.by_key == {}
        await client.ok("sessions.subscribe")
    await until(lambda: not hub.subs.sessions and not hub.subs.keys_of)  # gone with the conn


async def test_messages_of_a_turn_arrive_in_order(server: GatewayServer) -> None:
    async with open_client(server) as client, open_client(server) as other:
        out = await client.ok("sessions.messages.subscribe", {"key": "tools"})
        assert out == {"subscribed": True, "key": "agent:main:tools"}
        result = await server.gateway.runtime.engine.run(Submission(
            '/tool current_time {"timezone": "UTC"}', session_key="agent:main:tools"))
        assert result.status == "ok"
        await client.event("session.message", lambda p: p["message"]["role"] == "assistant"
                           and p["message"].get("stopReason") == "stop")
        live = [f["payload"] for f in client.events if f["event"] == "session.message"]
        for payload in live:
            shapes.check(shapes.SESSION_MESSAGE, payload)
        assert [p["message"]["role"] for p in live] == [
            "user", "assistant", "toolResult", "assistant"]
        assert [p["messageSeq"] for p in live] == [1, 2, 3, 4]
        assert {p["runId"] for p in live} == {result.run_id}
        assert live[1]["message"]["content"][-1]["type"] == "toolCall"
        # exactly what a history read shows, ids included
        history = await client.ok("chat.history", {"sessionKey": "tools"})
        assert [p["message"] for p in live] == history["messages"]
        assert not any(f["event"] == "session.message" for f in other.events)


async def test_message_subscriptions_are_bounded(server: GatewayServer) -> None:
    async with open_client(server) as client:
        for i in range(MAX_WATCHED_SESSIONS):
            await client.ok("sessions.messages.subscribe", {"key": f"s{i}"})
        await client.ok("sessions.messages.subscribe", {"key": "s0"})  # again: no new place
        error = await client.error("sessions.messages.subscribe", {"key": "one-too-many"})
        assert error["code"] == "INVALID_REQUEST" and "unsubscribe one first" in error["message"]
        assert server.gateway.metrics.get("ws_subscriptions_refused_total") == 1
        await client.ok("sessions.messages.unsubscribe", {"key": "s1"})
        await client.ok("sessions.messages.subscribe", {"key": "one-too-many"})


async def test_subscribe_with_list_params_answers_the_first_page(server: GatewayServer) -> None:
    await server.gateway.runtime.engine.run(Submission("hi", session_key="agent:main:listed"))
    async with open_client(server) as client:
        out = await client.ok("sessions.subscribe", {"limit": 5, "agentId": "main"})
        assert out["subscribed"] is True
        assert [r["key"] for r in out["list"]["sessions"]] == ["agent:main:listed"]


async def test_history_pages_and_cursor_deltas(server: GatewayServer) -> None:
    engine = server.gateway.runtime.engine
    for i in range(3):
        await engine.run(Submission(f"message {i}", session_key="agent:main:paged"))
    async with open_client(server) as client:
        newest = await client.ok("chat.history", {"sessionKey": "paged", "limit": 2})
        assert [m["content"][0]["text"] for m in newest["messages"]] == ["message 2"] * 2
        assert newest["hasMore"] is True and newest["nextOffset"] == 2
        older = await client.ok("chat.history", {"sessionKey": "paged", "limit": 10,
                                                 "offset": newest["nextOffset"]})
        assert len(older["messages"]) == 4 and older["hasMore"] is False
        assert "nextOffset" not in older
        full = await client.ok("chat.history", {"sessionKey": "paged"})
        cursor = full["deltaCursor"]
        nothing = await client.ok("chat.history", {"sessionKey": "paged", "cursor": cursor})
        assert nothing["kind"] == "delta" and nothing["messages"] == []
        await engine.run(Submission("message 3", session_key="agent:main:paged"))
        delta = await client.ok("chat.history", {"sessionKey": "paged", "cursor": cursor})
        assert [m["role"] for m in delta["messages"]] == ["user", "assistant"]
        assert delta["deltaCursor"] != cursor and delta["sessionInfo"]["key"] == \
            "agent:main:paged"
        await client.ok("sessions.reset", {"key": "paged"})
        assert await client.ok("chat.history", {"sessionKey": "paged", "cursor": cursor}) == {
            "kind": "reset"}
        small = await client.ok("chat.history", {"sessionKey": "paged", "maxBytes": 1024})
        assert small["messages"] == []  # the reset session is empty
        error = await client.error("chat.history", {"sessionKey": "paged", "cursor": cursor,
                                                    "offset": 2})
        assert "cursor cannot be used with offset" in error["message"]


async def test_history_caps_bytes_and_shows_queued_input(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path, echo(delay_ms=10_000)) as server, \
            open_client(server) as client:
        engine = server.gateway.runtime.engine
        await client.ok("chat.send", send("q", "x" * 2000, "run-1"))
        await until(lambda: engine.lanes.active("agent:main:q") is not None)
        await client.ok("chat.send", send("q", "waiting behind", "run-2"))
        out = await client.ok("chat.history", {"sessionKey": "q", "inputRunIds": [
            "run-1", "run-2", "never"]})
        assert [i["runId"] for i in out["pendingInputs"]["items"]] == ["run-2"]
        pending = out["pendingInputs"]["items"][0]
        assert pending["state"] == "pending"
        assert pending["message"]["content"] == [{"type": "text", "text": "waiting behind"}]
        assert out["inputReceipts"] == [{"runId": "run-1", "state": "consumed"},
                                        {"runId": "run-2", "state": "pending"}]
        assert out["sessionInfo"]["status"] == "running"
        assert out["sessionInfo"]["activeRunIds"] == ["run-1", "run-2"]
        capped = await client.ok("chat.history", {"sessionKey": "q", "maxBytes": 1024,
                                                  "maxChars": 100})
        assert capped["messages"][0]["content"][0]["text"] == \
            "[chat.history omitted: message too large]"
        tiny = await client.ok("chat.history", {"sessionKey": "q", "maxBytes": 1024})
        assert tiny["messages"] == [] and tiny["hasMore"] is True  # 2,000 characters do not fit
        engine.abort("agent:main:q")
