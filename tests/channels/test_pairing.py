"""DM pairing through the webhook channel: an unknown sender gets one code and is not served,
the owner approves it with the CLI (or denies it over RPC), codes expire, at most three wait."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from clawgate.types import now_ms
from tests.channels.support import message, post, texts, webhook_gateway
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.gateway_server import TOKEN, GatewayServer
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio
CODE = re.compile(r"approve this code: ([A-Z0-9]{8})")


def codes(hook: WebhookReceiver) -> list[str]:
    return [m.group(1) for t in texts(hook) if (m := CODE.search(t))]


async def cli(server: GatewayServer, tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {"CLAWGATE_STATE_DIR": str(tmp_path / "cli-state"),
           "CLAWGATE_GATEWAY_PORT": str(server.port), "CLAWGATE_GATEWAY_TOKEN": TOKEN,
           "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clawgate.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_pairing_then_approval_through_the_cli(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, \
            webhook_gateway(tmp_path / "gw", hook, dm_policy="pairing", allow_from=[]) as server, \
            server.client(token=None) as http:
        first = await post(http, message("hello?", sender="stranger"))
        assert first.status_code == 202 and first.json()["outcome"] == "pairing"
        await until(lambda: len(codes(hook)) == 1)
        code = codes(hook)[0]
        assert not set(code) & set("0O1I")
        again = await post(http, message("hello again?", sender="stranger"))
        assert again.json()["outcome"] == "pairing"
        store = server.gateway.runtime.store
        assert await store.get("agent:main:main") is None  # nothing was processed
        rc, out = await cli(server, tmp_path, "pairing", "list", "webhook")
        assert rc == 0 and code in out and "stranger" in out, out
        rc, out = await cli(server, tmp_path, "pairing", "approve", "webhook", code)
        assert rc == 0 and "approved stranger" in out, out
        await until(lambda: any("approved" in t for t in texts(hook)))
        served = await post(http, message("now?", sender="stranger"))
        assert served.json()["outcome"] == "admitted"
        await until(lambda: "now?" in texts(hook))
        assert len(codes(hook)) == 1  # the code was sent once
        assert hook.duplicates() == {}


async def test_deny_expiry_and_the_pending_cap(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, \
            webhook_gateway(tmp_path, hook, dm_policy="pairing", allow_from=[]) as server, \
            server.client(token=None) as http, open_client(server) as ws:
        for n in range(4):
            r = await post(http, message("hi", sender=f"s{n}"))
            assert r.json()["outcome"] == "pairing"
        await until(lambda: len(codes(hook)) == 3)
        listed = await ws.ok("channels.pairing.list", {"channel": "webhook"})
        assert sorted(r["id"] for r in listed["requests"]) == ["s0", "s1", "s2"]  # s3 refused
        denied = await ws.ok("channels.pairing.deny", {"channel": "webhook",
                                                       "code": listed["requests"][0]["code"]})
        assert denied["approved"] is False
        error = await ws.error("channels.pairing.approve", {"channel": "webhook",
                                                            "code": "ZZZZZZZZ"})
        assert "no pending pairing request" in error["message"]
        # An hour later every code has expired (the channel tables' clock moved on): a new one
        # can be issued to s3.
        store = server.gateway.runtime.store.channels
        store._clock = lambda: now_ms() + 3_600_001  # type: ignore[method-assign]
        assert await store.pairing_requests("webhook") == []
        r = await post(http, message("hi again", sender="s3"))
        assert r.json()["outcome"] == "pairing"
        await until(lambda: len(codes(hook)) == 4)


async def test_pairing_requests_and_decisions_are_pushed(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, \
            webhook_gateway(tmp_path, hook, dm_policy="pairing", allow_from=[]) as server, \
            server.client(token=None) as http, open_client(server) as ws, \
            open_client(server, scopes=["operator.read"]) as reader:
        r = await post(http, message("hi", sender="pusher"))
        assert r.json()["outcome"] == "pairing"
        asked = await ws.event("channels.pairing", lambda p: p["action"] == "requested")
        assert asked["payload"] == {"action": "requested", "channel": "webhook",
                                    "accountId": "default", "id": "pusher", "name": None}
        listed = await ws.ok("channels.pairing.list", {"channel": "webhook"})
        code = listed["requests"][0]["code"]
        await ws.ok("channels.pairing.deny", {"channel": "webhook", "code": code})
        denied = await ws.event("channels.pairing", lambda p: p["action"] == "denied")
        assert denied["payload"]["id"] == "pusher"
        assert "code" not in denied["payload"]  # the list (pairing scope) has the codes
        await reader.ok("health")  # a READ-only client never gets them
        assert not any(f["event"] == "channels.pairing" for f in reader.events)
