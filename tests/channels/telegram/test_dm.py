"""Private chats end to end: a Telegram update -> the gateway's getUpdates loop -> the agent ->
the reply the fake Bot API received (typing, a preview edited in place, HTML)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from clawgate.bundled.telegram.channel import TYPING_GRACE_S
from tests.channels.telegram.support import (
    PTB_WARNINGS,
    calls,
    mock_model,
    settled,
    status,
    telegram_gateway,
    texts,
)
from tests.support.fakes.telegram import TelegramFake
from tests.support.mock_openai import MockOpenAI, Reply
from tests.support.poll import until

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(PTB_WARNINGS)]


async def test_dm_round_trip(tmp_path: Path) -> None:
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake) as server:
        tg = fake.bot
        ada = tg.user("Ada", username="ada")
        chat = tg.private_chat(ada)
        # A first message warms the path up (a fresh checkout imports and compiles the Telegram
        # client on first use, slower than the typing grace on a busy machine).
        tg.inject_text(chat, ada, "warm up")
        await until(lambda: texts(tg, chat) == ["warm up"], within=10)
        asked = time.monotonic()
        tg.inject_text(chat, ada, "hello **world**")
        await until(lambda: texts(tg, chat) == ["warm up", "hello world"], within=10)
        sent = calls(fake, "sendMessage")[-1]
        assert sent["parse_mode"] == "HTML" and sent["text"] == "hello <b>world</b>"
        assert [e["type"] for e in tg.sent(chat)[1]["entities"]] == ["bold"]
        # Typing waits out a grace period and is skipped when the reply came within it (it
        # would vanish with the reply): no indicator before the grace ended, none after the
        # reply. (Whether the echo beats the grace depends on the machine's load.)
        reply_at = fake.calls_of("sendMessage")[-1].at
        for typing in [c for c in fake.calls_of("sendChatAction") if c.at >= asked]:
            assert typing.at - asked >= TYPING_GRACE_S and typing.at < reply_at
        row = await status(server)
        assert row["connected"] is True and row["mode"] == "polling"
        assert row["bot"] == {"id": tg.id, "username": "clawgate_bot"}
        assert row["lastUpdateAt"] > 0 and row["pollLag"] >= 0
        assert fake.counts["deleteWebhook"] == 1
        session = await server.gateway.runtime.store.transcript("agent:main:main")
        assert [m.content for m in session][-2:] == ["hello **world**", "hello **world**"]


async def test_a_slow_turn_shows_typing(tmp_path: Path) -> None:
    slow = {"plugins": {"entries": {"echo": {"config": {"delay_ms": 700}}}}}
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake, slow, streaming="off"):
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, "take your time")
        await until(lambda: texts(tg, chat) == ["take your time"], within=10)
        (typing,) = fake.calls_of("sendChatAction")
        assert typing.body["action"] == "typing" and typing.body["chat_id"] == str(chat["id"])
        assert typing.at < fake.calls_of("sendMessage")[0].at


async def test_a_streamed_reply_is_previewed_then_edited_in_place(
        tmp_path: Path, mock_openai: MockOpenAI) -> None:
    answer = "The first words arrive, then more words, then the **end** of it."
    mock_openai.plan(Reply(answer, chunks=5, interval=0.35))
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, mock_model(mock_openai)) as server:
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, "tell me")
        final = answer.replace("**end**", "end")
        await until(lambda: texts(tg, chat) == [final], within=15)
        previews = calls(fake, "sendMessage")
        edits = calls(fake, "editMessageText")
        # One message: sent with the first words, edited as more came (at most once a second)
        # and at last into the whole answer.
        assert len(previews) == 1, previews
        assert len(edits) >= 1, edits
        assert answer.startswith(previews[0]["text"]) and previews[0]["text"] != answer
        assert edits[-1]["text"] == answer.replace("**end**", "<b>end</b>")
        assert {e["message_id"] for e in edits} == {str(tg.sent(chat)[0]["message_id"])}
        assert fake.counts["sendChatAction"] >= 1
        assert (await settled(server))["failedDeliveries"] == 0


async def test_a_preview_the_user_deleted_is_replaced_by_a_new_message(
        tmp_path: Path, mock_openai: MockOpenAI) -> None:
    answer = "Words stream in slowly, the user deletes the preview, and the reply still arrives."
    mock_openai.plan(Reply(answer, chunks=6, interval=0.35))
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, mock_model(mock_openai)) as server:
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, "tell me")
        await until(lambda: len(tg.sent(chat)) == 1, within=15)
        preview_id = tg.sent(chat)[0]["message_id"]
        del tg.chats[chat["id"]].messages[preview_id]  # as the user deleting it would
        deleted_at = time.monotonic()
        await until(lambda: texts(tg, chat) == [answer], within=15)
        # The reply is a new message: the edit of the deleted preview was refused for good.
        assert tg.sent(chat)[0]["message_id"] != preview_id
        tried = [c for c in fake.calls_of("editMessageText")
                 if c.body["message_id"] == str(preview_id) and c.at >= deleted_at]
        assert tried, "the deleted preview was never edited: the test did not test the fallback"
        assert (await settled(server))["failedDeliveries"] == 0


async def test_streaming_off_sends_one_message(tmp_path: Path) -> None:
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake, streaming="off"):
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, "just once")
        await until(lambda: texts(tg, chat) == ["just once"], within=10)
        assert fake.counts["editMessageText"] == 0


async def test_rejected_entities_are_sent_again_as_plain_text(tmp_path: Path) -> None:
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake, streaming="off"):
        fake.error("sendMessage", 400, "Bad Request: can't parse entities: Unsupported start "
                   "tag \"x\" at byte offset 0", times=1)
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, "a *fancy* <reply> & more")
        await until(lambda: texts(tg, chat) == ["a *fancy* <reply> & more"], within=10)
        first, second = calls(fake, "sendMessage")
        assert first["parse_mode"] == "HTML"
        assert first["text"] == "a <i>fancy</i> &lt;reply&gt; &amp; more"
        assert "parse_mode" not in second and second["text"] == "a *fancy* <reply> & more"


async def test_429_on_send_waits_for_retry_after(tmp_path: Path) -> None:
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake, streaming="off"):
        fake.rate_limit("sendMessage", retry_after=1, times=1)
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, "not so fast")
        await until(lambda: texts(tg, chat) == ["not so fast"], within=10)
        first, second = fake.calls_of("sendMessage")
        assert second.at - first.at >= 0.9  # not before Telegram's retry_after
        assert len(tg.sent(chat)) == 1
