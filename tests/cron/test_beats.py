"""Heartbeats through a real gateway, a real (loopback) OpenAI-compatible model and the webhook
channel, on a fake clock: HEARTBEAT_OK never reaches a channel payload, a WebSocket event or the
transcript; an empty HEARTBEAT.md costs no model call; active hours; set-heartbeats; every =
"0m"; the session's last route; a busy session is retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.channels.support import message, post, texts
from tests.cron.conftest import FakeClock
from tests.cron.support import MINUTE, cron_gateway
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.mock_openai import Fail, MockOpenAI, Reply
from tests.support.poll import until
from tests.support.ws_client import WsClient, open_client

pytestmark = pytest.mark.anyio

TOKEN = "HEARTBEAT_OK"
EVERY = 30 * MINUTE
LONG = "The nightly backup failed twice and the disk is 93% full; " * 8  # > 300 characters
TASKS = "# Tasks\n\n- Check the backups and the disk.\n"


def model(mock: MockOpenAI, **heartbeat: Any) -> dict[str, Any]:
    """Config: the default agent on the mock model, a heartbeat every 30 minutes."""
    return {"agents": [{"id": "main", "default": True, "model": "openai/mock-model"}],
            "plugins": {"entries": {"openai": {"enabled": True, "config": {
                "base_url": mock.url, "api_key_env": "CLAWGATE_TEST_NO_KEY",
                "max_retries": 0}}}},
            "heartbeat": {"every": "30m", **heartbeat}}


def tasks(state: Path, text: str = TASKS) -> None:
    (state / "workspace" / "HEARTBEAT.md").write_text(text, encoding="utf-8")


async def beat(ws: WsClient, count: int = 1, within: float = 20.0) -> dict[str, Any]:
    """The ``count``-th heartbeat event (read from the socket as it comes)."""
    frame = await ws.event("heartbeat", lambda _p: sum(
        e["event"] == "heartbeat" for e in ws.events) >= count, within=within)
    seen = [e for e in ws.events if e["event"] == "heartbeat"]
    return dict(seen[count - 1]["payload"]) if len(seen) >= count else dict(frame["payload"])


def frames(ws: WsClient, *names: str) -> str:
    return "\n".join(orjson.dumps(e).decode() for e in ws.events if e["event"] in names)


@pytest.mark.parametrize(("reply", "delivered"), [
    (TOKEN, None),  # only the token
    (f"{TOKEN} nothing needs attention.", None),  # at the start, within ack_max_chars
    (f"All quiet today. {TOKEN}", None),  # at the end, within
    (f"{TOKEN} {LONG}", LONG.strip()),  # at the start, over: delivered without it
    (f"{LONG} {TOKEN}", LONG.strip()),  # at the end, over
    (f"{LONG}— {TOKEN} — one more thing", f"{LONG}— — one more thing"),  # middle, over
    (f"Printer jammed {TOKEN} again", "Printer jammed again"),  # middle, within: not an ack
], ids=["only", "start-short", "end-short", "start-long", "end-long", "middle-long",
        "middle-short"])
async def test_heartbeat_ok_reaches_no_channel_no_client_no_transcript(
        tmp_path: Path, clock: FakeClock, mock_openai: MockOpenAI, reply: str,
        delivered: str | None) -> None:
    mock_openai.plan(Reply(reply, chunks=9))  # the token split across deltas
    config = model(mock_openai, target="webhook", to="alice")
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, config,
                                                        hook=hook) as server, \
            open_client(server) as ws:
        tasks(tmp_path)
        clock.advance(EVERY)
        event = await beat(ws)
        assert len(mock_openai.requests) == 1
        if delivered is None:
            assert event["status"] == "ok-token" and event["silent"] is True, event
            assert hook.calls_of("POST /hook") == []
            history = await ws.ok("chat.history", {"sessionKey": "main"})
            assert history["messages"] == []  # the acknowledged exchange is archived
        else:
            assert event["status"] == "sent", event
            assert (event["channel"], event["to"]) == ("webhook", "alice")
            assert texts(hook) == [delivered]
            history = await ws.ok("chat.history", {"sessionKey": "main"})
            assert history["messages"][-1]["content"][0]["text"] == delivered
        final = await ws.event("chat", lambda p: p["state"] == "final")
        shown = final["payload"]["message"]["content"]
        assert (shown[0]["text"] if shown else None) == delivered
        if delivered is not None and len(delivered) > 300:  # long enough to preview
            deltas = [e["payload"]["deltaText"] for e in ws.events
                      if e["event"] == "chat" and e["payload"]["state"] == "delta"]
            assert deltas and delivered.startswith("".join(deltas))
        for call in hook.calls:
            assert TOKEN not in str(call.body)
        assert TOKEN not in frames(ws, "chat", "agent", "heartbeat")
        stored = (await ws.ok("chat.history", {"sessionKey": "main"}))["messages"]
        replies = [m for m in stored if m["role"] == "assistant"]  # (the prompt names it)
        assert len(replies) == (0 if delivered is None else 1)
        assert TOKEN not in orjson.dumps(replies).decode()


async def test_an_empty_heartbeat_file_calls_no_model(tmp_path: Path, clock: FakeClock,
                                                      mock_openai: MockOpenAI) -> None:
    mock_openai.plan(Reply(f"Noted. {TOKEN}"))
    async with cron_gateway(tmp_path, clock, model(mock_openai)) as server, \
            open_client(server) as ws:
        # A new workspace's HEARTBEAT.md is the starter: headings and comments only.
        clock.advance(EVERY)
        event = await beat(ws)
        assert (event["status"], event["reason"]) == ("skipped", "empty-heartbeat-file")
        tasks(tmp_path, "# Tasks\n\n- [ ]\n*\n<!-- later -->\n")
        clock.advance(EVERY)
        event = await beat(ws, 2)
        assert event["reason"] == "empty-heartbeat-file"
        assert mock_openai.requests == []
        metrics = server.gateway.metrics
        assert metrics.get("heartbeat_skipped_total", reason="empty-heartbeat-file") == 2
        # A queued system event is a reason to run, empty file or not; it leads the prompt.
        woke = await ws.ok("wake", {"mode": "now", "text": "Deploy finished"})
        assert woke["ok"] is True and woke["heartbeat"] is True
        event = await beat(ws, 3)
        assert event["status"] == "ok-token"
        (request,) = mock_openai.requests
        prompt = request.body["messages"][-1]["content"]
        assert prompt.startswith("System: Deploy finished\n\nRead HEARTBEAT.md")


async def test_active_hours(tmp_path: Path, clock: FakeClock, mock_openai: MockOpenAI) -> None:
    mock_openai.plan(Reply("Backup failed: " + LONG))
    hours = {"start": "09:00", "end": "17:00", "tz": "Europe/Berlin"}  # 08:00-16:00 UTC now
    async with cron_gateway(tmp_path, clock, model(mock_openai, active_hours=hours,
                                                   target="none")) as server, \
            open_client(server) as ws:
        tasks(tmp_path)
        clock.advance(EVERY)  # 00:30 UTC = 01:30 in Berlin
        event = await beat(ws)
        assert (event["status"], event["reason"]) == ("skipped", "outside-active-hours")
        clock.advance(7 * 60 * MINUTE)  # 07:30 UTC = 08:30: one tick, still outside
        event = await beat(ws, 2)
        assert event["reason"] == "outside-active-hours" and mock_openai.requests == []
        clock.advance(EVERY)  # 08:00 UTC = 09:00 in Berlin
        event = await beat(ws, 3)
        assert (event["status"], event["reason"]) == ("skipped", "target-none")  # it ran
        assert len(mock_openai.requests) == 1
        metrics = server.gateway.metrics
        assert metrics.get("heartbeat_skipped_total", reason="outside-active-hours") == 2


async def test_set_heartbeats_false_stops_them(tmp_path: Path, clock: FakeClock,
                                               mock_openai: MockOpenAI) -> None:
    mock_openai.plan(Reply(TOKEN), Reply(TOKEN))
    async with cron_gateway(tmp_path, clock, model(mock_openai)) as server, \
            open_client(server) as ws:
        tasks(tmp_path)
        assert (await ws.ok("health"))["heartbeatSeconds"] == 1800
        assert await ws.ok("set-heartbeats", {"enabled": False}) == {"ok": True,
                                                                     "enabled": False}
        assert (await ws.ok("health"))["heartbeatSeconds"] == 0
        for _ in range(4):
            clock.advance(EVERY)
        woke = await ws.ok("wake", {"mode": "now", "text": "anyone?"})
        assert woke["heartbeat"] is False
        assert await ws.ok("last-heartbeat") is None
        assert mock_openai.requests == []
        await ws.ok("set-heartbeats", {"enabled": True})
        clock.advance(EVERY - 1)  # the missed ticks are not made up in a burst
        assert mock_openai.requests == [] and await ws.ok("last-heartbeat") is None
        clock.advance(1)
        event = await beat(ws)
        assert event["status"] == "ok-token" and len(mock_openai.requests) == 1
        last = await ws.ok("last-heartbeat")
        assert last["status"] == "ok-token" and last["ts"] == event["ts"]
        # The system event queued while they were off led the first prompt after.
        assert mock_openai.requests[0].body["messages"][-1]["content"].startswith(
            "System: anyone?")


async def test_every_0m_never_runs(tmp_path: Path, clock: FakeClock,
                                   mock_openai: MockOpenAI) -> None:
    async with cron_gateway(tmp_path, clock, model(mock_openai, every="0m")) as server, \
            open_client(server) as ws:
        tasks(tmp_path)
        for _ in range(6):
            clock.advance(EVERY)
        assert (await ws.ok("wake", {"mode": "now", "text": "hello?"}))["heartbeat"] is False
        assert (await ws.ok("health"))["heartbeatSeconds"] == 0
        assert await ws.ok("last-heartbeat") is None
        assert mock_openai.requests == []
        assert server.gateway.metrics.get("heartbeat_runs_total", status="ok") == 0


async def test_target_last_and_a_busy_session(tmp_path: Path, clock: FakeClock,
                                              mock_openai: MockOpenAI) -> None:
    mock_openai.plan(Reply("hello bob", delay=1.0), Reply("Backup failed: " + LONG))
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, model(mock_openai),
                                                        hook=hook) as server, \
            open_client(server) as ws, server.client(token=None) as http:
        tasks(tmp_path)
        # Bob's DM is admitted on the main session and is still being answered.
        reply = await post(http, message("hi", sender="bob"))
        assert reply.status_code == 202, reply.text
        await until(lambda: len(mock_openai.requests) == 1)
        clock.advance(EVERY)
        metrics = server.gateway.metrics
        await until(lambda: metrics.get("heartbeat_skipped_total", reason="busy") >= 1)
        assert len(mock_openai.requests) == 1  # no heartbeat while the session is busy
        await until(lambda: texts(hook) == ["hello bob"], within=20)
        clock.advance(1_000)  # the retry
        event = await beat(ws)
        assert event["status"] == "sent" and event["to"] == "bob", event
        await until(lambda: len(texts(hook)) == 2)
        assert texts(hook)[1] == "Backup failed: " + LONG.strip()
        assert hook.bodies("/hook")[1]["to"] == "bob"  # type: ignore[index]
        assert hook.duplicates() == {}


async def test_a_failed_heartbeat_tells_the_gateway_not_the_chat(
        tmp_path: Path, clock: FakeClock, mock_openai: MockOpenAI) -> None:
    mock_openai.plan(Reply("hello bob"), Fail(400))
    config = model(mock_openai, target="webhook", to="alice")
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, config,
                                                        hook=hook) as server, \
            open_client(server) as ws, server.client(token=None) as http:
        tasks(tmp_path)
        reply = await post(http, message("hi", sender="bob"))  # bob is the last route
        assert reply.status_code == 202, reply.text
        await until(lambda: texts(hook) == ["hello bob"], within=20)
        clock.advance(EVERY)
        event = await beat(ws)
        assert event["status"] == "failed" and event["indicatorType"] == "error", event
        assert texts(hook) == ["hello bob"]  # no "could not be completed" notice to alice
        # A heartbeat's own target does not become the session's last route.
        job = await ws.ok("cron.add", {
            "name": "to last", "schedule": {"kind": "every", "everyMs": EVERY},
            "payload": {"kind": "agentTurn", "message": "x"},
            "delivery": {"mode": "announce", "channel": "last"}})
        mock_openai.plan(Reply("for bob"))
        entry = (await ws.ok("cron.run", {"id": job["id"]}, within=20))["entry"]
        assert entry["deliveryStatus"] == "delivered", entry
        assert hook.bodies("/hook")[-1]["to"] == "bob"  # type: ignore[index]
