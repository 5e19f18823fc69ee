"""The getUpdates loop against the fake: durable offsets (a restart resumes, a kill -9 loses
nothing and doubles nothing), the stall watchdog, 429 with retry_after, and 409/401 as clear
account statuses instead of a crash loop."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import telegram

from tests.channels.telegram.support import PTB_WARNINGS, status, telegram_gateway, texts
from tests.gateway.test_process import GatewayProcess
from tests.support.fakes.telegram import TelegramFake
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(PTB_WARNINGS)]


def offsets(fake: TelegramFake) -> list[str | None]:
    return [(c.body or {}).get("offset") if isinstance(c.body, dict) else None
            for c in fake.calls_of("getUpdates")]


async def test_a_restart_resumes_from_the_stored_offset(tmp_path: Path) -> None:
    async with TelegramFake() as fake:
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        first = tg.inject_text(chat, ada, "before the restart")
        async with telegram_gateway(tmp_path, fake, streaming="off") as server:
            await until(lambda: texts(tg, chat) == ["before the restart"], within=10)
            stored = await server.gateway.runtime.store.channels.get_state(
                "telegram", "default", "offset")
            assert stored == first["update_id"] + 1
        second = tg.inject_text(chat, ada, "while it was down")
        async with telegram_gateway(tmp_path, fake, streaming="off"):
            await until(lambda: len(texts(tg, chat)) == 2, within=10)
            assert texts(tg, chat) == ["before the restart", "while it was down"]
        # The second gateway asked from the offset the first one stored.
        assert str(first["update_id"] + 1) in offsets(fake)
        assert str(second["update_id"] + 1) in offsets(fake)


async def test_a_stalled_get_updates_is_restarted(tmp_path: Path) -> None:
    async with TelegramFake() as fake:
        fake.hang("getUpdates", seconds=30, times=1)
        async with telegram_gateway(tmp_path, fake, poll_stall_s=0.5) as server:
            tg = fake.bot
            ada = tg.user("Ada")
            chat = tg.private_chat(ada)
            tg.inject_text(chat, ada, "are you stuck?")
            await until(lambda: texts(tg, chat) == ["are you stuck?"], within=10)
            row = await status(server)
            assert row["pollStalls"] == 1 and row["connected"] is True
            assert fake.counts["getUpdates"] >= 2


async def test_429_on_get_updates_waits_for_retry_after(tmp_path: Path) -> None:
    async with TelegramFake() as fake:
        fake.rate_limit("getUpdates", retry_after=1, times=1)
        async with telegram_gateway(tmp_path, fake):
            tg = fake.bot
            ada = tg.user("Ada")
            chat = tg.private_chat(ada)
            tg.inject_text(chat, ada, "eventually")
            await until(lambda: texts(tg, chat) == ["eventually"], within=10)
            first, second = fake.calls_of("getUpdates")[:2]
            assert second.at - first.at >= 0.9


async def test_another_poller_is_a_409_status_with_the_fix(tmp_path: Path) -> None:
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake) as server:
        await fake.wait_for("getUpdates")
        async with telegram.Bot(fake.token, base_url=f"{fake.url}/bot") as rival:
            await rival.get_updates(timeout=0)  # terminates the gateway's poll with 409

            async def refused() -> bool:
                return "another process polls" in str((await status(server)).get("lastError"))

            await until(refused, within=10)
        row = await status(server)
        assert row["connected"] is False and "409" in row["lastError"]
        assert row["reconnectAttempts"] == 1  # waiting slowly, not looping
        assert fake.counts["getMe"] == 2  # the gateway once (no restart), the rival once


async def test_a_webhook_set_elsewhere_is_a_409_status_with_the_fix(tmp_path: Path) -> None:
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake) as server:
        await fake.wait_for("getUpdates")
        other = telegram.Bot(fake.token, base_url=f"{fake.url}/bot")
        await other.set_webhook("http://127.0.0.1:9/elsewhere")

        async def refused() -> bool:
            return 'use mode = "webhook"' in str((await status(server)).get("lastError"))

        await until(refused, within=10)
        await other.shutdown()


async def test_a_refused_token_is_a_status_with_the_fix(tmp_path: Path) -> None:
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, bot_token="42:not-a-token-of-the-fake") as server:

        async def refused() -> bool:
            return "check bot_token" in str((await status(server)).get("lastError"))

        await until(refused, within=10)
        row = await status(server, probe=True)
        assert "Unauthorized" in row["lastError"] and row["connected"] is False
        assert row["probe"]["ok"] is False and "not-a-token" not in row["probe"]["error"]
        assert "not-a-token" not in row["lastError"]
        assert fake.counts["getUpdates"] == 0


NOTICE = "⚠️ The reply could not be completed"
CONFIG = textwrap.dedent('''
    [channels.telegram]
    bot_token = "{token}"
    api_base_url = "{url}"
    poll_timeout_s = 1
    poll_stall_s = 2
    dm_policy = "open"
    allow_from = ["*"]
    streaming = "off"

    [session]
    dm_scope = "per-channel-peer"  # one session per chat: one run (and reply) per message

    [delivery]
    backoff_base_ms = 50
    backoff_max_ms = 200
''')


async def test_kill_9_mid_poll_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    """Thirty updates arrive in one batch; the gateway is killed while it is admitting them
    (its replies held by the fake, so none was sent). After a restart Telegram hands out the
    batch again from the stored offset: what was admitted is a duplicate, the rest is
    admitted, and every message is answered exactly once."""
    async with TelegramFake() as fake:
        tg = fake.bot
        people = [tg.user(f"U{n}") for n in range(30)]
        chats = [tg.private_chat(p) for p in people]
        fake.hang("sendMessage", seconds=60, times=10_000)
        config = CONFIG.format(token=fake.token, url=fake.url)
        state = tmp_path / "state"
        gateway = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(gateway.wait_ready)
            await fake.wait_for("getUpdates", within=10)
            injected = [tg.inject_text(chat, person, f"message of {person['first_name']}")
                        for person, chat in zip(people, chats, strict=True)]
            first_id = injected[0]["update_id"]
            # Kill it while it is admitting the batch (each admitted run shows typing).
            await fake.wait_until(lambda: fake.counts["sendChatAction"] >= 1, within=20)
            gateway.proc.kill()
            gateway.proc.wait(10)
        finally:
            gateway.stop()
        fake.reset()  # the held sends are gone with the process; Telegram answers again
        again = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(again.wait_ready)
            await until(lambda: len(texts(tg)) >= 30, within=30)
            shim = SimpleNamespace(port=again.port)
            async with open_client(shim, token=again.token) as ws:  # type: ignore[arg-type]

                async def settled() -> bool:
                    result = await ws.ok("channels.status")
                    return result["channelAccounts"]["telegram"][0]["pendingDeliveries"] == 0

                await until(settled, within=20)
        finally:
            again.stop()
        # Each message was admitted once and answered once: by its echo, or — when the kill
        # cut its run short — by the gateway's notice that the reply could not be completed.
        for person, chat in zip(people, chats, strict=True):
            (answer,) = texts(tg, chat)
            assert answer.startswith(NOTICE) or answer == f"message of {person['first_name']}"
        # The restarted gateway asked from the stored offset: none when the kill came before
        # the batch was done (Telegram handed out all of it again; what had been admitted was
        # answered duplicate), else past the batch.
        resumed = offsets(fake)[0]
        assert resumed is None or int(resumed) == first_id + 30
