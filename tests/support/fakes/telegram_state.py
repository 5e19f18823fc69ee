"""The server-side state behind the Telegram fake: one :class:`TgBot` per token, with its chats
and messages (bounded, increasing ``message_id`` per chat), pending updates, webhook settings,
commands and files, plus helpers that build realistic inbound updates (private and group
messages, ``@botname`` mentions, ``/start``, replies, forum topics, photo, document, voice and
sticker messages). :mod:`tests.support.fakes.telegram` serves it over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import struct
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Delivery", "TgBot", "TgError", "bad", "file_fields", "image_size"]

_DEFAULT_EXCLUDED = {"chat_member", "message_reaction", "message_reaction_count"}


class TgError(Exception):
    """A Bot API error answer."""

    def __init__(self, code: int, description: str,
                 parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


def bad(description: str) -> TgError:
    return TgError(400, f"Bad Request: {description}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery attempt: the update, the HTTP status (None if no answer)."""

    update_id: int
    status: int | None
    error: str | None
    at: float


@dataclass(slots=True)
class StoredFile:
    file_id: str
    unique_id: str
    path: str
    data: bytes = field(repr=False)


@dataclass(slots=True)
class ChatState:
    info: dict[str, Any]
    messages: OrderedDict[int, dict[str, Any]] = field(default_factory=OrderedDict)
    next_id: int = 1
    topics: dict[int, dict[str, Any]] = field(default_factory=dict)
    migrated_to: int | None = None


class TgBot:
    """The server-side state of one bot token: its chats and messages, pending updates, webhook,
    commands and files, and helpers that build realistic inbound updates."""

    def __init__(self, changed: Callable[[], None], token: str, *, username: str, first_name: str,
                 can_join_groups: bool, can_read_all_group_messages: bool,
                 has_topics_enabled: bool, max_updates: int, max_messages: int) -> None:
        self._changed = changed
        self.token = token
        self.id = int(token.split(":", 1)[0])
        self.username = username
        self.me: dict[str, Any] = {
            "id": self.id, "is_bot": True, "first_name": first_name, "username": username,
            "can_join_groups": can_join_groups,
            "can_read_all_group_messages": can_read_all_group_messages,
            "supports_inline_queries": False, "can_connect_to_business": False,
            "has_main_web_app": False, "has_topics_enabled": has_topics_enabled,
        }
        self.updates: deque[dict[str, Any]] = deque(maxlen=max_updates)
        self.next_update_id = 100_000_001
        self.confirmed_up_to = 0
        self.allowed_updates: list[str] | None = None
        self.webhook: dict[str, Any] | None = None
        self.deliveries: deque[Delivery] = deque(maxlen=10_000)
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.chats: dict[int, ChatState] = {}
        self.files: OrderedDict[str, StoredFile] = OrderedDict()
        self.max_messages = max_messages
        self.max_files = 10_000
        self._poll_generation = 0
        self._arrived = asyncio.Event()
        self._deliverer: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._users = itertools.count(1_000_001)
        self._groups = itertools.count(1)

    async def arrival(self, within: float | None) -> None:
        """Wait until an update arrives (or the poll is superseded, or the fake stops)."""
        arrived = self._arrived
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), within)
        if arrived.is_set() and arrived is self._arrived:
            self._arrived = asyncio.Event()  # consumed: the next wait waits afresh

    # -- people and places -------------------------------------------------------------------

    @property
    def user_object(self) -> dict[str, Any]:
        """The bot as a ``User`` in messages it sends."""
        return {"id": self.id, "is_bot": True, "first_name": self.me["first_name"],
                "username": self.username}

    def user(self, first_name: str = "Ada", *, username: str | None = None,
             id: int | None = None, language_code: str | None = "en") -> dict[str, Any]:
        """A human ``User`` object."""
        user: dict[str, Any] = {"id": id or next(self._users), "is_bot": False,
                                "first_name": first_name}
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        return user

    def private_chat(self, user: dict[str, Any]) -> dict[str, Any]:
        """The private ``Chat`` between the bot and ``user`` (created on first use)."""
        info = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            info["username"] = user["username"]
        return self._chat(info).info

    def group(self, title: str = "Team", *, supergroup: bool = True, forum: bool = False,
              username: str | None = None) -> dict[str, Any]:
        """A group ``Chat`` (a supergroup, ``-100...`` id, unless ``supergroup=False``)."""
        n = next(self._groups)
        info: dict[str, Any] = {"id": -(1_000_000_000_000 + n) if supergroup else -(4000 + n),
                                "type": "supergroup" if supergroup else "group", "title": title}
        if forum:
            info["is_forum"] = True
        if username:
            info["username"] = username
        return self._chat(info).info

    def channel(self, title: str = "News", *, username: str | None = None) -> dict[str, Any]:
        """A channel ``Chat``."""
        info: dict[str, Any] = {"id": -(1_000_000_000_000 + next(self._groups)),
                                "type": "channel", "title": title}
        if username:
            info["username"] = username
        return self._chat(info).info

    def _chat(self, info: dict[str, Any]) -> ChatState:
        chat = self.chats.get(info["id"])
        if chat is None:
            chat = self.chats[info["id"]] = ChatState(info)
        return chat

    def create_topic(self, chat: dict[str, Any], name: str, *,
                     by: dict[str, Any] | None = None) -> int:
        """Open a forum topic in a forum supergroup; returns its ``message_thread_id`` (the id of
        its ``forum_topic_created`` service message, as in Telegram)."""
        state = self.chats[chat["id"]]
        if not state.info.get("is_forum"):
            raise ValueError(f"chat {chat['id']} is not a forum")
        creator = by or self.user("Admin")
        message = self._store(state, {"from": creator, "date": int(time.time()),
                                      "forum_topic_created": {"name": name,
                                                              "icon_color": 7322096}})
        message["message_thread_id"] = message["message_id"]
        message["is_topic_message"] = True
        state.topics[message["message_id"]] = message
        return int(message["message_id"])

    def migrate(self, chat: dict[str, Any]) -> dict[str, Any]:
        """Upgrade a basic group to a supergroup: later sends to the old id get 400 with
        ``parameters.migrate_to_chat_id``. Returns the new supergroup chat."""
        old = self.chats[chat["id"]]
        new = self.group(old.info.get("title", "Group"))
        old.migrated_to = new["id"]
        return new

    # -- inbound traffic ---------------------------------------------------------------------

    def inject_update(self, update: dict[str, Any]) -> dict[str, Any] | None:
        """Queue a raw update (``update_id`` assigned when missing). Returns it, or None when
        the current ``allowed_updates`` filters its type out (Telegram then never creates
        it)."""
        kind = next((k for k in update if k != "update_id"), "")
        allowed = self.allowed_updates
        if (allowed and kind not in allowed) or (not allowed and kind in _DEFAULT_EXCLUDED):
            return None
        update = {"update_id": self.next_update_id, **update}
        self.next_update_id = int(update["update_id"]) + 1
        self.updates.append(update)
        self._arrived.set()
        self._changed()
        return update

    def inject_message(self, chat: dict[str, Any], user: dict[str, Any], *,
                       text: str | None = None, entities: list[dict[str, Any]] | None = None,
                       reply_to: dict[str, Any] | None = None, thread_id: int | None = None,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A user's message in ``chat`` delivered as a ``message`` update; returns the update
        (just ``{"message": ...}`` when ``allowed_updates`` filters messages out)."""
        state = self._chat(chat)
        message: dict[str, Any] = {"from": user, "date": int(time.time())}
        if text is not None:
            message["text"] = text
        if entities:
            message["entities"] = entities
        message.update(extra or {})
        self._thread(state, message, thread_id, reply_to)
        stored = self._store(state, message)
        update = self.inject_update({"message": stored})
        return update or {"message": stored}

    def inject_text(self, chat: dict[str, Any], user: dict[str, Any], text: str, *,
                    reply_to: dict[str, Any] | None = None,
                    thread_id: int | None = None) -> dict[str, Any]:
        """A plain text message."""
        return self.inject_message(chat, user, text=text, reply_to=reply_to, thread_id=thread_id)

    def inject_mention(self, chat: dict[str, Any], user: dict[str, Any], text: str,
                       **kw: Any) -> dict[str, Any]:
        """``@botname <text>`` with its ``mention`` entity (how groups address a bot)."""
        handle = f"@{self.username}"
        return self.inject_message(chat, user, text=f"{handle} {text}",
                                   entities=[{"type": "mention", "offset": 0,
                                              "length": _u16(handle)}], **kw)

    def inject_command(self, chat: dict[str, Any], user: dict[str, Any], command: str = "start",
                       args: str = "", **kw: Any) -> dict[str, Any]:
        """``/command[@botname] [args]`` with its ``bot_command`` entity (``@botname`` in
        groups)."""
        head = f"/{command}" if chat["type"] == "private" else f"/{command}@{self.username}"
        text = f"{head} {args}" if args else head
        return self.inject_message(chat, user, text=text,
                                   entities=[{"type": "bot_command", "offset": 0,
                                              "length": _u16(head)}], **kw)

    def inject_reply(self, chat: dict[str, Any], user: dict[str, Any], text: str,
                     to: dict[str, Any], **kw: Any) -> dict[str, Any]:
        """A reply to message ``to`` (e.g. a message the bot sent)."""
        return self.inject_message(chat, user, text=text, reply_to=to, **kw)

    def inject_photo(self, chat: dict[str, Any], user: dict[str, Any], data: bytes, *,
                     caption: str | None = None, **kw: Any) -> dict[str, Any]:
        """A photo message whose file can be fetched with getFile + download."""
        extra: dict[str, Any] = {"photo": [self._photo(data)]}
        if caption:
            extra["caption"] = caption
        return self.inject_message(chat, user, extra=extra, **kw)

    def inject_document(self, chat: dict[str, Any], user: dict[str, Any], data: bytes, *,
                        file_name: str = "file.bin", mime_type: str = "application/octet-stream",
                        caption: str | None = None, **kw: Any) -> dict[str, Any]:
        """A document message."""
        extra: dict[str, Any] = {"document": self._document(data, file_name, mime_type)}
        if caption:
            extra["caption"] = caption
        return self.inject_message(chat, user, extra=extra, **kw)

    def inject_voice(self, chat: dict[str, Any], user: dict[str, Any], data: bytes, *,
                     duration: int = 1, **kw: Any) -> dict[str, Any]:
        """A voice note (OGG/Opus)."""
        stored = self.store_file(data, "voice", ".oga")
        voice = {**file_fields(stored), "duration": duration, "mime_type": "audio/ogg"}
        return self.inject_message(chat, user, extra={"voice": voice}, **kw)

    def inject_sticker(self, chat: dict[str, Any], user: dict[str, Any], data: bytes, *,
                       emoji: str = "👍", **kw: Any) -> dict[str, Any]:
        """A static WEBP sticker."""
        stored = self.store_file(data, "stickers", ".webp")
        sticker = {**file_fields(stored), "type": "regular", "width": 512, "height": 512,
                   "is_animated": False, "is_video": False, "emoji": emoji}
        return self.inject_message(chat, user, extra={"sticker": sticker}, **kw)

    def inject_edit(self, message: dict[str, Any], text: str) -> dict[str, Any]:
        """The user edits an earlier message: an ``edited_message`` update."""
        state = self.chats[message["chat"]["id"]]
        stored = state.messages[message["message_id"]]
        stored.update(text=text, edit_date=int(time.time()))
        return self.inject_update({"edited_message": dict(stored)}) or {}

    # -- state helpers -----------------------------------------------------------------------

    def messages(self, chat: dict[str, Any] | int) -> list[dict[str, Any]]:
        """Messages currently in a chat, oldest first."""
        chat_id = chat if isinstance(chat, int) else chat["id"]
        return list(self.chats[chat_id].messages.values())

    def sent(self, chat: dict[str, Any] | int | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent (in one chat, or everywhere)."""
        chats = [self.chats[chat if isinstance(chat, int) else chat["id"]]] if chat is not None \
            else list(self.chats.values())
        return [m for c in chats for m in c.messages.values() if m["from"]["id"] == self.id]

    def store_file(self, data: bytes, folder: str, suffix: str) -> StoredFile:
        """Keep bytes as a file the bot can getFile and download (bounded, oldest dropped)."""
        n = next(self._ids)
        stored = StoredFile(f"BAAC{n:06d}{secrets.token_hex(8)}", f"AgAD{n:06d}",
                       f"{folder}/file_{n}{suffix}", data)
        self.files[stored.file_id] = stored
        while len(self.files) > self.max_files:
            self.files.popitem(last=False)
        return stored

    def _photo(self, data: bytes) -> dict[str, Any]:
        width, height = image_size(data)
        return {**file_fields(self.store_file(data, "photos", ".jpg")), "width": width,
                "height": height}

    def _document(self, data: bytes, file_name: str, mime_type: str) -> dict[str, Any]:
        suffix = "." + file_name.rsplit(".", 1)[1] if "." in file_name else ""
        return {**file_fields(self.store_file(data, "documents", suffix)),
                "file_name": file_name, "mime_type": mime_type}

    def _thread(self, state: ChatState, message: dict[str, Any], thread_id: int | None,
                reply_to: dict[str, Any] | None) -> None:
        if thread_id is not None and state.info.get("is_forum"):
            topic = state.topics.get(thread_id)
            if topic is None:
                raise bad("message thread not found")
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
            # In a topic every message replies to the topic's creation message unless it
            # replies to something else (Telegram's documented quirk).
            reply_to = reply_to or topic
        if reply_to is not None:
            quoted = {k: v for k, v in reply_to.items() if k != "reply_to_message"}
            message["reply_to_message"] = quoted

    def _store(self, state: ChatState, message: dict[str, Any]) -> dict[str, Any]:
        message_id = state.next_id
        state.next_id += 1
        message.setdefault("chat", state.info)
        stored = {"message_id": message_id, **message}
        state.messages[message_id] = stored
        while len(state.messages) > self.max_messages:
            state.messages.popitem(last=False)
        self._changed()
        return stored


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def file_fields(stored: StoredFile) -> dict[str, Any]:
    return {"file_id": stored.file_id, "file_unique_id": stored.unique_id,
            "file_size": len(stored.data)}


def image_size(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height)
    return 0, 0
