"""A loopback fake of the Telegram Bot API (Bot API 7-9 shapes) for python-telegram-bot.

Point the real library at it::

    async with TelegramFake() as fake:
        bot = telegram.Bot(fake.token, base_url=f"{fake.url}/bot",
                           base_file_url=f"{fake.url}/file/bot")
        tg = fake.bot                                   # the state of that token's bot
        ada = tg.user("Ada")
        tg.inject_text(tg.private_chat(ada), ada, "hello")
        updates = await bot.get_updates(timeout=5)
        await bot.send_message(updates[0].message.chat_id, "hi")
        call = await fake.wait_for("sendMessage")

Requests arrive at ``/bot<token>/<method>`` (GET or POST; JSON, form-urlencoded or multipart;
method names are case-insensitive, as Telegram's are) and files at
``/file/bot<token>/<file_path>``. Answers are ``{"ok": true, "result": ...}``; errors are
``{"ok": false, "error_code", "description"[, "parameters"]}`` with the HTTP status equal to
``error_code``. A malformed token gets 404 "Not Found", an unknown one 401 "Unauthorized", an
unknown method 404 "Not Found".

``getUpdates`` is a real long poll: ``offset`` confirms (forgets) every update below it, a
negative offset keeps only the last ``-offset``; ``timeout`` seconds are waited for new updates;
``allowed_updates`` persists and filters updates created after it (Telegram's default leaves out
``chat_member``, ``message_reaction`` and ``message_reaction_count``). A second concurrent
``getUpdates`` terminates the older one with 409; while a webhook is set ``getUpdates`` answers
409 too, and the fake POSTs each update to the webhook URL (loopback only) with
``X-Telegram-Bot-Api-Secret-Token``, retrying a non-2xx answer after ``webhook_retry_s``.

Text is checked as Telegram does (:mod:`telegram_text`): malformed HTML or MarkdownV2 gets 400
"Bad Request: can't parse entities: ...", more than 4096 characters after parsing 400
"Bad Request: message is too long". Each chat keeps its messages (bounded) with increasing
``message_id``; bots edit only their own messages. Simplifications: photos are stored once (one
``PhotoSize``, dimensions read from PNG/GIF headers, else 0), URLs are never fetched (a file
must be uploaded or referenced by file_id), and the webhook may be plain http.
"""

from __future__ import annotations

import asyncio
import http
import itertools
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.support.fakes import telegram_text
from tests.support.fakes.harness import Call, FakeServer, Fault, Upload, json_response
from tests.support.fakes.telegram_state import (
    ChatState,
    Delivery,
    StoredFile,
    TgBot,
    TgError,
    bad,
    file_fields,
    image_size,
)

__all__ = ["DEFAULT_TOKEN", "Delivery", "TelegramFake", "TgBot"]

DEFAULT_TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_DOWNLOAD = 20 * 1024 * 1024
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice",
            "upload_voice", "upload_document", "choose_sticker", "find_location",
            "record_video_note", "upload_video_note"}
CONFLICT_POLL = ("Conflict: terminated by other getUpdates request; make sure that only one bot "
                 "instance is running")
CONFLICT_WEBHOOK = ("Conflict: can't use getUpdates method while webhook is active; use "
                    "deleteWebhook to delete the webhook first")


class _Params:
    """Bot API parameters from the query string and body, typed the way Telegram reads them
    (form values are strings, objects arrive JSON-serialized)."""

    def __init__(self, call: Call) -> None:
        body = call.body if isinstance(call.body, dict) else {}
        self.values: dict[str, Any] = {**call.query, **body}

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.values.get(name)
        return default if value is None else str(value)

    def number(self, name: str, *, required: bool = False) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise bad(f"{name} is empty")
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise bad(f"invalid {name} specified") from None

    def json(self, name: str) -> Any:
        value = self.values.get(name)
        if isinstance(value, str):
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                raise bad(f"can't parse {name} JSON object") from None
        return value

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


Handler = Callable[[TgBot, _Params, Call], Awaitable[Any]]


class TelegramFake(FakeServer):
    """The Bot API server; ``fake.bot`` is the default bot, ``add_bot`` makes more."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, username: str = "clawgate_bot",
                 first_name: str = "Clawgate", can_join_groups: bool = True,
                 can_read_all_group_messages: bool = False, has_topics_enabled: bool = False,
                 webhook_retry_s: float = 0.05, max_updates: int = 10_000,
                 max_messages: int = 10_000) -> None:
        super().__init__()
        self.webhook_retry_s = webhook_retry_s
        self.bots: dict[str, TgBot] = {}
        self._defaults = {"max_updates": max_updates, "max_messages": max_messages}
        self.bot = self.add_bot(token, username=username, first_name=first_name,
                                can_join_groups=can_join_groups,
                                can_read_all_group_messages=can_read_all_group_messages,
                                has_topics_enabled=has_topics_enabled)
        self._methods: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler) for name, handler in {
                "getMe": self._get_me, "logOut": self._true, "close": self._true,
                "getUpdates": self._get_updates, "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook, "getWebhookInfo": self._webhook_info,
                "sendMessage": self._send_message, "editMessageText": self._edit_text,
                "deleteMessage": self._delete_message, "sendChatAction": self._chat_action,
                "setMyCommands": self._set_commands, "getMyCommands": self._get_commands,
                "deleteMyCommands": self._delete_commands, "getFile": self._get_file,
                "sendPhoto": self._send_photo, "sendDocument": self._send_document,
                "setMessageReaction": self._set_reaction, "getChat": self._get_chat,
            }.items()}

    @property
    def token(self) -> str:
        """The default bot's token."""
        return self.bot.token

    def add_bot(self, token: str, *, username: str = "other_bot", first_name: str = "Other",
                can_join_groups: bool = True, can_read_all_group_messages: bool = False,
                has_topics_enabled: bool = False) -> TgBot:
        """Register another bot token (each has its own updates, chats and webhook)."""
        if not _TOKEN.match(token):
            raise ValueError(f"malformed bot token {token!r} (want '<digits>:<secret>')")
        bot = TgBot(self.changed, token, username=username, first_name=first_name,
                    can_join_groups=can_join_groups,
                    can_read_all_group_messages=can_read_all_group_messages,
                    has_topics_enabled=has_topics_enabled, **self._defaults)
        self.bots[token] = bot
        return bot

    def routes(self) -> list[BaseRoute]:
        return [Route("/bot{token}/{method}", self._api, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"])]

    def fault_response(self, fault: Fault, call: Call) -> Response:
        if fault.kind == "rate_limit":
            seconds = max(1, math.ceil(fault.retry_after))  # Telegram's hint is whole seconds
            return _error(TgError(429, f"Too Many Requests: retry after {seconds}",
                                  {"retry_after": seconds}))
        if fault.kind == "error":
            code = int(fault.code) if isinstance(fault.code, int) else fault.status
            return _error(TgError(code, fault.message or http.HTTPStatus(code).phrase,
                                  dict(fault.extra) or None))
        return _error(TgError(fault.status, http.HTTPStatus(fault.status).phrase))

    async def on_stop(self) -> None:
        for bot in self.bots.values():
            await _cancel(bot._deliverer)
            bot._arrived.set()

    # -- dispatch ----------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        raw_method = request.path_params["method"]
        name, handler = self._methods.get(raw_method.lower(), (raw_method, None))
        call, fault = await self.admit(request, name)
        if fault is not None:
            return fault
        token = request.path_params["token"]
        try:
            if not _TOKEN.match(token):
                raise TgError(404, "Not Found")
            bot = self.bots.get(token)
            if bot is None:
                raise TgError(401, "Unauthorized")
            if handler is None:
                raise TgError(404, "Not Found")
            result = await handler(bot, _Params(call), call)
        except TgError as exc:
            return _error(exc)
        if isinstance(result, Response):
            return result
        return json_response({"ok": True, "result": result})

    async def _download(self, request: Request) -> Response:
        call, fault = await self.admit(request, "file")
        if fault is not None:
            return fault
        bot = self.bots.get(request.path_params["token"])
        if bot is None:
            return _error(TgError(401, "Unauthorized"))
        path = request.path_params["path"]
        stored = next((f for f in bot.files.values() if f.path == path), None)
        if stored is None:
            return _error(TgError(404, "Not Found"))
        return Response(stored.data, media_type="application/octet-stream")

    # -- methods -----------------------------------------------------------------------------

    async def _true(self, bot: TgBot, p: _Params, call: Call) -> Any:
        return True

    async def _get_me(self, bot: TgBot, p: _Params, call: Call) -> Any:
        return bot.me

    async def _get_updates(self, bot: TgBot, p: _Params, call: Call) -> Any:
        if bot.webhook is not None:
            raise TgError(409, CONFLICT_WEBHOOK)
        offset = p.number("offset")
        limit = min(max(p.number("limit") or 100, 1), 100)
        timeout = max(p.number("timeout") or 0, 0)
        allowed = p.json("allowed_updates")
        if isinstance(allowed, list):
            bot.allowed_updates = [str(a) for a in allowed] or None
        bot._poll_generation += 1
        mine = bot._poll_generation
        bot._arrived.set()  # wakes an older poll so it learns it was superseded
        bot._arrived = asyncio.Event()
        self._confirm(bot, offset)
        deadline = time.monotonic() + timeout
        while not bot.updates and not self.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await bot.arrival(remaining)
            if bot._poll_generation != mine:
                raise TgError(409, CONFLICT_POLL)
            if bot.webhook is not None:
                raise TgError(409, CONFLICT_WEBHOOK)
        return list(itertools.islice(bot.updates, limit))

    def _confirm(self, bot: TgBot, offset: int | None) -> None:
        if offset is None:
            return
        if offset < 0:
            keep = -offset
            while len(bot.updates) > keep:
                bot.updates.popleft()
        else:
            while bot.updates and bot.updates[0]["update_id"] < offset:
                bot.updates.popleft()
            bot.confirmed_up_to = max(bot.confirmed_up_to, offset - 1)
        self.changed()

    async def _set_webhook(self, bot: TgBot, p: _Params, call: Call) -> Any:
        url = p.text("url", "") or ""
        if not url:
            return await self._delete_webhook(bot, p, call)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname not in (
                "127.0.0.1", "localhost", "::1"):
            raise bad("bad webhook: this fake delivers only to http(s) loopback URLs")
        secret = p.text("secret_token")
        if secret is not None and not _SECRET.match(secret):
            raise bad("secret token contains unallowed characters")
        if p.flag("drop_pending_updates"):
            bot.updates.clear()
        allowed = p.json("allowed_updates")
        if isinstance(allowed, list):
            bot.allowed_updates = [str(a) for a in allowed] or None
        await _cancel(bot._deliverer)
        bot.webhook = {"url": url, "secret_token": secret,
                       "max_connections": p.number("max_connections") or 40}
        bot._arrived.set()  # a pending getUpdates now answers 409
        bot._arrived = asyncio.Event()
        bot._deliverer = self.spawn(self._deliver(bot), name=f"telegram-webhook-{bot.id}")
        return json_response({"ok": True, "result": True, "description": "Webhook was set"})

    async def _delete_webhook(self, bot: TgBot, p: _Params, call: Call) -> Any:
        if p.flag("drop_pending_updates"):
            bot.updates.clear()
        had = bot.webhook is not None
        bot.webhook = None
        await _cancel(bot._deliverer)
        bot._deliverer = None
        self.changed()
        text = "Webhook was deleted" if had else "Webhook is already deleted"
        return json_response({"ok": True, "result": True, "description": text})

    async def _webhook_info(self, bot: TgBot, p: _Params, call: Call) -> Any:
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False,
                                "pending_update_count": len(bot.updates)}
        if bot.webhook is not None:
            info.update({"url": bot.webhook["url"], "ip_address": "127.0.0.1",
                         "max_connections": bot.webhook["max_connections"]})
            for key in ("last_error_date", "last_error_message"):
                if key in bot.webhook:
                    info[key] = bot.webhook[key]
            if bot.allowed_updates:
                info["allowed_updates"] = bot.allowed_updates
        return info

    async def _deliver(self, bot: TgBot) -> None:
        """POST pending updates, oldest first, to the webhook until it answers 2xx."""
        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            while bot.webhook is not None:
                if not bot.updates:
                    await bot.arrival(None)
                    continue
                update = bot.updates[0]
                headers = {"Content-Type": "application/json"}
                if bot.webhook.get("secret_token"):
                    headers["X-Telegram-Bot-Api-Secret-Token"] = bot.webhook["secret_token"]
                status: int | None = None
                error: str | None = None
                try:
                    answer = await client.post(bot.webhook["url"], content=orjson.dumps(update),
                                               headers=headers)
                    status = answer.status_code
                    if not 200 <= status < 300:
                        error = (f"Wrong response from the webhook: {status} "
                                 f"{http.HTTPStatus(status).phrase}")
                except httpx.TimeoutException:
                    error = "Read timeout expired"
                except httpx.HTTPError as exc:
                    error = f"Connection failed: {type(exc).__name__}"
                bot.deliveries.append(Delivery(update["update_id"], status, error,
                                               time.monotonic()))
                if error is None:
                    if bot.updates and bot.updates[0] is update:
                        bot.updates.popleft()
                    self.changed()
                    continue
                bot.webhook.update(last_error_date=int(time.time()), last_error_message=error)
                self.changed()
                if await self.pause(self.webhook_retry_s):
                    return

    def _target(self, bot: TgBot, p: _Params) -> ChatState:
        raw = p.text("chat_id")
        if not raw:
            raise bad("chat_id is empty")
        if raw.startswith("@"):
            chat = next((c for c in bot.chats.values()
                         if c.info.get("username", "").lower() == raw[1:].lower()), None)
        else:
            try:
                chat = bot.chats.get(int(raw))
            except ValueError:
                chat = None
        if chat is None:
            raise bad("chat not found")
        if chat.migrated_to is not None:
            raise TgError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                          {"migrate_to_chat_id": chat.migrated_to})
        return chat

    def _formatted(self, p: _Params, field_name: str, entities_name: str,
                   limit: int, too_long: str) -> tuple[str, list[dict[str, Any]]]:
        source = p.text(field_name, "") or ""
        entities = p.json(entities_name)
        try:
            text, parsed = telegram_text.parse(source, None if entities else p.text("parse_mode"))
        except telegram_text.EntityError as exc:
            raise bad(f"can't parse entities: {exc}") from None
        except ValueError as exc:
            raise bad(str(exc)) from None
        if len(text) > limit:
            raise bad(too_long)
        return text, entities if isinstance(entities, list) else parsed

    def _outgoing(self, bot: TgBot, chat: ChatState, p: _Params,
                  content: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"from": bot.user_object, "date": int(time.time()),
                                   **content}
        reply_to = self._reply_target(chat, p)
        bot._thread(chat, message, p.number("message_thread_id"), reply_to)
        markup = p.json("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup  # only inline keyboards show in the message
        return bot._store(chat, message)

    def _reply_target(self, chat: ChatState, p: _Params) -> dict[str, Any] | None:
        parameters = p.json("reply_parameters")
        if isinstance(parameters, dict):
            message_id = parameters.get("message_id")
            tolerant = bool(parameters.get("allow_sending_without_reply"))
        else:
            message_id = p.number("reply_to_message_id")
            tolerant = p.flag("allow_sending_without_reply")
        if message_id is None:
            return None
        target = chat.messages.get(int(message_id))
        if target is None and not tolerant:
            raise bad("message to be replied not found")
        return target

    async def _send_message(self, bot: TgBot, p: _Params, call: Call) -> Any:
        chat = self._target(bot, p)
        text, entities = self._formatted(p, "text", "entities", MAX_TEXT, "message is too long")
        if not text.strip():
            raise bad("message text is empty")
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return self._outgoing(bot, chat, p, content)

    async def _edit_text(self, bot: TgBot, p: _Params, call: Call) -> Any:
        if p.has("inline_message_id"):
            raise bad("message to edit not found")
        chat = self._target(bot, p)
        message = chat.messages.get(p.number("message_id", required=True) or 0)
        if message is None:
            raise bad("message to edit not found")
        if message["from"]["id"] != bot.id:
            raise bad("message can't be edited")
        if "text" not in message:
            raise bad("there is no text in the message to edit")
        text, entities = self._formatted(p, "text", "entities", MAX_TEXT, "message is too long")
        if not text.strip():
            raise bad("message text is empty")
        markup = p.json("reply_markup")
        markup = markup if isinstance(markup, dict) and "inline_keyboard" in markup else None
        if text == message["text"] and entities == message.get("entities", []) \
                and markup == message.get("reply_markup"):
            raise bad("message is not modified: specified new message content and reply "
                       "markup are exactly the same as a current content and reply markup "
                       "of the message")
        message["text"] = text
        message.pop("entities", None)
        if entities:
            message["entities"] = entities
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        self.changed()
        return message

    async def _delete_message(self, bot: TgBot, p: _Params, call: Call) -> Any:
        chat = self._target(bot, p)
        if chat.messages.pop(p.number("message_id", required=True) or 0, None) is None:
            raise bad("message to delete not found")
        self.changed()
        return True

    async def _chat_action(self, bot: TgBot, p: _Params, call: Call) -> Any:
        self._target(bot, p)
        if p.text("action") not in _ACTIONS:
            raise bad("wrong parameter action in request")
        return True

    async def _set_reaction(self, bot: TgBot, p: _Params, call: Call) -> Any:
        chat = self._target(bot, p)
        message = chat.messages.get(p.number("message_id", required=True) or 0)
        if message is None:
            raise bad("message to react not found")
        reaction = p.json("reaction")
        message["_reactions"] = reaction if isinstance(reaction, list) else []
        return True

    async def _get_chat(self, bot: TgBot, p: _Params, call: Call) -> Any:
        chat = self._target(bot, p)
        return {**chat.info, "accent_color_id": 0, "max_reaction_count": 11}

    @staticmethod
    def _scope(p: _Params) -> tuple[str, str]:
        scope = p.json("scope")
        key = orjson.dumps(scope, option=orjson.OPT_SORT_KEYS).decode() \
            if isinstance(scope, dict) else '{"type":"default"}'
        return key, p.text("language_code", "") or ""

    async def _set_commands(self, bot: TgBot, p: _Params, call: Call) -> Any:
        commands = p.json("commands")
        if not isinstance(commands, list):
            raise bad("commands is empty")
        if len(commands) > 100:
            raise bad("BOT_COMMANDS_TOO_MUCH")
        clean: list[dict[str, str]] = []
        for command in commands:
            name = str(command.get("command", "")) if isinstance(command, dict) else ""
            description = str(command.get("description", "")) if isinstance(command,
                                                                              dict) else ""
            if not _COMMAND.match(name.lower()):
                raise bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name.lower(), "description": description})
        bot.commands[self._scope(p)] = clean
        return True

    async def _get_commands(self, bot: TgBot, p: _Params, call: Call) -> Any:
        return bot.commands.get(self._scope(p), [])

    async def _delete_commands(self, bot: TgBot, p: _Params, call: Call) -> Any:
        bot.commands.pop(self._scope(p), None)
        return True

    async def _get_file(self, bot: TgBot, p: _Params, call: Call) -> Any:
        stored = bot.files.get(p.text("file_id", "") or "")
        if stored is None:
            raise bad("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD:
            raise bad("file is too big")
        return {**file_fields(stored), "file_path": stored.path}

    def _upload(self, bot: TgBot, p: _Params, name: str) -> StoredFile | Upload:
        value = p.values.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = p.values.get(value[len("attach://"):])
        if isinstance(value, Upload):
            return value
        if isinstance(value, str) and value in bot.files:
            return bot.files[value]
        if not value:
            raise bad(f"there is no {name} in the request")
        raise bad("wrong file identifier/HTTP URL specified")

    def _caption(self, p: _Params) -> dict[str, Any]:
        caption, entities = self._formatted(p, "caption", "caption_entities", MAX_CAPTION,
                                            "message caption is too long")
        content: dict[str, Any] = {}
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        return content

    async def _send_photo(self, bot: TgBot, p: _Params, call: Call) -> Any:
        chat = self._target(bot, p)
        source = self._upload(bot, p, "photo")
        caption = self._caption(p)
        if isinstance(source, Upload):
            photo = bot._photo(source.data)
        else:
            width, height = image_size(source.data)
            photo = {**file_fields(source), "width": width, "height": height}
        return self._outgoing(bot, chat, p, {"photo": [photo], **caption})

    async def _send_document(self, bot: TgBot, p: _Params, call: Call) -> Any:
        chat = self._target(bot, p)
        source = self._upload(bot, p, "document")
        caption = self._caption(p)
        if isinstance(source, Upload):
            document = bot._document(source.data, source.filename or "file",
                                     source.content_type or "application/octet-stream")
        else:
            document = file_fields(source)
        return self._outgoing(bot, chat, p, {"document": document, **caption})


def _error(exc: TgError) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return json_response(body, status=exc.code)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task])
