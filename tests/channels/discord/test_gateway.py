"""The Discord Gateway connection under trouble: a dropped TCP connection, RECONNECT (op 7),
INVALID_SESSION (op 9), close codes that hikari resumes after and ones it gives up on. No
message is lost or answered twice, the status counts the reconnects, and a connection hikari
will not restore makes the monitor fail (so the core restarts it) instead of stalling."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.discord.support import bot_texts, discord_gateway, status
from tests.support.fakes.discord_api import DiscordFake, Intent
from tests.support.poll import until

pytestmark = pytest.mark.anyio


async def answered(fake: DiscordFake, dm: dict, texts: list[str], within: float = 15) -> None:
    await until(lambda: bot_texts(fake, dm) == texts, within=within)


async def test_a_dropped_connection_resumes_without_loss_or_double(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        first = fake.inject_message(dm, ada, "before the drop")
        await answered(fake, dm, ["before the drop"])
        assert fake.gateway.drop() == 1
        fake.inject_message(dm, ada, "while away")  # kept for the session, replayed on RESUME
        # Discord may replay what the bot had already read: same snowflake, admitted once.
        fake.gateway.dispatch("MESSAGE_CREATE", dict(first), intent=Intent.DIRECT_MESSAGES)
        await fake.wait_for("gateway:RESUME", within=15)
        await answered(fake, dm, ["before the drop", "while away"])
        fake.inject_message(dm, ada, "after")
        await answered(fake, dm, ["before the drop", "while away", "after"])
        assert fake.counts["gateway:IDENTIFY"] == 1
        row = await status(server)
        assert row["connected"] is True and row["reconnectAttempts"] == 1
        assert row["lastResumedAt"] and row["lastDisconnectAt"]


@pytest.mark.parametrize("trouble", ["reconnect", "close-4000", "invalid-resumable"])
async def test_the_session_is_resumed_after(tmp_path: Path, trouble: str) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.inject_message(dm, ada, "one")
        await answered(fake, dm, ["one"])
        if trouble == "reconnect":
            fake.gateway.reconnect()
        elif trouble == "close-4000":
            fake.gateway.close(4000, "Unknown error.")
        else:
            fake.gateway.invalidate(resumable=True)
        fake.inject_message(dm, ada, "two")
        await fake.wait_for("gateway:RESUME", within=15)
        await answered(fake, dm, ["one", "two"])
        assert fake.counts["gateway:IDENTIFY"] == 1
        assert (await status(server))["reconnectAttempts"] == 1


async def test_an_invalidated_session_identifies_again(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.gateway.invalidate(resumable=False)
        await until(lambda: fake.counts["gateway:IDENTIFY"] == 2, within=15)
        await until(lambda: status(server), within=5)
        fake.inject_message(dm, ada, "new session")
        await answered(fake, dm, ["new session"])
        row = await status(server)
        assert row["connected"] is True and row["reconnectAttempts"] == 1


async def test_a_close_code_hikari_gives_up_on_restarts_the_monitor(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.gateway.close(4012, "Invalid API version.")  # not resumable: hikari stops

        async def failed() -> bool:
            return "4012" in str((await status(server)).get("lastError"))

        await until(failed, within=10)
        # The core restarts the monitor (1 s backoff): a fresh IDENTIFY, messages flow again.
        await until(lambda: fake.counts["gateway:IDENTIFY"] == 2, within=15)
        fake.inject_message(dm, ada, "still here")
        await answered(fake, dm, ["still here"])
        row = await status(server)
        assert row["connected"] is True and row["reconnectAttempts"] == 1


async def test_a_token_refused_by_the_gateway_shows_the_fix(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake) as server:
        fake.gateway.close(4004, "Authentication failed.")

        async def refused() -> dict | None:
            row = await status(server)
            return row if "4004" in str(row.get("lastError")) else None

        await until(refused, within=10)
        row = await status(server)
        assert "Reset Token" in row["lastError"] and row["connected"] is False
        assert fake.counts["gateway:IDENTIFY"] == 1  # no hammering: the core waits minutes


async def test_a_refused_token_at_start_is_an_auth_error(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(
            tmp_path, fake, connected=False,
            bot_token="MTAwMDAwMDAwMDAwMDAwMDAx.not.the-right-token") as server:

        async def refused() -> bool:
            return "401" in str((await status(server)).get("lastError"))

        await until(refused, within=10)
        row = await status(server)
        assert "Reset Token" in row["lastError"] and row["connected"] is False
        assert fake.counts["GET /gateway/bot"] == 1 and fake.counts["gateway:connect"] == 0
        probe = (await status(server, probe=True))["probe"]
        assert probe["ok"] is False and "401" in probe["error"]


async def test_disallowed_message_content_intent_says_what_to_do(tmp_path: Path) -> None:
    async with DiscordFake(privileged_intents=0) as fake, \
            discord_gateway(tmp_path, fake, connected=False) as server:

        async def refused() -> bool:
            return "4014" in str((await status(server)).get("lastError"))

        await until(refused, within=10)
        error = (await status(server))["lastError"]
        assert "Privileged Gateway Intents" in error and "message_content = false" in error


async def test_heartbeats_follow_the_interval_discord_gives(tmp_path: Path) -> None:
    async with DiscordFake(heartbeat_interval_ms=100) as fake, discord_gateway(tmp_path, fake):
        await until(lambda: fake.counts["gateway:HEARTBEAT"] >= 3, within=10)
        ada = fake.user("ada")
        fake.inject_message(fake.dm(ada), ada, "alive")
        await answered(fake, fake.dm(ada), ["alive"])
        assert fake.counts["gateway:IDENTIFY"] == 1 and fake.counts["gateway:RESUME"] == 0
