"""Telegram updates as the core's ``InboundMessage``.

- ``message_id`` is ``<chat id>:<message id>``: the same for every redelivery of an update (by
  ``getUpdates`` after a restart, or a webhook retry) and unique per bot, so it is the dedupe key.
- Private chats are ``direct``; groups and supergroups ``group`` (the conversation is the chat
  id); a forum topic (``is_topic_message`` with ``message_thread_id``) is the ``topic``.
- The bot is mentioned by a ``mention`` entity equal to ``@<bot username>`` (any case), a
  ``text_mention`` of the bot, a reply to one of its messages, or a ``/command@<bot username>``.
- Photos (the largest size), documents, voice notes, audio, video, animations, video notes and
  stickers become attachments (file id, MIME type, size, name); the text is the caption then.
- Updates that carry no message from a person (service messages, channel posts, other update
  types) give None: their offset advances and nothing is received. So does a command addressed
  to another bot (``/reset@other_bot``): in a group that needs no mention it would otherwise
  reset this bot's session.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clawgate import Attachment, InboundMessage

if TYPE_CHECKING:
    from telegram import Message, MessageEntity, Update

GROUPS = ("group", "supergroup")
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the bot is (``getMe``)."""

    id: int
    username: str

    def dump(self) -> dict[str, object]:
        return {"id": self.id, "username": self.username}


def message_key(chat_id: int | str, message_id: int | str) -> str:
    """The dedupe key (and reply target) of a message."""
    return f"{chat_id}:{message_id}"


def platform_id(key: str) -> int:
    """The Telegram ``message_id`` of a key (``<chat>:<id>``) or of a bare id."""
    return int(key.rsplit(":", 1)[-1])


def normalize(update: Update, me: Identity) -> InboundMessage | None:
    """The inbound message of ``update``, or None when there is nothing to receive."""
    message = update.message
    if message is None:
        return None
    chat = message.chat
    if chat.type == "private":
        chat_type = "direct"
    elif chat.type in GROUPS:
        chat_type = "group"
    else:
        return None
    sender, name = _sender(message)
    if sender is None or _for_another_bot(message, me):
        return None
    text = message.text if message.text is not None else (message.caption or "")
    attachments = _attachments(message)
    if not text and not attachments:
        return None  # a service message (members joined, a topic was created, ...)
    topic = str(message.message_thread_id) if message.is_topic_message \
        and message.message_thread_id is not None else None
    reply = message.reply_to_message
    implicit = reply is not None and reply.forum_topic_created is not None
    return InboundMessage(
        message_id=message_key(chat.id, message.message_id),
        sender=sender,
        text=text,
        conversation=str(chat.id),
        chat_type=chat_type,  # type: ignore[arg-type]
        topic=topic,
        mentioned=chat_type == "group" and mentioned(message, me),
        sender_name=name,
        reply_to=message_key(chat.id, reply.message_id) if reply is not None
        and not implicit else None,
        attachments=attachments,
        from_self=message.from_user is not None and message.from_user.id == me.id,
    )


def _sender(message: Message) -> tuple[str | None, str | None]:
    """The sender id (a user, or the chat an anonymous admin or a channel speaks as) and a
    display name."""
    if message.sender_chat is not None:
        sc = message.sender_chat
        return str(sc.id), sc.title or sc.username or str(sc.id)
    user = message.from_user
    if user is None:
        return None, None
    return str(user.id), user.full_name or user.username or str(user.id)


def mentioned(message: Message, me: Identity) -> bool:
    """True when the message addresses the bot (see the module docstring)."""
    reply = message.reply_to_message
    if reply is not None and reply.forum_topic_created is None and reply.from_user is not None \
            and reply.from_user.id == me.id:
        return True
    handle = "@" + me.username.lower()
    entities: dict[MessageEntity, str] = {}
    if message.entities:
        entities.update(message.parse_entities())
    if message.caption_entities:
        entities.update(message.parse_caption_entities())
    for entity, text in entities.items():
        kind = entity.type
        if kind == "mention" and text.lower() == handle:
            return True
        if kind == "text_mention" and entity.user is not None and entity.user.id == me.id:
            return True
        if kind == "bot_command" and text.lower().endswith(handle):
            return True
    return False


def _for_another_bot(message: Message, me: Identity) -> bool:
    """True when the message starts with ``/command@name`` and ``name`` is not this bot."""
    first = next((e for e in message.entities or () if e.offset == 0), None)
    if first is None or first.type != "bot_command":
        return False
    command = message.parse_entity(first)
    return "@" in command and command.rsplit("@", 1)[1].lower() != me.username.lower()


def _attachments(message: Message) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        found.append(Attachment("image", largest.file_id, "image/jpeg", largest.file_size,
                                "photo.jpg"))
    document = message.document
    if document is not None and message.animation is None:
        mime = document.mime_type or _guess(document.file_name)
        found.append(Attachment("image" if mime in IMAGE_TYPES else "file", document.file_id,
                                mime, document.file_size, document.file_name))
    if message.animation is not None:
        a = message.animation
        found.append(Attachment("video", a.file_id, a.mime_type or "video/mp4", a.file_size,
                                a.file_name))
    if message.voice is not None:
        v = message.voice
        found.append(Attachment("audio", v.file_id, v.mime_type or "audio/ogg", v.file_size,
                                "voice.ogg"))
    if message.audio is not None:
        au = message.audio
        found.append(Attachment("audio", au.file_id, au.mime_type or _guess(au.file_name),
                                au.file_size, au.file_name))
    if message.video is not None:
        vi = message.video
        found.append(Attachment("video", vi.file_id, vi.mime_type or "video/mp4", vi.file_size,
                                vi.file_name))
    if message.video_note is not None:
        vn = message.video_note
        found.append(Attachment("video", vn.file_id, "video/mp4", vn.file_size, "video.mp4"))
    if message.sticker is not None:
        s = message.sticker
        mime = ("application/x-tgsticker" if s.is_animated else
                "video/webm" if s.is_video else "image/webp")
        found.append(Attachment("sticker", s.file_id, mime, s.file_size,
                                f"sticker {s.emoji}" if s.emoji else "sticker"))
    return tuple(found)


def _guess(name: str | None) -> str | None:
    return mimetypes.guess_type(name)[0] if name else None
