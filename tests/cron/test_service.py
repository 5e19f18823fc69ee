"""The wired cron service through a real gateway: isolated and main jobs, announcements
through the webhook channel (exactly once), missing targets, failures and auto-disable, one-shots
and webhook deliveries. The scheduler runs on a fake clock the tests move."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.support import message, post, texts
from tests.cron.conftest import FakeClock
from tests.cron.support import MINUTE, announce, cron_gateway, isolated, runs_of
from tests.support.fakes.harness import json_response
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio


async def test_an_isolated_job_runs_a_fresh_session_each_time(tmp_path: Path,
                                                              clock: FakeClock) -> None:
    async with cron_gateway(tmp_path, clock) as server, open_client(server) as ws:
        job = await ws.ok("cron.add", isolated("summarise the inbox"))
        assert job["sessionTarget"] == "isolated" and job["state"]["nextRunAtMs"] == \
            clock.now + MINUTE
        clock.advance(MINUTE)
        (first,) = await runs_of(ws, job["id"])
        clock.advance(MINUTE)
        second = (await runs_of(ws, job["id"], 2))[0]
        for entry in (first, second):
            assert entry["status"] == "ok", entry
            assert entry["summary"] == f"[cron:{job['id']} isolated job] summarise the inbox"
            assert entry["sessionKey"].startswith(f"agent:main:cron:{job['id']}:run:")
            assert entry["deliveryStatus"] == "not-requested" and "delivered" not in entry
            assert entry["model"] == "echo" and entry["provider"] == "echo"
            assert entry["usage"]["output_tokens"] > 0
        assert first["sessionKey"] != second["sessionKey"]
        assert first["sessionId"] != second["sessionId"]
        finished = await ws.event("cron", lambda p: p["action"] == "finished")
        assert finished["payload"]["jobId"] == job["id"]
        stored = await ws.ok("cron.get", {"id": job["id"]})
        assert stored["state"]["lastStatus"] == "ok"
        assert stored["state"]["nextRunAtMs"] == clock.now + MINUTE


async def test_payload_model_and_thinking_reach_the_run_session(tmp_path: Path,
                                                                clock: FakeClock) -> None:
    async with cron_gateway(tmp_path, clock) as server, open_client(server) as ws:
        job = await ws.ok("cron.add", isolated(payload={"model": "echo/echo",
                                                        "thinking": "low"}))
        result = await ws.ok("cron.run", {"id": job["id"]}, within=20)
        assert result["ran"] is True and result["entry"]["status"] == "ok", result
        entry = await server.gateway.runtime.store.get(result["entry"]["sessionKey"])
        assert entry is not None
        assert (entry.model_override, entry.provider_override, entry.thinking_level) == (
            "echo", "echo", "low")


async def test_a_main_job_queues_a_system_event_for_the_next_message(
        tmp_path: Path, clock: FakeClock) -> None:
    async with cron_gateway(tmp_path, clock) as server, open_client(server) as ws:
        job = await ws.ok("cron.add", {
            "name": "nudge", "schedule": {"kind": "every", "everyMs": MINUTE},
            "sessionTarget": "main", "wakeMode": "next-heartbeat",
            "payload": {"kind": "systemEvent", "text": "Standup in 10 minutes"}})
        clock.advance(MINUTE)
        (entry,) = await runs_of(ws, job["id"])
        assert entry["status"] == "ok" and entry["summary"] == "Standup in 10 minutes"
        assert entry["sessionKey"] == "agent:main:main"
        # The next message on the main session carries it ahead of its own text (echo shows).
        reply = await ws.ok("chat.send", {"sessionKey": "main", "message": "hello",
                                          "idempotencyKey": "after-nudge"})
        assert reply["runId"] == "after-nudge"
        final = await ws.event("chat", lambda p: p["runId"] == "after-nudge"
                               and p["state"] == "final")
        text = final["payload"]["message"]["content"][0]["text"]
        assert text == "System: Standup in 10 minutes\n\nhello"
        # Taken once: the following message is plain.
        await ws.ok("chat.send", {"sessionKey": "main", "message": "again",
                                  "idempotencyKey": "plain"})
        final = await ws.event("chat", lambda p: p["runId"] == "plain" and p["state"] == "final")
        assert final["payload"]["message"]["content"][0]["text"] == "again"


async def test_announce_delivers_once_through_the_webhook_channel(tmp_path: Path,
                                                                  clock: FakeClock) -> None:
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, hook=hook) as server, \
            open_client(server) as ws:
        job = await ws.ok("cron.add", isolated("daily digest", delivery=announce()))
        clock.advance(MINUTE)
        (entry,) = await runs_of(ws, job["id"])
        assert entry["status"] == "ok", entry
        assert (entry["deliveryStatus"], entry["delivered"]) == ("delivered", True)
        assert texts(hook) == [f"[cron:{job['id']} isolated job] daily digest"]
        (body,) = hook.bodies("/hook")
        assert body["to"] == "alice" and body["origin"] == "reply"  # type: ignore[index]
        assert hook.duplicates() == {}
        state = (await ws.ok("cron.get", {"id": job["id"]}))["state"]
        assert state["lastDelivered"] is True and state["lastDeliveryStatus"] == "delivered"


async def test_announce_to_last_uses_the_main_sessions_last_route(tmp_path: Path,
                                                                  clock: FakeClock) -> None:
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, hook=hook) as server, \
            open_client(server) as ws, server.client(token=None) as http:
        job = await ws.ok("cron.add", isolated("to whoever wrote last",
                                               delivery={"mode": "announce", "channel": "last"}))
        before = await ws.ok("cron.run", {"id": job["id"]}, within=20)
        assert before["entry"]["status"] == "error"  # no channel message yet: no route
        assert before["entry"]["deliveryStatus"] == "not-delivered"
        assert '"last"' in before["entry"]["error"] and "sessionId" not in before["entry"]
        reply = await post(http, message("hi", sender="bob"))  # DMs share the main session
        assert reply.status_code == 202, reply.text
        await until(lambda: texts(hook) == ["hi"], within=20)
        entry = (await ws.ok("cron.run", {"id": job["id"]}, within=20))["entry"]
        assert entry["deliveryStatus"] == "delivered", entry
        last = hook.bodies("/hook")[-1]
        assert last["to"] == "bob" and last["text"].endswith("to whoever wrote last")  # type: ignore[index]


async def test_a_missing_target_fails_the_run_unless_best_effort(tmp_path: Path,
                                                                 clock: FakeClock) -> None:
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, hook=hook) as server, \
            open_client(server) as ws:
        store = server.gateway.runtime.store
        strict = await ws.ok("cron.add", isolated(delivery=announce(channel="telegram")))
        entry = (await ws.ok("cron.run", {"id": strict["id"]}, within=20))["entry"]
        assert entry["status"] == "error" and entry["deliveryStatus"] == "not-delivered"
        assert entry["error"].startswith("delivery.channel:") and "telegram" in entry["error"]
        assert await store.get(entry["sessionKey"]) is None  # refused before any model call
        no_one = await ws.ok("cron.add", isolated(delivery={"mode": "announce",
                                                            "channel": "webhook"}))
        entry = (await ws.ok("cron.run", {"id": no_one["id"]}, within=20))["entry"]
        assert entry["status"] == "error" and entry["error"].startswith("delivery.to:")
        lenient = await ws.ok("cron.add", isolated(
            delivery=announce(channel="telegram", bestEffort=True)))
        entry = (await ws.ok("cron.run", {"id": lenient["id"]}, within=20))["entry"]
        assert entry["status"] == "ok" and entry["deliveryStatus"] == "not-delivered"
        assert "telegram" in entry["deliveryError"] and entry["delivered"] is False
        assert entry["summary"].endswith("report")  # the turn ran
        assert hook.calls_of("POST /hook") == []


async def test_a_refused_send_is_recorded_as_not_delivered(tmp_path: Path,
                                                           clock: FakeClock) -> None:
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, hook=hook) as server, \
            open_client(server) as ws:
        hook.fail_status("POST /hook", 400, times=2)
        strict = await ws.ok("cron.add", isolated(delivery=announce()))
        entry = (await ws.ok("cron.run", {"id": strict["id"]}, within=20))["entry"]
        assert (entry["status"], entry["deliveryStatus"], entry["delivered"]) == (
            "error", "not-delivered", False)
        assert entry["error"].startswith("delivery failed:") and "400" in entry["error"]
        lenient = await ws.ok("cron.add", isolated(delivery=announce(bestEffort=True)))
        entry = (await ws.ok("cron.run", {"id": lenient["id"]}, within=20))["entry"]
        assert (entry["status"], entry["deliveryStatus"]) == ("ok", "not-delivered")
        assert "400" in entry["deliveryError"]
        assert texts(hook) == []


async def test_a_send_still_pending_at_the_deadline_is_not_called_delivered(
        tmp_path: Path, clock: FakeClock) -> None:
    async with WebhookReceiver() as hook, cron_gateway(
            tmp_path, clock, {"cron": {"delivery_timeout_s": 0.3}}, hook=hook) as server, \
            open_client(server) as ws:
        hook.hang("POST /hook", seconds=1.0)  # no answer before the run's deadline (then 504)
        job = await ws.ok("cron.add", isolated("eventually", delivery=announce()))
        entry = (await ws.ok("cron.run", {"id": job["id"]}, within=20))["entry"]
        assert entry["status"] == "ok" and entry["deliveryStatus"] == "unknown", entry
        assert "delivered" not in entry and "still pending" in entry["deliveryError"]
        await until(lambda: len(texts(hook)) == 1, within=20)  # the outbound worker went on
        assert hook.duplicates() == {}


async def test_repeated_failures_disable_the_job_and_tell_the_owner(tmp_path: Path,
                                                                    clock: FakeClock) -> None:
    config = {"cron": {"failure_threshold": 2},
              "agents": [{"id": "main", "default": True},
                         {"id": "broken", "model": "missing/model"}]}  # its turns fail
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, config,
                                                        hook=hook) as server, \
            open_client(server) as ws:
        job = await ws.ok("cron.add", isolated(name="failing", agentId="broken",
                                               delivery=announce()))
        first = (await ws.ok("cron.run", {"id": job["id"]}, within=20))["entry"]
        assert first["status"] == "error" and "'missing'" in first["error"]
        state = (await ws.ok("cron.get", {"id": job["id"]}))["state"]
        assert state["consecutiveErrors"] == 1 and "autoDisabled" not in state
        await ws.ok("cron.run", {"id": job["id"]}, within=20)
        stored = await ws.ok("cron.get", {"id": job["id"]})
        assert stored["enabled"] is False and "nextRunAtMs" not in stored["state"]
        assert stored["state"]["autoDisabled"]["consecutiveErrors"] == 2
        disabled = await ws.event("cron", lambda p: p["action"] == "disabled")
        assert disabled["payload"]["jobId"] == job["id"]
        assert disabled["payload"]["consecutiveErrors"] == 2
        # The job's channel is told (a gateway notice), once.
        await until(lambda: len(hook.bodies("/hook")) == 1, within=20)
        (notice,) = hook.bodies("/hook")
        assert notice["origin"] == "clawgate"  # type: ignore[index]
        assert notice["text"].startswith("⚠️ Cron job 'failing'")  # type: ignore[index]
        # And the agent's main session: its next message carries the notice.
        await ws.ok("chat.send", {"sessionKey": "agent:broken:main", "message": "news?",
                                  "idempotencyKey": "owner"})
        await ws.event("chat", lambda p: p["runId"] == "owner" and p["state"] == "error")
        history = await ws.ok("chat.history", {"sessionKey": "agent:broken:main"})
        text = history["messages"][0]["content"][0]["text"]
        assert text.startswith(f"System: Cron job 'failing' ({job['id']}) was disabled after 2")
        assert f"clawgate cron edit {job['id']} --enable" in text and text.endswith("news?")
        # A disabled job does not run on its schedule.
        clock.advance(10 * MINUTE)
        entries = (await ws.ok("cron.runs", {"id": job["id"]}))["entries"]
        assert len(entries) == 2


async def test_a_one_shot_is_deleted_only_after_its_delivery(tmp_path: Path,
                                                             clock: FakeClock) -> None:
    at = {"kind": "at", "at": "2026-01-05T00:01:00Z"}  # a minute after the fake clock's start
    async with WebhookReceiver() as hook, cron_gateway(tmp_path, clock, hook=hook) as server, \
            open_client(server) as ws:
        done = await ws.ok("cron.add", isolated("once", schedule=at, delivery=announce()))
        hook.responder = lambda call: json_response({"error": "no"}, status=400) \
            if "lost" in str(call.body) else None
        kept = await ws.ok("cron.add", isolated("once, lost", name="kept", schedule=at,
                                                delivery=announce(bestEffort=True)))
        assert done["deleteAfterRun"] is True and kept["deleteAfterRun"] is True
        clock.advance(MINUTE)

        async def both_finished() -> bool:
            finished = {e["payload"]["jobId"] for e in ws.events
                        if e["event"] == "cron" and e["payload"]["action"] == "finished"}
            if len(finished) < 2:
                await ws.ok("cron.status")  # reads more frames
            return len(finished) == 2

        await until(both_finished, within=20)
        assert texts(hook) == [f"[cron:{done['id']} isolated job] once"]
        gone = await ws.error("cron.get", {"id": done["id"]})
        assert gone["code"] == "INVALID_REQUEST" and done["id"] in gone["message"]
        stay = await ws.ok("cron.get", {"id": kept["id"]})  # not delivered: kept, disabled
        assert stay["enabled"] is False
        assert stay["state"]["lastStatus"] == "ok"
        assert stay["state"]["lastDeliveryStatus"] == "not-delivered"
        listed = await ws.ok("cron.list", {"includeDisabled": True})
        assert [j["id"] for j in listed["jobs"]] == [kept["id"]]


async def test_webhook_delivery_posts_the_finished_run(tmp_path: Path, clock: FakeClock) -> None:
    async with WebhookReceiver() as hook, cron_gateway(
            tmp_path, clock, {"cron": {"webhook_token": "cron-secret"}}) as server, \
            open_client(server) as ws:
        job = await ws.ok("cron.add", isolated(
            "post me", delivery={"mode": "webhook", "to": f"{hook.url}/cron"}))
        entry = (await ws.ok("cron.run", {"id": job["id"]}, within=20))["entry"]
        assert entry["status"] == "ok" and entry["deliveryStatus"] == "delivered", entry
        (call,) = hook.calls_of("POST /cron")
        assert call.headers["authorization"] == "Bearer cron-secret"
        body = call.body
        assert isinstance(body, dict)
        assert (body["jobId"], body["action"], body["status"]) == (job["id"], "finished", "ok")
        assert body["summary"] == entry["summary"] and body["sessionKey"] == entry["sessionKey"]
        assert call.headers["idempotency-key"] == body["runId"]
        hook.fail_status("POST /cron", 500, times=1)
        entry = (await ws.ok("cron.run", {"id": job["id"]}, within=20))["entry"]
        assert (entry["status"], entry["deliveryStatus"]) == ("error", "not-delivered")
        assert "answered 500" in entry["deliveryError"] and hook.url in entry["deliveryError"]
        main = await ws.ok("cron.add", {
            "name": "main hook", "schedule": {"kind": "every", "everyMs": MINUTE},
            "payload": {"kind": "systemEvent", "text": "ping"}, "wakeMode": "next-heartbeat",
            "delivery": {"mode": "webhook", "to": f"{hook.url}/cron"}})
        entry = (await ws.ok("cron.run", {"id": main["id"]}, within=20))["entry"]
        assert entry["deliveryStatus"] == "delivered"
        assert hook.calls_of("POST /cron")[-1].body["summary"] == "ping"  # type: ignore[index]
