"""Sending to Telegram: text parts (Markdown rendered to HTML, plain text when Telegram rejects
the entities), files, edits of previews, the typing indicator, and downloads of inbound files.

Text: a part is sent with ``parse_mode=HTML``. When Telegram answers 400 "can't parse entities"
(or "message is too long"), the part is sent again as the agent's plain Markdown, without
``parse_mode``. A part whose text cannot fit one message (more than 4,096 UTF-16 units — a part
of emoji or other astral characters, or a ``text_chunk_limit`` above Telegram's limit) is sent
as plain text in several messages, and the receipt lists them all.

Threads: replies to a forum topic carry its ``message_thread_id``; the General topic (id 1) is
left out of sends (Telegram refuses it there) but kept for the typing indicator. ``reply_to``
becomes ``reply_parameters`` (sent even if that message was deleted meanwhile).
"""

from __future__ import annotations

import logging

import telegram
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, TelegramError

from clawgate import Account, Attachment, DeliveryReceipt, OutboundMedia, OutboundMessage, Target

from .client import refused, send_error
from .normalize import platform_id
from .render import MAX_TEXT, render, split_plain, units, visible

log = logging.getLogger("clawgate.telegram")

GENERAL_TOPIC = "1"
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_PHOTO_BYTES = 10 * 1024 * 1024  # sendPhoto's limit; larger images go as documents
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile's limit on the public Bot API
PLAIN_RETRY = ("can't parse entities", "message is too long")


def _thread(target: Target, *, typing: bool = False) -> int | None:
    if target.thread is None or (target.thread == GENERAL_TOPIC and not typing):
        return None
    return int(target.thread)


def _reply(target: Target) -> telegram.ReplyParameters | None:
    if target.reply_to is None:
        return None
    return telegram.ReplyParameters(platform_id(target.reply_to),
                                    allow_sending_without_reply=True)


async def send(bot: telegram.Bot, account: Account, message: OutboundMessage) -> DeliveryReceipt:
    """Send one part of a reply; the receipt holds the Telegram message id(s)."""
    target = message.target
    token = str(account.config["bot_token"])
    chat: int | str = target.to
    for _attempt in range(2):  # once more to the supergroup a group was upgraded to
        try:
            if message.media is not None:
                return DeliveryReceipt((await _media(bot, chat, target, message.media),))
            return DeliveryReceipt(tuple(await _text(bot, chat, target, message.text)))
        except ChatMigrated as exc:
            log.info("telegram: chat %s became %s; sending there", chat, exc.new_chat_id)
            chat = exc.new_chat_id
        except TelegramError as exc:
            raise send_error(exc, "sendMessage" if message.media is None else "send file",
                             token) from None
    raise send_error(BadRequest("the chat was migrated twice"), "sendMessage", token)


async def _text(bot: telegram.Bot, chat: int | str, target: Target, text: str) -> list[str]:
    thread, reply = _thread(target), _reply(target)
    html = render(text)
    shown = visible(html)
    if shown.strip() and units(shown) <= MAX_TEXT:
        try:
            sent = await bot.send_message(chat, html, parse_mode=ParseMode.HTML,
                                          message_thread_id=thread, reply_parameters=reply)
            return [str(sent.message_id)]
        except BadRequest as exc:
            if not refused(exc, *PLAIN_RETRY):
                raise
            log.info("telegram: HTML refused (%s); sending the part as plain text", exc)
    ids = []
    for number, piece in enumerate(split_plain(text)):
        sent = await bot.send_message(chat, piece, message_thread_id=thread,
                                      reply_parameters=reply if number == 0 else None)
        ids.append(str(sent.message_id))
    return ids


async def _media(bot: telegram.Bot, chat: int | str, target: Target,
                 media: OutboundMedia) -> str:
    thread, reply = _thread(target), _reply(target)
    if media.kind == "image" and media.mime_type in PHOTO_TYPES \
            and len(media.data) <= MAX_PHOTO_BYTES:
        try:
            sent = await bot.send_photo(chat, media.data, filename=media.name,
                                        message_thread_id=thread, reply_parameters=reply)
            return str(sent.message_id)
        except BadRequest as exc:  # dimensions or format Telegram won't take as a photo
            log.info("telegram: sendPhoto refused %s (%s); sending it as a document",
                     media.name, exc)
    sent = await bot.send_document(chat, media.data, filename=media.name,
                                   message_thread_id=thread, reply_parameters=reply)
    return str(sent.message_id)


async def edit(bot: telegram.Bot, account: Account, target: Target, message_id: str,
               text: str) -> None:
    """Edit a message the bot sent (a preview, or the final reply in place of its preview).
    "message is not modified" is success; a message that is gone or not editable is a
    refusal (not retried)."""
    token = str(account.config["bot_token"])
    html = render(text)
    shown = visible(html)
    mid = platform_id(message_id)
    try:
        if shown.strip() and units(shown) <= MAX_TEXT:
            try:
                await bot.edit_message_text(html, target.to, mid, parse_mode=ParseMode.HTML)
                return
            except BadRequest as exc:
                if not refused(exc, *PLAIN_RETRY):
                    raise
        plain = text if units(text) <= MAX_TEXT else split_plain(text, MAX_TEXT - 1)[0] + "…"
        if units(text) > MAX_TEXT:
            log.warning("telegram: an edit of %d UTF-16 units was cut to Telegram's limit",
                        units(text))
        await bot.edit_message_text(plain, target.to, mid)
    except BadRequest as exc:
        if refused(exc, "message is not modified"):
            return
        raise send_error(exc, "editMessageText", token) from None
    except TelegramError as exc:
        raise send_error(exc, "editMessageText", token) from None


async def typing(bot: telegram.Bot, account: Account, target: Target) -> None:
    """``sendChatAction typing`` (in the topic, for topics)."""
    try:
        await bot.send_chat_action(target.to, "typing",
                                   message_thread_id=_thread(target, typing=True))
    except TelegramError as exc:
        raise send_error(exc, "sendChatAction", str(account.config["bot_token"])) from None


async def fetch(bot: telegram.Bot, account: Account,
                attachment: Attachment) -> tuple[bytes, str]:
    """The bytes and MIME type of an inbound file (``getFile``, then the file URL)."""
    if attachment.size is not None and attachment.size > MAX_DOWNLOAD_BYTES:
        raise send_error(BadRequest("file is too big (the Bot API downloads up to 20 MB)"),
                         "getFile")
    try:
        file = await bot.get_file(attachment.file_id)
        data = await file.download_as_bytearray()
    except TelegramError as exc:
        raise send_error(exc, "getFile", str(account.config["bot_token"])) from None
    return bytes(data), attachment.mime_type or "application/octet-stream"
