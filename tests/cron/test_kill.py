"""A gateway killed (SIGKILL) while a cron job's announcement is being posted: after the
restart the reply is sent again under the same idempotency key and delivered exactly once, and
the one-shot job is not replayed (its run is recorded as interrupted after a delivery attempt,
delivery status unknown)."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clawgate.client import GatewayClient
from tests.channels.support import OUT_TOKEN, SECRET, texts
from tests.gateway.test_process import GatewayProcess
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.poll import until

pytestmark = pytest.mark.anyio

CONFIG = textwrap.dedent('''
    [channels.webhook]
    inbound_secret = "{secret}"
    outbound_url = "{url}/hook"
    outbound_token = "{token}"

    [delivery]
    backoff_base_ms = 50
    backoff_max_ms = 200

    [heartbeat]
    every = "0m"
''')


def ws_url(gateway: GatewayProcess) -> str:
    return f"ws://127.0.0.1:{gateway.port}"


async def test_kill_9_while_a_cron_announcement_is_posted(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook:
        hook.hang("POST /hook", seconds=30, times=1)
        config = CONFIG.format(secret=SECRET, url=hook.url, token=OUT_TOKEN)
        state = tmp_path / "state"
        gateway = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(gateway.wait_ready)
            async with GatewayClient(ws_url(gateway), gateway.token) as client:
                job = await client.call("cron.add", {
                    "name": "once", "schedule": {"kind": "at",
                                                 "at": datetime.now(UTC).isoformat()},
                    "payload": {"kind": "agentTurn", "message": "the quarterly numbers"},
                    "delivery": {"mode": "announce", "channel": "webhook", "to": "alice"}})
            await hook.wait_for("POST /hook", within=20)  # the announcement is in flight
            gateway.proc.kill()
            gateway.proc.wait(10)
        finally:
            gateway.stop()
        again = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(again.wait_ready)
            expected = f"[cron:{job['id']} once] the quarterly numbers"
            await until(lambda: texts(hook) == [expected], within=20)
            keys = [c.headers["idempotency-key"] for c in hook.calls_of("POST /hook")]
            assert len(keys) == 2 and len(set(keys)) == 1
            assert hook.duplicates() == {}
            async with GatewayClient(ws_url(again), again.token) as client:
                (entry,) = (await client.call("cron.runs", {"id": job["id"]}))["entries"]
                assert entry["status"] == "error" and "interrupted" in entry["error"]
                assert entry["deliveryStatus"] == "unknown" and "delivered" not in entry
                stored = await client.call("cron.get", {"id": job["id"]})
                assert stored["enabled"] is False  # not replayed: no second turn, no second post
                status = await client.call("cron.status")
                assert status["running"] == 0
            assert len(hook.calls_of("POST /hook")) == 2
        finally:
            again.stop()
