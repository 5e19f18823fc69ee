"""Discord replies are durable: a 429 is waited out (by hikari when short, by the delivery
queue when long), 5xx answers are retried, a refusal fails the delivery visibly, and a reply
whose POST was cut off by a kill -9 is sent after the restart under the same nonce."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from tests.channels.discord.support import POST, body, bot_texts, discord_gateway, posts, status
from tests.gateway.test_process import GatewayProcess
from tests.support.fakes.discord_api import DiscordFake
from tests.support.gateway_server import GatewayServer
from tests.support.poll import until

pytestmark = pytest.mark.anyio


async def settled(server: GatewayServer) -> bool:
    row = await status(server)
    return row["pendingDeliveries"] == 0 and row["failedDeliveries"] == 0


# hikari models a bucket as a sliding window (it waits retry_after / limit per request), so
# these fakes announce one request per second per channel, as a tight Discord bucket would.


async def test_a_short_rate_limit_is_waited_out_by_hikari(tmp_path: Path) -> None:
    async with DiscordFake(route_limit=1, route_window=1.0) as fake, \
            discord_gateway(tmp_path, fake, streaming="off"):
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.rate_limit(POST, retry_after=0.5)
        fake.inject_message(dm, ada, "patience")
        await until(lambda: bot_texts(fake, dm) == ["patience"], within=10)
        first, second = posts(fake, dm)
        assert second.at - first.at >= 0.45  # hikari waited as Discord said
        assert body(first)["nonce"] == body(second)["nonce"]


async def test_a_long_rate_limit_goes_back_to_the_delivery_queue(tmp_path: Path) -> None:
    async with DiscordFake(route_limit=1, route_window=1.0) as fake, \
            discord_gateway(tmp_path, fake, streaming="off", rate_limit_wait_s=0.2) as server:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.rate_limit(POST, retry_after=1.5)
        fake.inject_message(dm, ada, "later")
        metrics = server.gateway.runtime.metrics
        # hikari gave the 429 back (longer than rate_limit_wait_s): the queue retries later.
        await until(lambda: metrics.get("channel_outbound_retries_total",
                                        channel="discord") == 1, within=10)
        assert bot_texts(fake, dm) == []
        await until(lambda: bot_texts(fake, dm) == ["later"], within=10)
        first, second = posts(fake, dm)
        assert second.at - first.at >= 1.4  # not before Discord's retry_after
        await until(lambda: settled(server), within=5)


async def test_server_errors_are_retried_until_delivered(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake, streaming="off") as server:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.fail_status(POST, 502, times=3)
        fake.inject_message(dm, ada, "eventually")
        await until(lambda: bot_texts(fake, dm) == ["eventually"], within=15)
        assert len(posts(fake, dm)) == 4
        assert len({body(c)["nonce"] for c in posts(fake, dm)}) == 1
        await until(lambda: settled(server), within=5)


async def test_a_refusal_fails_the_delivery_visibly(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake, streaming="off") as server:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.error(POST, 50013, "Missing Permissions", status=403)
        fake.inject_message(dm, ada, "not allowed")

        async def failed() -> bool:
            return (await status(server))["failedDeliveries"] == 1

        await until(failed, within=10)
        row = await status(server)
        assert "403" in row["lastDeliveryError"] and "Missing Permissions" in \
            row["lastDeliveryError"]
        assert len(posts(fake, dm)) == 1  # a 4xx is not retried


CONFIG = textwrap.dedent('''
    [channels.discord]
    bot_token = "{token}"
    api_base_url = "{api}"
    dm_policy = "open"
    allow_from = ["*"]
    streaming = "off"

    [delivery]
    backoff_base_ms = 50
    backoff_max_ms = 200
''')


async def test_kill_9_while_the_reply_is_being_posted(tmp_path: Path) -> None:
    """The run's intent is committed; the gateway dies while Discord holds the POST. After a
    restart the reply is sent again, with the same nonce (so Discord would drop a repeat of
    a message it had created), and the user gets it once."""
    async with DiscordFake() as fake:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.hang(POST, seconds=30, times=1)
        config = CONFIG.format(token=fake.token, api=fake.rest_url)
        state = tmp_path / "state"
        gateway = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(gateway.wait_ready)
            await fake.wait_for("gateway:IDENTIFY", within=15)
            await until(lambda: fake.gateway.sessions, within=10)
            fake.inject_message(dm, ada, "survive")
            await fake.wait_for(POST, within=15)  # the first attempt is in flight
            gateway.proc.kill()
            gateway.proc.wait(10)
        finally:
            gateway.stop()
        again = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(again.wait_ready)
            await until(lambda: bot_texts(fake, dm) == ["survive"], within=20)
            nonces = [body(c)["nonce"] for c in posts(fake, dm)]
            assert len(nonces) == 2 and len(set(nonces)) == 1
        finally:
            again.stop()
