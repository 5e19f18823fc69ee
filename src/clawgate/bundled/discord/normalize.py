"""A Discord message (``hikari.Message`` from MESSAGE_CREATE) as an ``InboundMessage``.

- ``message_id`` is the message's snowflake: unique, and the same when a RESUME replays it.
- DMs (no guild) are ``direct`` with the DM channel as the conversation. Guild text channels are
  ``group`` with the channel as the conversation. A thread (channel types 10, 11, 12) is its
  parent channel's conversation with ``thread`` = the thread id: the thread is a session of its
  own (``...:group:<channel>:thread:<thread>``), follows its parent's ``groups`` rule, and
  replies go into the thread.
- ``mentioned``: the bot is in the message's mentions (``<@id>`` / ``<@!id>``) or the message
  replies to one of the bot's; the leading mention is taken out of the text.
- Attachments carry their CDN URL as ``file_id`` (``fetch`` downloads it).
"""

from __future__ import annotations

import re

import hikari

from clawgate import Attachment, InboundMessage

KINDS = ("image", "audio", "video")
MESSAGE_TYPES = frozenset((hikari.MessageType.DEFAULT, hikari.MessageType.REPLY))


def leading_mention(bot_id: int) -> re.Pattern[str]:
    """``<@id>`` or ``<@!id>`` at the start of a message, with the space after it."""
    return re.compile(rf"^\s*<@!?{bot_id}>[\s,:]*")


def addressed(message: hikari.Message, bot_id: int) -> bool:
    """The bot is mentioned, or the message replies to one of the bot's."""
    ids = message.user_mentions_ids
    if ids is not hikari.UNDEFINED and bot_id in ids:
        return True
    content = message.content or ""
    if f"<@{bot_id}>" in content or f"<@!{bot_id}>" in content:
        return True
    reference = message.referenced_message
    return bool(reference) and getattr(getattr(reference, "author", None), "id", None) == bot_id


def attachments(message: hikari.Message) -> tuple[Attachment, ...]:
    out = []
    for item in message.attachments:
        mime = item.media_type or None
        major = (mime or "").split("/", 1)[0]
        kind = major if major in KINDS else "file"
        out.append(Attachment(kind, item.url, mime_type=mime, size=item.size,  # type: ignore[arg-type]
                              name=item.filename))
    return tuple(out)


def sender_name(message: hikari.Message) -> str:
    member = message.member
    if member:
        return str(member.display_name)
    author = message.author
    return str(author.global_name or author.username)


def inbound(message: hikari.Message, *, bot_id: int, parent: int | None,
            mention: re.Pattern[str]) -> InboundMessage | None:
    """The message for the core, or None when there is nothing to process (a system message,
    an empty one)."""
    if message.type not in MESSAGE_TYPES:
        return None
    guild = message.guild_id is not None
    text = message.content or ""
    mentioned = guild and addressed(message, bot_id)
    text = mention.sub("", text, count=1)
    files = attachments(message)
    if not text.strip() and not files:
        return None
    reference = message.referenced_message
    channel = str(message.channel_id)
    return InboundMessage(
        message_id=str(message.id), sender=str(message.author.id), text=text,
        conversation=str(parent) if parent is not None else channel,
        chat_type="group" if guild else "direct",
        thread=channel if parent is not None else None, mentioned=mentioned,
        sender_name=sender_name(message),
        reply_to=str(reference.id) if reference else None, attachments=files)
