"""Telegram updates as the core's InboundMessage: dedupe keys, chat types, mention rules,
topics, senders, attachments — from updates built like Telegram builds them."""

from __future__ import annotations

from typing import Any

import pytest
import telegram

from clawgate.bundled.telegram.normalize import Identity, normalize, platform_id
from tests.support.fakes.telegram_state import TgBot

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"


def bot() -> TgBot:
    return TgBot(lambda: None, TOKEN, username="Clawgate_Bot", first_name="Clawgate",
                 can_join_groups=True, can_read_all_group_messages=False,
                 has_topics_enabled=False, max_updates=100, max_messages=100)


def read(tg: TgBot, update: dict[str, Any]):  # type: ignore[no-untyped-def]
    return normalize(telegram.Update.de_json(update, None), Identity(tg.id, tg.username))


def test_a_private_message() -> None:
    tg = bot()
    ada = tg.user("Ada", username="ada")
    update = tg.inject_text(tg.private_chat(ada), ada, "hi")
    message = read(tg, update)
    assert message is not None
    chat_id, message_id = ada["id"], update["message"]["message_id"]
    assert message.message_id == f"{chat_id}:{message_id}"
    assert platform_id(message.message_id) == message_id and platform_id("7") == 7
    assert (message.sender, message.conversation, message.chat_type) == (
        str(ada["id"]), str(chat_id), "direct")
    assert message.sender_name == "Ada" and message.text == "hi"
    assert message.topic is None and not message.mentioned and not message.from_self


@pytest.mark.parametrize("how", ["mention", "upper", "text_mention", "reply", "command"])
def test_what_counts_as_a_mention(how: str) -> None:
    tg = bot()
    group = tg.group("Team")
    bob = tg.user("Bob")
    if how == "mention":
        update = tg.inject_mention(group, bob, "hello")  # @Clawgate_Bot as typed
    elif how == "upper":
        update = tg.inject_message(group, bob, text="@CLAWGATE_BOT hi",
                                   entities=[{"type": "mention", "offset": 0, "length": 13}])
    elif how == "text_mention":
        update = tg.inject_message(group, bob, text="Clawgate, hi", entities=[
            {"type": "text_mention", "offset": 0, "length": 8, "user": tg.user_object}])
    elif how == "reply":
        mine = tg._store(tg.chats[group["id"]], {"from": tg.user_object, "date": 1,
                                                 "text": "I said"})
        update = tg.inject_reply(group, bob, "you did", to=mine)
    else:
        update = tg.inject_command(group, bob, "status")
    message = read(tg, update)
    assert message is not None and message.chat_type == "group" and message.mentioned


def test_what_does_not() -> None:
    tg = bot()
    group = tg.group("Team")
    bob = tg.user("Bob")
    other = tg.inject_message(group, bob, text="@other_bot hi",
                              entities=[{"type": "mention", "offset": 0, "length": 10}])
    plain = tg.inject_text(group, bob, "@Clawgate_Bot typed without an entity")
    theirs = tg.inject_message(group, bob, text="/status@other_bot",
                               entities=[{"type": "bot_command", "offset": 0, "length": 17}])
    to_bob = tg.inject_reply(group, bob, "replying to myself", to=other["message"])
    for update in (other, plain, to_bob):
        message = read(tg, update)
        assert message is not None and not message.mentioned, update
    # A command for another bot is not received at all (in a group that needs no mention it
    # would run here); a plain command, or one later in the text, is.
    assert read(tg, theirs) is None
    plain_command = read(tg, tg.inject_message(group, bob, text="/status", entities=[
        {"type": "bot_command", "offset": 0, "length": 7}]))
    assert plain_command is not None and plain_command.text == "/status"
    later = read(tg, tg.inject_message(group, bob, text="see /status@other_bot", entities=[
        {"type": "bot_command", "offset": 4, "length": 17}]))
    assert later is not None


def test_a_forum_topic_and_its_implicit_reply() -> None:
    tg = bot()
    forum = tg.group("Forum", forum=True)
    tg.inject_text(forum, tg.user("Ann"), "General")
    topic = tg.create_topic(forum, "Ideas", by=tg.user_object)  # the bot opened it
    update = tg.inject_text(forum, tg.user("Ann"), "in the topic", thread_id=topic)
    message = read(tg, update)
    assert message is not None and message.topic == str(topic)
    # Every topic message "replies" to the topic's creation: neither a mention nor a reply.
    assert not message.mentioned and message.reply_to is None


def test_own_messages_channels_and_service_messages() -> None:
    tg = bot()
    group = tg.group("Team")
    own = read(tg, tg.inject_message(group, tg.user_object, text="echo"))
    assert own is not None and own.from_self
    anonymous = read(tg, tg.inject_message(group, tg.user("Group", id=1087968824),
                                           text="as the group", extra={"sender_chat": group}))
    assert anonymous is not None and anonymous.sender == str(group["id"])
    assert anonymous.sender_name == "Team"
    assert read(tg, tg.inject_message(tg.channel("News"), tg.user("X"), text="post")) is None
    joined = tg.inject_message(group, tg.user("New"), extra={"new_chat_members": []})
    assert read(tg, joined) is None
    assert read(tg, {"update_id": 1, "edited_message": tg.inject_text(
        group, tg.user("E"), "x")["message"]}) is None


def test_attachments() -> None:
    tg = bot()
    ada = tg.user("Ada")
    chat = tg.private_chat(ada)
    photo = read(tg, tg.inject_photo(chat, ada, b"\x89PNG", caption="look"))
    assert photo is not None and photo.text == "look"
    (image,) = photo.attachments
    assert (image.kind, image.mime_type, image.size) == ("image", "image/jpeg", 4)
    document = read(tg, tg.inject_document(chat, ada, b"x" * 10, file_name="a.png",
                                           mime_type="image/png"))
    assert document is not None and document.attachments[0].kind == "image"
    pdf = read(tg, tg.inject_document(chat, ada, b"%PDF", file_name="r.pdf",
                                      mime_type="application/pdf"))
    assert pdf is not None
    assert (pdf.attachments[0].kind, pdf.attachments[0].name) == ("file", "r.pdf")
    voice = read(tg, tg.inject_voice(chat, ada, b"OggS"))
    assert voice is not None and voice.attachments[0].mime_type == "audio/ogg"
    sticker = read(tg, tg.inject_sticker(chat, ada, b"RIFF", emoji="🙂"))
    assert sticker is not None and sticker.attachments[0].kind == "sticker"
    assert sticker.text == ""
