"""Durable outbound: a reply is an intent before any platform I/O, sent again after a crash,
retried while the receiver is down, failed (and visible) when the receiver refuses it."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import httpx
import orjson
import pytest

from tests.channels.support import OUT_TOKEN, SECRET, message, post, texts, webhook_gateway
from tests.gateway.test_process import GatewayProcess
from tests.support.fakes.webhook import WebhookReceiver, sign
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio


async def test_receiver_down_then_back(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook:
        hook.fail_status("POST /hook", 503, times=6)
        async with webhook_gateway(tmp_path, hook) as server, server.client(token=None) as http:
            await post(http, message("patience"))
            await until(lambda: texts(hook) == ["patience"], within=20)
            assert len(hook.calls_of("POST /hook")) == 7  # six 503s, then the delivery
            assert hook.duplicates() == {}
            async with open_client(server) as ws:
                async def settled() -> bool:  # the receipt is committed just after the 2xx
                    status = await ws.ok("channels.status")
                    row = status["channelAccounts"]["webhook"][0]
                    return bool(row["pendingDeliveries"] == 0 and row["failedDeliveries"] == 0)

                await until(settled, within=10)


async def test_429_honours_retry_after(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook:
        hook.rate_limit("POST /hook", retry_after=1, times=1)
        async with webhook_gateway(tmp_path, hook) as server, server.client(token=None) as http:
            await post(http, message("later"))
            await until(lambda: texts(hook) == ["later"], within=20)
            first, second = hook.calls_of("POST /hook")[:2]
            assert second.at - first.at >= 0.9  # not before the receiver said


async def test_a_refusing_receiver_fails_the_intent_visibly(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook:
        hook.fail_status("POST /hook", 400, times=1)
        async with webhook_gateway(tmp_path, hook) as server, server.client(token=None) as http, \
                open_client(server) as ws:
            await post(http, message("refused"))

            async def failed() -> bool:
                status = await ws.ok("channels.status")
                return status["channelAccounts"]["webhook"][0]["failedDeliveries"] == 1

            await until(failed, within=20)
            status = await ws.ok("channels.status", {"probe": True})
            row = status["channelAccounts"]["webhook"][0]
            assert "400" in row["lastDeliveryError"] and row["probe"]["ok"] is True
            # Every loaded channel plugin is listed (bundled ones too); only webhook is set up.
            assert "webhook" in status["channelOrder"] and row["connected"] is True
            assert [c for c, s in status["channels"].items() if s["configured"]] == ["webhook"]
            assert len(hook.calls_of("POST /hook")) == 1  # a 4xx is not retried


async def test_a_stuck_conversation_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """Replies of one account go out per conversation: while the receiver holds Bob's reply,
    Carol's is delivered; Bob's follows when the receiver answers."""
    async with WebhookReceiver() as hook:
        hook.hang(lambda call: call.name == "POST /hook" and call.body["to"] == "bob",
                  seconds=5, times=1)
        async with webhook_gateway(tmp_path, hook) as server, server.client(token=None) as http:
            await post(http, message("for bob", sender="bob"))
            held = await hook.wait_for("POST /hook", within=10)  # Bob's reply is held
            await post(http, message("for carol", sender="carol"))
            await until(lambda: texts(hook) == ["for carol"], within=10)
            assert hook.answered(held) is None  # Carol's went out while Bob's was held
            await until(lambda: sorted(texts(hook)) == ["for bob", "for carol"], within=20)
            assert hook.duplicates() == {}


async def test_a_long_reply_is_chunked_in_order(tmp_path: Path) -> None:
    long = "\n\n".join(f"Paragraph {n}: " + "words " * 60 for n in range(12))
    async with WebhookReceiver() as hook, \
            webhook_gateway(tmp_path, hook, text_chunk_limit=500) as server, \
            server.client(token=None) as http:
        await post(http, message(long))
        await until(lambda: len(texts(hook)) >= 2 and "".join(texts(hook)) == long, within=20)
        bodies = hook.bodies("/hook")
        parts = [b["part"] for b in bodies]  # type: ignore[index]
        assert parts == list(range(1, len(parts) + 1))
        assert all(len(t) <= 500 for t in texts(hook))
        assert {b["parts"] for b in bodies} == {len(parts)}  # type: ignore[index]


CONFIG = textwrap.dedent('''
    [channels.webhook]
    inbound_secret = "{secret}"
    outbound_url = "{url}/hook"
    outbound_token = "{token}"
    dm_policy = "open"
    allow_from = ["*"]

    [delivery]
    backoff_base_ms = 50
    backoff_max_ms = 200
''')


def signed_post(url: str, body: dict[str, object]) -> httpx.Response:
    raw = orjson.dumps(body)
    return httpx.post(f"{url}/channels/webhook/default/inbound", content=raw,
                      headers=sign(SECRET, raw), timeout=10)


async def test_kill_9_while_the_reply_is_being_posted(tmp_path: Path) -> None:
    """The run completed (its intent is committed); the gateway dies while the receiver holds
    the POST. After a restart the reply is sent again under the same idempotency key, and it is
    delivered once as a success."""
    async with WebhookReceiver() as hook:
        hook.hang("POST /hook", seconds=30, times=1)
        config = CONFIG.format(secret=SECRET, url=hook.url, token=OUT_TOKEN)
        state = tmp_path / "state"
        gateway = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(gateway.wait_ready)
            r = await asyncio.to_thread(signed_post, gateway.url,
                                        message("survive", msg_id="k9"))
            assert r.status_code == 202, r.text
            await hook.wait_for("POST /hook", within=10)  # the first attempt is in flight
            gateway.proc.kill()
            gateway.proc.wait(10)
        finally:
            gateway.stop()
        again = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(again.wait_ready)
            await until(lambda: texts(hook) == ["survive"], within=20)
            keys = [c.headers["idempotency-key"] for c in hook.calls_of("POST /hook")]
            assert len(set(keys)) == 1 and len(keys) == 2
            assert hook.duplicates() == {}
            replay = await asyncio.to_thread(signed_post, again.url, message("survive",
                                                                             msg_id="k9"))
            assert replay.json() == {"duplicate": True}  # the platform retried: nothing new
        finally:
            again.stop()
