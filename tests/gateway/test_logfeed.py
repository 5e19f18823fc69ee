"""Pushed log lines over a real WebSocket: ``logs.subscribe`` answers the first tail, then
``logs.appended`` events continue it exactly as ``logs.tail`` would; unsubscribing or leaving
stops them; followers are bounded and a burst is coalesced and capped per push."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import orjson
import pytest

from clawgate.gateway import logfeed
from tests.support.gateway_server import GatewayServer, serve_gateway
from tests.support.poll import until
from tests.support.ws_client import WsClient, open_client

pytestmark = pytest.mark.anyio
log = logging.getLogger("clawgate.test.logfeed")


@pytest.fixture
async def server(tmp_path: Path):
    async with serve_gateway(tmp_path / "state", {}) as running:
        yield running


def messages(payload: dict[str, object]) -> list[str]:
    return [orjson.loads(line)["message"] for line in payload["lines"]]  # type: ignore[attr-defined]


async def test_subscribe_then_pushed_lines_continue_the_tail(server: GatewayServer) -> None:
    async with open_client(server) as client:
        log.warning("before %s", 1)
        first = await client.ok("logs.subscribe", {"limit": 50})
        assert first["subscribed"] is True and first["file"] == "memory:clawgate"
        assert "before 1" in messages(first)
        log.warning("pushed %s", 1)
        log.warning("pushed %s", 2)
        event = await client.event("logs.appended", lambda p: "pushed 2" in messages(p))
        pushed = event["payload"]
        assert messages(pushed)[-2:] == ["pushed 1", "pushed 2"]
        # The same answer logs.tail gives from the subscription's cursor.
        tail = await client.ok("logs.tail", {"cursor": first["cursor"]})
        assert tail["lines"][:len(pushed["lines"])] == pushed["lines"]
        assert pushed["cursor"] > first["cursor"]
        assert await client.ok("logs.unsubscribe") == {"subscribed": False}
        assert server.gateway.log_feed.followers == {}


async def test_a_burst_is_coalesced_and_capped_per_push(server: GatewayServer) -> None:
    async with open_client(server) as client:
        await client.ok("logs.subscribe", {"limit": 1})
        start = len(client.events)
        for n in range(logfeed.PUSH_LINES + 20):
            log.warning("burst %s", n)
        last = f"burst {logfeed.PUSH_LINES + 19}"
        await client.event("logs.appended", lambda p: last in messages(p), start=start)
        pushes = [f["payload"] for f in client.events[start:] if f["event"] == "logs.appended"]
        assert all(len(p["lines"]) <= logfeed.PUSH_LINES for p in pushes)
        got = [m for p in pushes for m in messages(p) if m.startswith("burst ")]
        assert got == [f"burst {n}" for n in range(logfeed.PUSH_LINES + 20)]
        assert len(pushes) <= 4  # one per interval, not one per line
        assert pushes[0].get("truncated") is True


async def test_followers_are_bounded_and_leave_with_their_connection(
        server: GatewayServer) -> None:
    feed = server.gateway.log_feed
    async with contextlib.AsyncExitStack() as stack:
        clients: list[WsClient] = []
        for _ in range(logfeed.MAX_FOLLOWERS):
            client = await stack.enter_async_context(open_client(server))
            await client.ok("logs.subscribe", {"limit": 1})
            clients.append(client)
        async with open_client(server) as extra:
            error = await extra.error("logs.subscribe")
            assert error["code"] == "INVALID_REQUEST" and "poll logs.tail" in error["message"]
            assert server.gateway.metrics.get("logs_subscriptions_refused_total") == 1
        await clients[0].close()
        await until(lambda: len(server.gateway.hub.joined) == logfeed.MAX_FOLLOWERS - 1)
        async with open_client(server) as late:  # the one who left freed its slot
            assert (await late.ok("logs.subscribe", {"limit": 1}))["subscribed"] is True
        assert len(feed.followers) <= logfeed.MAX_FOLLOWERS
