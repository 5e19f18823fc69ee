"""Private chats end to end: a Telegram update -> the gateway's getUpdates loop -> the agent ->
the reply the fake Bot API received (typing, a preview edited in place, HTML)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.telegram.support import PTB_WARNINGS, calls, mock_model, status, \
    telegram_gateway, texts
from tests.support.fakes.telegram import TelegramFake
from tests.support.mock_openai import MockOpenAI, Reply
from tests.support.poll import until

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(PTB_WARNINGS)]


async def test_dm_round_trip(tmp_path: Path) -> None:
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake) as server:
        tg = fake.bot
        ada = tg.user("Ada", username="ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, "hello **world**")
        await until(lambda: texts(tg, chat) == ["hello world"], within=10)
        sent = calls(fake, "sendMessage")[-1]
        assert sent["parse_mode"] == "HTML" and sent["text"] == "hello <b>world</b>"
        assert [e["type"] for e in tg.sent(chat)[0]["entities"]] == ["bold"]
        assert calls(fake, "sendChatAction")[0]["action"] == "typing"
        row = await status(server)
        assert row["connected"] is True and row["mode"] == "polling"
        assert row["bot"] == {"id": tg.id, "username": "clawgate_bot"}
        assert row["lastUpdateAt"] > 0 and row["pollLag"] >= 0
        assert fake.counts["deleteWebhook"] == 1
        session = await server.gateway.runtime.store.transcript("agent:main:main")
        assert [m.content for m in session] == ["hello **world**", "hello **world**"]
