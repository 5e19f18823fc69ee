"""The Telegram fake, driven by python-telegram-bot's real ``telegram.Bot``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import telegram
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, InvalidToken, RetryAfter

from tests.support.fakes.telegram import CONFLICT_POLL, CONFLICT_WEBHOOK, TelegramFake
from tests.support.fakes.webhook import WebhookReceiver

# PTB 22 warns (about its own coming timedelta types) when reading retry_after or duration.
pytestmark = [pytest.mark.anyio,
              pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")]

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x03\x00\x00\x00\x02"
       b"\x08\x02\x00\x00\x00rest-of-image")


@pytest.fixture
async def fake() -> AsyncIterator[TelegramFake]:
    async with TelegramFake() as server:
        yield server


def client(fake: TelegramFake, token: str | None = None) -> telegram.Bot:
    return telegram.Bot(token or fake.token, base_url=f"{fake.url}/bot",
                        base_file_url=f"{fake.url}/file/bot")


async def test_get_me_and_bad_tokens(fake: TelegramFake) -> None:
    async with client(fake) as bot:
        me = await bot.get_me()
        assert (me.id, me.username, me.is_bot) == (fake.bot.id, "clawgate_bot", True)
        assert me.can_join_groups is True
    with pytest.raises(InvalidToken, match="Unauthorized"):
        await client(fake, "42:not-a-known-token").get_me()
    with pytest.raises(InvalidToken, match="Not Found"):
        await client(fake, "malformed").get_me()
    assert fake.counts["getMe"] == 4  # initialize() asks too


async def test_long_poll_redelivers_until_offset_confirms(fake: TelegramFake) -> None:
    tg = fake.bot
    ada = tg.user("Ada", username="ada")
    chat = tg.private_chat(ada)
    async with client(fake) as bot:
        first = tg.inject_text(chat, ada, "one")
        assert [u.message.text for u in await bot.get_updates()] == ["one"]
        # Not confirmed yet: the same update comes again.
        again = await bot.get_updates(timeout=0)
        assert [u.update_id for u in again] == [first["update_id"]]
        # A long poll that is waiting gets the update injected while it waits.
        poll = asyncio.create_task(bot.get_updates(offset=first["update_id"] + 1, timeout=10))
        await fake.wait_for(lambda c: (c.body or {}).get("timeout") == "10")
        await fake.wait_until(lambda: not tg.updates)  # the offset confirmed "one"
        second = tg.inject_text(chat, ada, "two")
        got = await asyncio.wait_for(poll, 5)
        assert [u.update_id for u in got] == [second["update_id"]]
        assert got[0].message.from_user.username == "ada"
        await bot.get_updates(offset=second["update_id"] + 1, timeout=0)
        assert list(tg.updates) == []
        assert await bot.get_updates(timeout=0) == ()


async def test_a_second_poller_terminates_the_first_with_409(fake: TelegramFake) -> None:
    tg = fake.bot
    async with client(fake) as one, client(fake) as two:
        first = asyncio.create_task(one.get_updates(timeout=10))
        await fake.wait_for("getUpdates")
        second = asyncio.create_task(two.get_updates(timeout=10))
        with pytest.raises(Conflict) as raised:
            await asyncio.wait_for(first, 5)
        assert str(raised.value) == CONFLICT_POLL
        ada = tg.user("Ada")
        tg.inject_text(tg.private_chat(ada), ada, "still here")
        assert [u.message.text for u in await asyncio.wait_for(second, 5)] == ["still here"]


async def test_webhook_mode_delivers_with_secret_and_retries(fake: TelegramFake) -> None:
    tg = fake.bot
    async with WebhookReceiver() as hook, client(fake) as bot:
        hook.fail_status("POST /tg", 500, times=1)
        assert await bot.set_webhook(f"{hook.url}/tg", secret_token="s3cr3t") is True
        with pytest.raises(Conflict) as raised:
            await bot.get_updates(timeout=0)
        assert str(raised.value) == CONFLICT_WEBHOOK
        ada = tg.user("Ada")
        update = tg.inject_text(tg.private_chat(ada), ada, "via webhook")
        await hook.wait_until(lambda: len(hook.bodies("/tg")) == 1)
        attempts = hook.calls_of("POST /tg")
        assert [hook.answered(c) for c in attempts] == [500, 200]
        assert all(c.headers["x-telegram-bot-api-secret-token"] == "s3cr3t" for c in attempts)
        assert attempts[1].body["update_id"] == update["update_id"]
        info = await bot.get_webhook_info()
        assert info.url == f"{hook.url}/tg"
        assert info.pending_update_count == 0
        assert "500" in (info.last_error_message or "")
        assert await bot.delete_webhook() is True
        assert await bot.get_updates(timeout=0) == ()


async def test_send_edit_delete_and_reply(fake: TelegramFake) -> None:
    tg = fake.bot
    ada = tg.user("Ada")
    chat = tg.private_chat(ada)
    asked = tg.inject_text(chat, ada, "question")["message"]
    async with client(fake) as bot:
        sent = await bot.send_message(chat["id"], "<b>answer</b>", parse_mode=ParseMode.HTML,
                                      reply_parameters=telegram.ReplyParameters(
                                          asked["message_id"]))
        assert sent.text == "answer"
        assert sent.message_id == asked["message_id"] + 1
        assert [e.type for e in sent.entities] == ["bold"]
        assert sent.reply_to_message.text == "question"
        edited = await bot.edit_message_text("answer, edited", chat["id"], sent.message_id)
        assert edited.text == "answer, edited" and edited.edit_date is not None
        with pytest.raises(BadRequest, match="(?i)message is not modified"):
            await bot.edit_message_text("answer, edited", chat["id"], sent.message_id)
        with pytest.raises(BadRequest, match="(?i)message to edit not found"):
            await bot.edit_message_text("x", chat["id"], 9999)
        with pytest.raises(BadRequest, match="(?i)message can't be edited"):
            await bot.edit_message_text("x", chat["id"], asked["message_id"])
        assert await bot.send_chat_action(chat["id"], "typing") is True
        assert await bot.delete_message(chat["id"], sent.message_id) is True
        with pytest.raises(BadRequest, match="(?i)message to delete not found"):
            await bot.delete_message(chat["id"], sent.message_id)
        with pytest.raises(BadRequest, match="(?i)chat not found"):
            await bot.send_message(777, "nobody")
    call = await fake.wait_for("sendMessage")
    assert call.body["parse_mode"] == "HTML"


async def test_formatting_and_length_are_checked(fake: TelegramFake) -> None:
    tg = fake.bot
    ada = tg.user("Ada")
    chat = tg.private_chat(ada)
    async with client(fake) as bot:
        for bad in ("<b>unclosed", "<blink>x</blink>", "<b>x</i>"):
            with pytest.raises(BadRequest, match="(?i)can't parse entities"):
                await bot.send_message(chat["id"], bad, parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="(?i)reserved and must be escaped"):
            await bot.send_message(chat["id"], "1.5", parse_mode=ParseMode.MARKDOWN_V2)
        ok = await bot.send_message(chat["id"], "*1\\.5* ok", parse_mode=ParseMode.MARKDOWN_V2)
        assert ok.text == "1.5 ok" and ok.entities[0].type == "bold"
        await bot.send_message(chat["id"], "x" * 4096)
        with pytest.raises(BadRequest, match="(?i)message is too long"):
            await bot.send_message(chat["id"], "x" * 4097)
    assert len(tg.sent(chat)) == 2


async def test_rate_limit_surfaces_as_retry_after(fake: TelegramFake) -> None:
    tg = fake.bot
    ada = tg.user("Ada")
    chat = tg.private_chat(ada)
    fake.rate_limit("sendMessage", retry_after=3)
    async with client(fake) as bot:
        with pytest.raises(RetryAfter) as raised:
            await bot.send_message(chat["id"], "too fast")
        assert "Retry in 3 seconds" in str(raised.value)  # parameters.retry_after
        assert (await bot.send_message(chat["id"], "later")).text == "later"
    assert tg.sent(chat)[-1]["text"] == "later"
    assert fake.pending_faults == 0


async def test_files_download_and_upload(fake: TelegramFake) -> None:
    tg = fake.bot
    ada = tg.user("Ada")
    chat = tg.private_chat(ada)
    update = tg.inject_photo(chat, ada, PNG, caption="look")
    async with client(fake) as bot:
        (got,) = await bot.get_updates()
        photo = got.message.photo[-1]
        assert (photo.width, photo.height, got.message.caption) == (3, 2, "look")
        file = await bot.get_file(photo.file_id)
        assert bytes(await file.download_as_bytearray()) == PNG
        doc = await bot.send_document(chat["id"], b"report body", filename="report.txt",
                                      caption="<i>here</i>", parse_mode=ParseMode.HTML)
        assert doc.document.file_name == "report.txt"
        assert doc.caption == "here"
        again = await bot.get_file(doc.document.file_id)
        assert bytes(await again.download_as_bytearray()) == b"report body"
        with pytest.raises(BadRequest, match="(?i)invalid file_id"):
            await bot.get_file("nope")
    assert update["message"]["photo"][0]["file_size"] == len(PNG)


async def test_groups_topics_commands(fake: TelegramFake) -> None:
    tg = fake.bot
    ada = tg.user("Ada")
    forum = tg.group("Forum", forum=True)
    topic = tg.create_topic(forum, "Support")
    mention = tg.inject_mention(forum, ada, "help", thread_id=topic)["message"]
    command = tg.inject_command(forum, ada, "start", "deep-link")["message"]
    async with client(fake) as bot:
        got = await bot.get_updates()
        first = got[0].message
        assert first.is_topic_message and first.message_thread_id == topic
        assert first.entities[0].type == "mention"
        assert first.parse_entity(first.entities[0]) == "@clawgate_bot"
        assert first.reply_to_message.forum_topic_created.name == "Support"
        assert got[1].message.text == "/start@clawgate_bot deep-link"
        reply = await bot.send_message(forum["id"], "on it", message_thread_id=topic,
                                       reply_to_message_id=mention["message_id"])
        assert reply.message_thread_id == topic and reply.reply_to_message.text.endswith("help")
        with pytest.raises(BadRequest, match="(?i)message thread not found"):
            await bot.send_message(forum["id"], "lost", message_thread_id=424242)
        commands = [telegram.BotCommand("start", "Start"), telegram.BotCommand("new", "Reset")]
        assert await bot.set_my_commands(commands) is True
        assert [c.command for c in await bot.get_my_commands()] == ["start", "new"]
        with pytest.raises(BadRequest, match="(?i)BOT_COMMAND_INVALID"):
            await bot.set_my_commands([telegram.BotCommand("Bad-Name", "x")])
    assert command["entities"][0]["type"] == "bot_command"


async def test_scripted_conflict_unauthorized_and_stall(fake: TelegramFake) -> None:
    fake.error("getUpdates", 409, CONFLICT_POLL, status=409)
    fake.error("getMe", 401, "Unauthorized", status=401)
    fake.hang("getUpdates", seconds=10)
    bot = client(fake)
    with pytest.raises(Conflict):
        await bot.get_updates(timeout=0)
    with pytest.raises(InvalidToken):
        await bot.get_me()
    with pytest.raises(telegram.error.TimedOut):
        await bot.get_updates(timeout=0, read_timeout=0.3)


async def test_voice_sticker_document_updates_and_send_photo(fake: TelegramFake) -> None:
    tg = fake.bot
    ada = tg.user("Ada")
    chat = tg.private_chat(ada)
    tg.inject_voice(chat, ada, b"OggS-voice", duration=3)
    tg.inject_sticker(chat, ada, b"RIFF-webp", emoji="🎉")
    tg.inject_document(chat, ada, b"%PDF-1.7", file_name="a.pdf", mime_type="application/pdf")
    async with client(fake) as bot:
        voice, sticker, document = (u.message for u in await bot.get_updates())
        assert voice.voice.duration == 3 and voice.voice.mime_type == "audio/ogg"
        assert sticker.sticker.emoji == "🎉" and not sticker.sticker.is_animated
        assert document.document.file_name == "a.pdf"
        data = await (await bot.get_file(voice.voice.file_id)).download_as_bytearray()
        assert bytes(data) == b"OggS-voice"
        photo = await bot.send_photo(chat["id"], PNG, caption="chart")
        assert (photo.photo[0].width, photo.photo[0].height) == (3, 2)
        again = await bot.send_photo(chat["id"], photo.photo[0].file_id)  # by file_id
        assert again.photo[0].file_id == photo.photo[0].file_id
    upload = next(c for c in fake.calls_of("sendPhoto"))
    assert upload.headers["content-type"].startswith("multipart/form-data")


async def test_allowed_updates_negative_offset_and_migration(fake: TelegramFake) -> None:
    tg = fake.bot
    ada = tg.user("Ada")
    chat = tg.private_chat(ada)
    async with client(fake) as bot:
        assert await bot.get_updates(timeout=0, allowed_updates=["edited_message"]) == ()
        assert tg.inject_text(chat, ada, "filtered").get("update_id") is None
        sent = tg.inject_text(chat, ada, "to edit")["message"]
        edit = tg.inject_edit(sent, "edited")
        (got,) = await bot.get_updates(timeout=0)
        assert got.update_id == edit["update_id"] and got.edited_message.text == "edited"
        await bot.get_updates(timeout=0, allowed_updates=[])  # back to the default set
        for n in range(3):
            tg.inject_text(chat, ada, f"m{n}")
        last = await bot.get_updates(offset=-1, timeout=0)
        assert [u.message.text for u in last] == ["m2"]
        group = tg.group("Old", supergroup=False)
        new = tg.migrate(group)
        with pytest.raises(telegram.error.ChatMigrated) as moved:
            await bot.send_message(group["id"], "hello?")
        assert moved.value.new_chat_id == new["id"]
