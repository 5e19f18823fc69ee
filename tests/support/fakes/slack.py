"""A loopback fake of Slack: the Web API, Socket Mode, and an Events API (HTTP) sender.

Point slack-sdk at it::

    async with SlackFake() as fake:
        web = AsyncWebClient(token=fake.bot_token, base_url=fake.api_url)
        socket = SocketModeClient(app_token=fake.app_token, web_client=web)
        ada = fake.user("ada")
        fake.inject_message(fake.im(ada), ada, "hello")      # an events_api envelope

Web API at ``<url>/api/<method>`` (GET or POST; form, JSON or query parameters; token from
``Authorization: Bearer`` or ``token``). Answers are HTTP 200 ``{"ok": true, ...}`` or
``{"ok": false, "error": "<code>"}`` (``not_authed``, ``invalid_auth``,
``not_allowed_token_type``, ``channel_not_found``, ``message_not_found``, ``no_text``,
``msg_too_long``, ``invalid_blocks``, ``already_reacted``...); a rate limit is HTTP 429 with a
``Retry-After`` header and ``{"ok": false, "error": "ratelimited"}``. Methods: ``auth.test``,
``chat.postMessage``, ``chat.update``, ``chat.delete``, ``conversations.info``,
``conversations.replies``, ``users.info``, ``reactions.add``, ``apps.connections.open`` (app
token ``xapp-`` only), ``files.getUploadURLExternal`` + POST to its ``upload_url`` +
``files.completeUploadExternal``.

Socket Mode at the URL ``apps.connections.open`` returns (``ws://127.0.0.1:<port>/link/?ticket=``,
one use per ticket): ``hello`` on connect, then ``events_api`` envelopes of Events API
``event_callback`` payloads. The fake tracks acknowledgements (``{"envelope_id"}``); an envelope
not acknowledged when its connection ends is redelivered on the next connection with
``retry_attempt`` + 1 and ``retry_reason: "timeout"``. ``disconnect(reason)`` sends Slack's
``{"type": "disconnect"}`` frame; ``drop()`` kills the sockets abruptly. Like Slack, the bot's
own posts come back as ``message`` events carrying ``bot_id`` (``echo_bot_messages=False`` turns
that off). The HTTP mode sender lives in :mod:`tests.support.fakes.slack_events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import mimetypes
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.support.fakes.harness import Call, FakeServer, Fault, Upload, json_response, remember
from tests.support.fakes.slack_events import EventsSender, event_callback

__all__ = ["SlackFake", "SlackError"]

MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_PENDING = 10_000
_EMOJI = re.compile(r"^[a-z0-9_+'-]+$")
DEFAULT_SUBSCRIPTIONS = frozenset({"message.channels", "message.groups", "message.im",
                                   "message.mpim", "app_mention"})


class SlackError(Exception):
    """A Web API error answer (HTTP 200, ``ok: false``)."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass(slots=True)
class _Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    attempt: int = 0
    connection: int | None = None
    ever_sent: bool = False

    def frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"envelope_id": self.envelope_id, "payload": self.payload,
                                 "type": self.type,
                                 "accepts_response_payload": self.accepts_response_payload}
        if self.type == "events_api":
            frame["retry_attempt"] = self.attempt
            frame["retry_reason"] = "timeout" if self.attempt else ""
        return frame


@dataclass(slots=True)
class _Connection:
    id: int
    socket: WebSocket
    outbox: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=MAX_PENDING))


Handler = Callable[[dict[str, Any], Call], Awaitable[dict[str, Any]]]


class SlackFake(FakeServer):
    """One workspace with one app (bot user) and its tokens."""

    def __init__(self, *, team_id: str = "T0FAKE001", team: str = "clawgate-test",
                 bot_user_id: str = "U0BOT0001", bot_id: str = "B0BOT0001",
                 app_id: str = "A0APP0001", bot_name: str = "clawgate",
                 bot_token: str = "xoxb-1-fake-bot-token", app_token: str = "xapp-1-A0APP0001-fake",
                 signing_secret: str = "fake-signing-secret", echo_bot_messages: bool = True,
                 subscriptions: frozenset[str] = DEFAULT_SUBSCRIPTIONS,
                 max_messages: int = 10_000) -> None:
        super().__init__()
        self.team_id, self.team, self.app_id = team_id, team, app_id
        self.bot_user_id, self.bot_id, self.bot_name = bot_user_id, bot_id, bot_name
        self.bot_token, self.app_token = bot_token, app_token
        self.signing_secret = signing_secret
        self.echo_bot_messages = echo_bot_messages
        self.subscriptions = set(subscriptions)
        self.max_messages = max_messages
        self.users: dict[str, dict[str, Any]] = {}
        self.conversations: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, OrderedDict[str, dict[str, Any]]] = {}
        self.files: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.pending: OrderedDict[str, _Envelope] = OrderedDict()
        self.acks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.connections: dict[int, _Connection] = {}
        self.events = EventsSender(self)
        self._tickets: OrderedDict[str, None] = OrderedDict()
        self._uploads: OrderedDict[str, str] = OrderedDict()
        self._ids = itertools.count(1)
        self._last_ts = 0.0
        self.user(bot_name, id=bot_user_id, is_bot=True)
        self._methods: dict[str, Handler] = {
            "auth.test": self._auth_test, "chat.postMessage": self._post,
            "chat.update": self._update, "chat.delete": self._delete,
            "conversations.info": self._conversation_info,
            "conversations.replies": self._replies, "users.info": self._user_info,
            "reactions.add": self._react, "apps.connections.open": self._connections_open,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }

    @property
    def api_url(self) -> str:
        """The ``base_url`` for slack-sdk clients (with its trailing slash)."""
        return f"{self.url}/api/"

    def routes(self) -> list[BaseRoute]:
        return [Route("/api/{method}", self._api, methods=["GET", "POST"]),
                Route("/upload/v1/{ticket}", self._upload, methods=["POST"]),
                Route("/files-pri/{team_file}/{name}", self._download, methods=["GET"]),
                WebSocketRoute("/link/", self._socket), WebSocketRoute("/link", self._socket)]

    def fault_response(self, fault: Fault, call: Call) -> Response:
        if fault.kind == "rate_limit":
            return json_response({"ok": False, "error": "ratelimited"}, status=429,
                                 headers={"Retry-After": str(max(1, math.ceil(fault.retry_after)))})
        if fault.kind == "error":
            return json_response({"ok": False, "error": str(fault.code or "internal_error"),
                                  **fault.extra})
        return json_response({"ok": False, "error": "internal_error"}, status=fault.status)

    async def on_stop(self) -> None:
        for connection in list(self.connections.values()):
            with contextlib.suppress(asyncio.QueueFull):
                connection.outbox.put_nowait(None)

    # -- workspace state ---------------------------------------------------------------------

    def _id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):07d}"

    def ts(self) -> str:
        """A new, strictly increasing message timestamp ("seconds.micros")."""
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    def user(self, name: str = "ada", *, id: str | None = None, real_name: str | None = None,
             is_bot: bool = False, tz: str = "Europe/Berlin") -> dict[str, Any]:
        """A workspace member (``users.info`` shape)."""
        user_id = id or self._id("U")
        real = real_name or name.title()
        user = {"id": user_id, "team_id": self.team_id, "name": name, "deleted": False,
                "real_name": real, "tz": tz, "is_bot": is_bot, "is_admin": False,
                "is_app_user": False, "updated": int(time.time()),
                "profile": {"real_name": real, "display_name": name, "team": self.team_id}}
        self.users[user_id] = user
        return user

    def channel(self, name: str = "general", *, private: bool = False,
                member: bool = True) -> dict[str, Any]:
        """A public (``C...``) or private (``G...``) channel; the bot is a member unless
        ``member=False``."""
        return self._conversation(self._id("G" if private else "C"), name=name,
                                  is_channel=not private, is_group=private, is_private=private,
                                  is_member=member)

    def im(self, user: dict[str, Any]) -> dict[str, Any]:
        """The direct-message conversation (``D...``) between the bot and ``user``."""
        existing = next((c for c in self.conversations.values()
                         if c.get("is_im") and c.get("user") == user["id"]), None)
        return existing or self._conversation(self._id("D"), is_im=True, user=user["id"],
                                              is_member=True)

    def _conversation(self, conversation_id: str, **fields: Any) -> dict[str, Any]:
        base = {"id": conversation_id, "created": int(time.time()), "is_archived": False,
                "is_channel": False, "is_group": False, "is_im": False, "is_mpim": False,
                "is_private": False, "is_general": False, "context_team_id": self.team_id}
        conversation = {**base, **fields}
        self.conversations[conversation_id] = conversation
        self.messages[conversation_id] = OrderedDict()
        return conversation

    @staticmethod
    def channel_type(conversation: dict[str, Any]) -> str:
        """The ``channel_type`` Slack puts on message events."""
        if conversation.get("is_im"):
            return "im"
        if conversation.get("is_mpim"):
            return "mpim"
        return "group" if conversation.get("is_private") else "channel"

    def _subscribed(self, channel_type: str) -> bool:
        # Subscription names are plural for channels and groups: message.channels, message.im.
        suffix = {"channel": "channels", "group": "groups"}.get(channel_type, channel_type)
        return f"message.{suffix}" in self.subscriptions

    def history(self, conversation: dict[str, Any] | str) -> list[dict[str, Any]]:
        """The messages in a conversation, oldest first."""
        cid = conversation if isinstance(conversation, str) else conversation["id"]
        return list(self.messages[cid].values())

    def _store(self, channel: str, message: dict[str, Any]) -> dict[str, Any]:
        box = self.messages[channel]
        box[message["ts"]] = message
        while len(box) > self.max_messages:
            box.popitem(last=False)
        thread = message.get("thread_ts")
        parent = box.get(thread) if thread and thread != message["ts"] else None
        if parent is not None:
            parent["thread_ts"] = parent["ts"]
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            users = parent.setdefault("reply_users", [])
            if message.get("user") and message["user"] not in users:
                users.append(message["user"])
            parent["latest_reply"] = message["ts"]
        self.changed()
        return message

    # -- inbound traffic ---------------------------------------------------------------------

    def inject_message(self, conversation: dict[str, Any], user: dict[str, Any], text: str, *,
                       thread_ts: str | None = None) -> dict[str, Any]:
        """A member writes ``text`` (``<@U...>`` in it mentions someone). Delivers a
        ``message`` event when subscribed to ``message.<channel_type>``, and an
        ``app_mention`` event as well when the bot is mentioned outside a DM. Returns the
        stored message."""
        ts = self.ts()
        message: dict[str, Any] = {
            "type": "message", "user": user["id"], "text": text, "ts": ts,
            "team": self.team_id, "client_msg_id": secrets.token_hex(16),
            "blocks": [{"type": "rich_text", "block_id": secrets.token_hex(3), "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}],
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
            parent = self.messages[conversation["id"]].get(thread_ts)
            if parent is not None and parent.get("user"):
                message["parent_user_id"] = parent["user"]
        self._store(conversation["id"], message)
        kind = self.channel_type(conversation)
        event = {**message, "channel": conversation["id"], "event_ts": ts, "channel_type": kind}
        if self._subscribed(kind):
            self.inject_event(event)
        mentioned = f"<@{self.bot_user_id}>" in text
        if kind != "im" and mentioned and "app_mention" in self.subscriptions:
            mention = {k: v for k, v in event.items() if k != "channel_type"}
            self.inject_event({**mention, "type": "app_mention"})
        return message

    def inject_event(self, event: dict[str, Any]) -> str:
        """Deliver an Events API event (wrapped in an ``event_callback``) over Socket Mode;
        returns the envelope id."""
        return self.inject_envelope("events_api", event_callback(self, event))

    def inject_slash_command(self, conversation: dict[str, Any], user: dict[str, Any],
                             command: str, text: str = "") -> str:
        """A ``slash_commands`` envelope (which accepts a response payload in its ack)."""
        payload = {"token": "fake-verification-token", "team_id": self.team_id,
                   "team_domain": self.team, "channel_id": conversation["id"],
                   "channel_name": conversation.get("name", "directmessage"),
                   "user_id": user["id"], "user_name": user["name"], "command": command,
                   "text": text, "api_app_id": self.app_id, "is_enterprise_install": "false",
                   "response_url": f"{self.url}/commands/{secrets.token_hex(6)}",
                   "trigger_id": f"{next(self._ids)}.{secrets.token_hex(6)}"}
        return self.inject_envelope("slash_commands", payload, accepts_response_payload=True)

    def inject_envelope(self, type: str, payload: dict[str, Any], *,
                        accepts_response_payload: bool = False) -> str:
        """Queue a raw Socket Mode envelope and send it to a live connection, if any."""
        envelope = _Envelope(secrets.token_hex(16), type, payload, accepts_response_payload)
        self.pending[envelope.envelope_id] = envelope
        while len(self.pending) > MAX_PENDING:
            self.pending.popitem(last=False)
        target = self._pick()
        if target is not None:
            self._send(target, envelope)
        self.changed()
        return envelope.envelope_id

    def _pick(self) -> _Connection | None:
        # The newest connection gets new envelopes (Slack spreads them; one is enough here).
        return next(reversed(self.connections.values()), None) if self.connections else None

    def _send(self, connection: _Connection, envelope: _Envelope) -> None:
        if envelope.ever_sent:
            envelope.attempt += 1
        envelope.ever_sent = True
        envelope.connection = connection.id
        try:
            connection.outbox.put_nowait(envelope.frame())
        except asyncio.QueueFull:
            envelope.connection = None  # a stuck client: retried on its next connection

    @property
    def unacked(self) -> list[str]:
        """Envelope ids not acknowledged yet, oldest first."""
        return list(self.pending)

    async def disconnect(self, reason: str = "refresh_requested", *,
                         close: bool | None = None) -> None:
        """Send ``{"type": "disconnect", "reason": reason}`` to every connection; close them
        afterwards unless ``reason`` is ``"warning"`` (or ``close`` says otherwise)."""
        frame = {"type": "disconnect", "reason": reason,
                 "debug_info": {"host": "applink-fake-1"}}
        closing = reason != "warning" if close is None else close
        for connection in list(self.connections.values()):
            with contextlib.suppress(asyncio.QueueFull):
                connection.outbox.put_nowait(frame)
                if closing:
                    connection.outbox.put_nowait(None)

    def drop(self) -> int:
        """Kill every Socket Mode connection abruptly (no close frame); returns how many."""
        return sum(self.abort(connection.socket.client) for connection in
                   list(self.connections.values()))

    # -- Socket Mode -------------------------------------------------------------------------

    async def _socket(self, ws: WebSocket) -> None:
        ticket = ws.query_params.get("ticket", "")
        call = self.record("socket:connect", path=ws.url.path, headers=ws.headers,
                           query=ws.query_params)
        if ticket not in self._tickets or self.take_fault(call) is not None:
            await ws.close(code=1008)  # refused during the handshake (HTTP 403)
            return
        self._tickets.pop(ticket, None)
        await ws.accept()
        connection = _Connection(next(self._ids), ws)
        self.connections[connection.id] = connection
        await ws.send_text(orjson.dumps({
            "type": "hello", "num_connections": len(self.connections),
            "debug_info": {"host": "applink-fake-1", "build_number": 1,
                           "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id}}).decode())
        for envelope in list(self.pending.values()):
            if envelope.connection is None or envelope.connection not in self.connections:
                self._send(connection, envelope)
        self.changed()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._writer(connection))
                group.create_task(self._reader(connection))
        finally:
            self.connections.pop(connection.id, None)
            orphans = [e for e in self.pending.values() if e.connection == connection.id]
            for envelope in orphans:
                envelope.connection = None
            successor = self._pick()
            if successor is not None:
                for envelope in orphans:
                    self._send(successor, envelope)
            self.record("socket:closed", path=ws.url.path)

    async def _writer(self, connection: _Connection) -> None:
        while True:
            frame = await connection.outbox.get()
            try:
                if frame is None:
                    await connection.socket.close(code=1000)
                    return
                await connection.socket.send_text(orjson.dumps(frame).decode())
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the peer is gone; the reader sees it too

    async def _reader(self, connection: _Connection) -> None:
        while True:
            message = await connection.socket.receive()
            if message["type"] == "websocket.disconnect":
                with contextlib.suppress(asyncio.QueueFull):
                    connection.outbox.put_nowait(None)  # ends the writer
                return
            raw = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self.record("socket:garbage", body=raw)
                continue
            envelope_id = frame.get("envelope_id") if isinstance(frame, dict) else None
            if envelope_id:
                self.pending.pop(envelope_id, None)
                self.acks[envelope_id] = frame
                while len(self.acks) > MAX_PENDING:
                    self.acks.popitem(last=False)
                self.record("socket:ack", body=frame)
            else:
                self.record("socket:message", body=frame)

    # -- Web API -----------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        call, fault = await self.admit(request, method)
        if fault is not None:
            return fault
        params: dict[str, Any] = {**call.query, **(call.body if isinstance(call.body, dict)
                                                      else {})}
        try:
            handler = self._methods.get(method)
            if handler is None:
                raise SlackError("unknown_method", req_method=method)
            self._authorize(request, params, method)
            result = await handler(params, call)
        except SlackError as exc:
            return json_response({"ok": False, "error": exc.error, **exc.extra})
        return json_response({"ok": True, **result})

    def _authorize(self, request: Request, params: dict[str, Any], method: str) -> None:
        header = request.headers.get("authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else params.get("token")
        if not token:
            raise SlackError("not_authed")
        if token not in (self.bot_token, self.app_token):
            raise SlackError("invalid_auth")
        wants_app = method == "apps.connections.open"
        if wants_app != (token == self.app_token):
            raise SlackError("not_allowed_token_type")

    def _conversation_of(self, params: dict[str, Any], key: str = "channel") -> dict[str, Any]:
        cid = str(params.get(key) or "")
        if cid in self.users:  # posting to a user id writes to the DM with them
            return self.im(self.users[cid])
        conversation = self.conversations.get(cid) or next(
            (c for c in self.conversations.values() if c.get("name") == cid.lstrip("#")), None)
        if conversation is None:
            raise SlackError("channel_not_found")
        return conversation

    def _message_of(self, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        conversation = self._conversation_of(params)
        message = self.messages[conversation["id"]].get(str(params.get("ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        return conversation, message

    @staticmethod
    def _json_param(params: dict[str, Any], key: str) -> Any:
        value = params.get(key)
        if isinstance(value, str) and value:
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                raise SlackError(f"invalid_{key}") from None
        return value

    def _content(self, params: dict[str, Any]) -> dict[str, Any]:
        text = params.get("text")
        blocks = self._json_param(params, "blocks")
        attachments = self._json_param(params, "attachments")
        if blocks is not None and (not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS or
                                   not all(isinstance(b, dict) and "type" in b for b in blocks)):
            raise SlackError("invalid_blocks")
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        if text and len(str(text)) > MAX_TEXT:
            raise SlackError("msg_too_long")
        content: dict[str, Any] = {"text": str(text or "")}
        if blocks:
            content["blocks"] = blocks
        if attachments:
            content["attachments"] = attachments
        return content

    def _bot_message(self, content: dict[str, Any], ts: str) -> dict[str, Any]:
        return {"user": self.bot_user_id, "type": "message", "ts": ts, "bot_id": self.bot_id,
                "app_id": self.app_id, "team": self.team_id, **content,
                "bot_profile": {"id": self.bot_id, "app_id": self.app_id, "name": self.bot_name,
                                "deleted": False, "team_id": self.team_id, "icons": {},
                                "updated": int(time.time())}}

    async def _auth_test(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        return {"url": f"https://{self.team}.slack.com/", "team": self.team,
                "user": self.bot_name, "team_id": self.team_id, "user_id": self.bot_user_id,
                "bot_id": self.bot_id, "is_enterprise_install": False}

    async def _post(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        conversation = self._conversation_of(params)
        if not conversation.get("is_member"):
            raise SlackError("not_in_channel")
        content = self._content(params)
        message = self._bot_message(content, self.ts())
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
        self._store(conversation["id"], message)
        self._echo(conversation, message)
        return {"channel": conversation["id"], "ts": message["ts"], "message": message}

    def _echo(self, conversation: dict[str, Any], message: dict[str, Any]) -> None:
        kind = self.channel_type(conversation)
        if self.echo_bot_messages and self._subscribed(kind):
            self.inject_event({**message, "channel": conversation["id"],
                               "event_ts": message["ts"], "channel_type": kind})

    async def _update(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        conversation, message = self._message_of(params)
        if message.get("bot_id") != self.bot_id:
            raise SlackError("cant_update_message")
        content = self._content(params)
        message.pop("blocks", None)
        message.update(content)
        message["edited"] = {"user": self.bot_user_id, "ts": self.ts()}
        self.changed()
        return {"channel": conversation["id"], "ts": message["ts"], "text": message["text"],
                "message": message}

    async def _delete(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        conversation, message = self._message_of(params)
        if message.get("bot_id") != self.bot_id:
            raise SlackError("cant_delete_message")
        del self.messages[conversation["id"]][message["ts"]]
        self.changed()
        return {"channel": conversation["id"], "ts": message["ts"]}

    async def _conversation_info(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        return {"channel": self._conversation_of(params)}

    async def _replies(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        conversation, parent = self._message_of(params)
        thread = [m for m in self.messages[conversation["id"]].values()
                  if m["ts"] == parent["ts"] or m.get("thread_ts") == parent["ts"]]
        return {"messages": thread, "has_more": False}

    async def _user_info(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        user = self.users.get(str(params.get("user") or ""))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    async def _react(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        name = str(params.get("name") or "").strip(":")
        if not _EMOJI.match(name):
            raise SlackError("invalid_name")
        params = {**params, "ts": params.get("timestamp")}
        _, message = self._message_of(params)
        reactions = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is not None and self.bot_user_id in entry["users"]:
            raise SlackError("already_reacted")
        if entry is None:
            reactions.append({"name": name, "users": [self.bot_user_id], "count": 1})
        else:
            entry["users"].append(self.bot_user_id)
            entry["count"] += 1
        self.changed()
        return {}

    async def _connections_open(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        ticket = secrets.token_hex(16)
        remember(self._tickets, ticket, None)
        return {"url": f"{self.ws_url}/link/?ticket={ticket}&app_id={self.app_id}"}

    async def _upload_url(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        filename, length = params.get("filename"), params.get("length")
        if not filename or not str(length or "").isdigit():
            raise SlackError("invalid_arguments")
        file_id = self._id("F")
        ticket = secrets.token_hex(12)
        remember(self._uploads, ticket, file_id)
        remember(self.files, file_id, {"id": file_id, "name": str(filename),
                                       "title": str(filename), "size": int(str(length)),
                                       "data": None})
        return {"upload_url": f"{self.url}/upload/v1/{ticket}", "file_id": file_id}

    async def _upload(self, request: Request) -> Response:
        call, fault = await self.admit(request, "files.upload")
        if fault is not None:
            return fault
        file_id = self._uploads.pop(request.path_params["ticket"], None)
        if file_id is None:
            return PlainTextResponse("Not Found", status_code=404)
        body = call.body
        part = body.get("file") if isinstance(body, dict) else None
        # slack-sdk POSTs the raw bytes; a browser-style multipart "file" part works too.
        data = part.data if isinstance(part, Upload) else body if isinstance(body, bytes) else b""
        if file_id not in self.files:
            return PlainTextResponse("Not Found", status_code=404)
        self.files[file_id]["data"] = data
        return PlainTextResponse(f"OK - {len(data)}")

    async def _complete_upload(self, params: dict[str, Any], call: Call) -> dict[str, Any]:
        items = self._json_param(params, "files")
        if not isinstance(items, list) or not items:
            raise SlackError("invalid_arguments")
        shared: list[dict[str, Any]] = []
        for item in items:
            stored = self.files.get(str(item.get("id"))) if isinstance(item, dict) else None
            if stored is None or stored["data"] is None:
                raise SlackError("file_not_found")
            if item.get("title"):
                stored["title"] = str(item["title"])
            shared.append({"id": stored["id"], "title": stored["title"]})
        if params.get("channel_id"):
            conversation = self._conversation_of(params, "channel_id")
            message = self._bot_message({"text": str(params.get("initial_comment") or ""),
                                         "files": [self.file_object(f["id"]) for f in shared],
                                         "upload": True}, self.ts())
            if params.get("thread_ts"):
                message["thread_ts"] = str(params["thread_ts"])
            self._store(conversation["id"], message)
        return {"files": shared}

    def file_object(self, file_id: str) -> dict[str, Any]:
        """The ``file`` object of an uploaded file (with its private download URL)."""
        stored = self.files[file_id]
        url = f"{self.url}/files-pri/{self.team_id}-{file_id}/{stored['name']}"
        # Slack's file objects carry the MIME type (and a short filetype) of the file.
        mime = mimetypes.guess_type(stored["name"])[0] or "application/octet-stream"
        return {"id": file_id, "name": stored["name"], "title": stored["title"],
                "mimetype": mime, "filetype": stored["name"].rsplit(".", 1)[-1].lower(),
                "size": len(stored["data"] or b""), "url_private": url,
                "url_private_download": url}

    async def _download(self, request: Request) -> Response:
        call, fault = await self.admit(request, "files.download")
        if fault is not None:
            return fault
        if request.headers.get("authorization") != f"Bearer {self.bot_token}":
            return PlainTextResponse("Unauthorized", status_code=403)
        file_id = request.path_params["team_file"].rsplit("-", 1)[-1]
        stored = self.files.get(file_id)
        if stored is None or stored["data"] is None:
            return PlainTextResponse("Not Found", status_code=404)
        return Response(stored["data"], media_type="application/octet-stream")

    def inject_file(self, conversation: dict[str, Any], user: dict[str, Any], data: bytes, *,
                    name: str = "file.bin", text: str = "") -> dict[str, Any]:
        """A member shares a file: a ``message`` event with subtype ``file_share`` whose
        ``files[0].url_private`` the bot token can download."""
        file_id = self._id("F")
        remember(self.files, file_id, {"id": file_id, "name": name, "title": name,
                                       "size": len(data), "data": data})
        ts = self.ts()
        message = {"type": "message", "subtype": "file_share", "user": user["id"], "text": text,
                   "ts": ts, "team": self.team_id, "upload": True,
                   "files": [self.file_object(file_id)]}
        self._store(conversation["id"], message)
        kind = self.channel_type(conversation)
        if self._subscribed(kind):
            self.inject_event({**message, "channel": conversation["id"], "event_ts": ts,
                               "channel_type": kind})
        return message
