"""A loopback fake of Discord (REST v10 and the Gateway) for hikari.

Why hikari and not discord.py (DESIGN.md I6, no process-global mutable state): the test is
whether one client can be pointed at the fake without changing anything shared by every client
in the process. hikari passes: ``hikari.GatewayBot(token, rest_url=f"{fake.url}/api/v10")``
(and ``hikari.RESTApp(url=...)`` for REST alone) is per instance, and the gateway URL
comes from that instance's ``GET /gateway/bot``, then READY's ``resume_gateway_url``. Its
remaining process-wide effects are opt-outs: pass ``logs=None`` (else it configures the root
logger), ``banner=None``, ``suppress_optimization_warning=True`` and
``start(check_for_updates=False)`` (else a dangling task asks PyPI for updates). discord.py 2.7
fails the test: its REST root is the class variable ``discord.http.Route.BASE`` (read by every
``Route`` any client builds, including ``GET /gateway/bot``), and a non-sharded ``Client``
connects to the class attribute ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``, to which
it also returns after INVALID_SESSION.

Usage::

    async with DiscordFake() as fake:
        guild = fake.guild("Test")
        general = fake.text_channel(guild, "general")
        bot = hikari.GatewayBot(fake.token, rest_url=fake.rest_url, logs=None, banner=None,
                                intents=hikari.Intents.ALL_UNPRIVILEGED
                                | hikari.Intents.MESSAGE_CONTENT)
        await bot.start(check_for_updates=False)
        fake.inject_message(general, fake.user("ada"), "hello")   # MESSAGE_CREATE

REST at ``<url>/api/v10`` (``Authorization: Bot <token>``, else 401 ``{"message": "401:
Unauthorized", "code": 0}``): ``GET /gateway``, ``GET /gateway/bot``, ``GET /users/@me``,
``GET /applications/@me``, ``POST /users/@me/channels`` (open a DM), ``GET /channels/{id}``,
``POST /channels/{id}/messages`` (JSON or multipart ``payload_json`` + ``files[n]``; content over
2000 characters is 400 ``{"code": 50035, "message": "Invalid Form Body", "errors": ...}``; a
``nonce`` with ``enforce_nonce`` seen before in the channel returns that message, creating none),
``PATCH``/``DELETE /channels/{id}/messages/{mid}``, ``POST /channels/{id}/typing``,
``POST /channels/{id}/messages/{mid}/threads``, ``PUT .../reactions/{emoji}/@me``. Every channel
route reports its bucket (``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket/Scope``) and
really enforces ``route_limit`` requests per ``route_window`` seconds per channel, answering 429
``{"message", "retry_after" (float seconds), "global"}`` with ``Retry-After``. Messages the bot
sends come back as gateway events, as on Discord. See :mod:`discord_gateway` for the Gateway.
"""

from __future__ import annotations

import datetime
import hashlib
import http
import itertools
import math
import re
import time
from collections import OrderedDict
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from tests.support.fakes.discord_gateway import Gateway, Intent, Session
from tests.support.fakes.harness import Call, FakeServer, Fault, Upload, json_response, remember

__all__ = ["DiscordFake", "Intent"]

DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_CONTENT = 2000
_MENTION = re.compile(r"<@!?(\d+)>")
_API = "/api/v10"


class DiscordError(Exception):
    """A REST error answer: HTTP ``status`` with ``{"message", "code"[, "errors"]}``."""

    def __init__(self, status: int, code: int, message: str,
                 errors: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors


def _form_error(field_name: str, code: str, message: str) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body",
                        {field_name: {"_errors": [{"code": code, "message": message}]}})


def _iso(ts: float | None = None) -> str:
    moment = datetime.datetime.fromtimestamp(time.time() if ts is None else ts, datetime.UTC)
    return moment.isoformat(timespec="microseconds")


class DiscordFake(FakeServer):
    """One bot application, its guilds, channels, users and messages."""

    def __init__(self, *, token: str = "MTAwMDAwMDAwMDAwMDAwMDAx.fake.bot-token-for-tests",
                 username: str = "clawgate", privileged_intents: int = Intent.PRIVILEGED,
                 heartbeat_interval_ms: int = 41_250, route_limit: int = 1000,
                 route_window: float = 1.0, max_messages: int = 10_000) -> None:
        super().__init__()
        self.token = token
        self.privileged_intents = privileged_intents
        self.route_limit, self.route_window = route_limit, route_window
        self.max_messages = max_messages
        self._counter = itertools.count(1)
        self.application_id = self.snowflake()
        self.bot_user = self._user_object(self.application_id, username, bot=True)
        self.users: dict[str, dict[str, Any]] = {self.bot_user["id"]: self.bot_user}
        self.guilds: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, OrderedDict[str, dict[str, Any]]] = {}
        self.attachments: OrderedDict[str, bytes] = OrderedDict()
        self.gateway = Gateway(self, heartbeat_interval_ms=heartbeat_interval_ms)
        self._buckets: dict[tuple[str, str], tuple[float, int]] = {}
        self._nonces: OrderedDict[tuple[str, str], str] = OrderedDict()  # (channel, nonce) -> id

    @property
    def rest_url(self) -> str:
        """``rest_url`` for hikari: ``<url>/api/v10``."""
        return self.url + _API

    def routes(self) -> list[BaseRoute]:
        api = [
            ("GET", "/gateway", self._gateway), ("GET", "/gateway/bot", self._gateway_bot),
            ("GET", "/users/@me", self._me), ("GET", "/applications/@me", self._application),
            ("POST", "/users/@me/channels", self._open_dm),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("POST", "/channels/{channel_id}/messages", self._create_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            ("POST", "/channels/{channel_id}/messages/{message_id}/threads", self._thread),
            ("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me",
             self._react),
        ]
        routes: list[BaseRoute] = [
            Route(_API + path, self._endpoint(verb, path, handler), methods=[verb])
            for verb, path, handler in api]
        routes += [Route(_API + "/{rest:path}", self._unknown,
                         methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
                   Route("/attachments/{channel_id}/{attachment_id}/{filename}",
                         self._attachment, methods=["GET"]),
                   WebSocketRoute("/gateway", self._socket),
                   WebSocketRoute("/resume", self._socket)]
        return routes

    async def _socket(self, ws: WebSocket) -> None:
        await self.gateway.serve(ws)

    def fault_response(self, fault: Fault, call: Call) -> Response:
        if fault.kind == "rate_limit":
            is_global = bool(fault.extra.get("global"))
            return self._too_many(call, fault.retry_after, is_global=is_global)
        if fault.kind == "error":
            return _error(DiscordError(fault.status, int(fault.code or 0),
                                       fault.message or http.HTTPStatus(fault.status).phrase,
                                       fault.extra.get("errors")))
        return _error(DiscordError(fault.status, 0,
                                   f"{fault.status}: {http.HTTPStatus(fault.status).phrase}"))

    async def on_stop(self) -> None:
        self.gateway.stop()

    # -- entities ----------------------------------------------------------------------------

    def snowflake(self, at: float | None = None) -> str:
        """A new snowflake id (timestamp-based, unique within this fake)."""
        ms = int((time.time() if at is None else at) * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._counter) & 0x3FFFFF))

    @staticmethod
    def _user_object(user_id: str, name: str, *, bot: bool = False) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "username": name, "discriminator": "0",
                                "global_name": name.title(), "avatar": None, "public_flags": 0}
        if bot:
            user.update(bot=True, verified=True, mfa_enabled=False, flags=0, locale="en-US")
        return user

    def user(self, name: str = "ada") -> dict[str, Any]:
        """A human user."""
        user = self._user_object(self.snowflake(), name)
        self.users[user["id"]] = user
        return user

    def guild(self, name: str = "Test Guild", *, owner: dict[str, Any] | None = None,
              members: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A guild the bot is in (sent as GUILD_CREATE to sessions identified later)."""
        guild_id = self.snowflake()
        owner_id = (owner or self.bot_user)["id"]
        everyone = {"id": guild_id, "name": "@everyone", "color": 0, "hoist": False,
                    "icon": None, "unicode_emoji": None, "position": 0,
                    "permissions": str((1 << 41) - 1), "managed": False, "mentionable": False,
                    "flags": 0}
        guild: dict[str, Any] = {
            "id": guild_id, "name": name, "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": owner_id, "afk_channel_id": None, "afk_timeout": 300,
            "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "roles": [everyone], "emojis": [], "stickers": [],
            "features": [], "mfa_level": 0, "application_id": None,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "vanity_url_code": None, "description": None, "banner": None, "premium_tier": 0,
            "premium_subscription_count": 0, "preferred_locale": "en-US",
            "public_updates_channel_id": None, "nsfw_level": 0, "max_video_channel_users": 25,
            "premium_progress_bar_enabled": False, "safety_alerts_channel_id": None,
            "joined_at": _iso(), "large": False, "unavailable": False, "member_count": 0,
            "voice_states": [], "members": [], "channels": [], "threads": [], "presences": [],
            "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }
        self.guilds[guild_id] = guild
        for person in [self.bot_user, *(members or [])]:
            self.add_member(guild, person, announce=False)
        # The bot joining a guild: live sessions get GUILD_CREATE now, later ones in READY.
        self.gateway.dispatch("GUILD_CREATE", self._guild_snapshot(guild), intent=Intent.GUILDS)
        return guild

    @staticmethod
    def _guild_snapshot(guild: dict[str, Any]) -> dict[str, Any]:
        # Frames stay as they were sent even if the guild changes later (RESUME replays them).
        return {**guild, **{key: list(guild[key]) for key in ("roles", "members", "channels",
                                                              "threads")}}

    def add_member(self, guild: dict[str, Any], user: dict[str, Any], *,
                   announce: bool = True) -> dict[str, Any]:
        """Make ``user`` a member of ``guild`` (GUILD_MEMBER_ADD to sessions with the
        GUILD_MEMBERS intent)."""
        member: dict[str, Any] = {
            "user": user, "nick": None, "avatar": None, "roles": [], "joined_at": _iso(),
            "premium_since": None, "deaf": False, "mute": False, "flags": 0, "pending": False,
            "communication_disabled_until": None}
        guild["members"].append(member)
        guild["member_count"] = len(guild["members"])
        if announce:
            self.gateway.dispatch("GUILD_MEMBER_ADD", {**member, "guild_id": guild["id"]},
                                  intent=Intent.GUILD_MEMBERS)
        return member

    def _member_of(self, guild_id: str | None, user_id: str) -> dict[str, Any] | None:
        guild = self.guilds.get(guild_id or "")
        if guild is None:
            return None
        return next((m for m in guild["members"] if m["user"]["id"] == user_id), None)

    def text_channel(self, guild: dict[str, Any], name: str = "general") -> dict[str, Any]:
        """A guild text channel (type 0)."""
        channel = {"id": self.snowflake(), "type": 0, "guild_id": guild["id"],
                   "position": len(guild["channels"]), "permission_overwrites": [],
                   "name": name, "topic": None, "nsfw": False, "last_message_id": None,
                   "rate_limit_per_user": 0, "parent_id": None, "flags": 0}
        guild["channels"].append(channel)
        self._add_channel(channel)
        self.gateway.dispatch("CHANNEL_CREATE", dict(channel), intent=Intent.GUILDS)
        return channel

    def dm(self, user: dict[str, Any]) -> dict[str, Any]:
        """The DM channel (type 1) between the bot and ``user``."""
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == user["id"]:
                return channel
        return self._add_channel({"id": self.snowflake(), "type": 1, "last_message_id": None,
                                  "recipients": [user], "flags": 0})

    def thread(self, parent: dict[str, Any], name: str, *, owner: dict[str, Any] | None = None,
               thread_id: str | None = None) -> dict[str, Any]:
        """A public thread (type 11) under a guild text channel; THREAD_CREATE is sent."""
        guild = self.guilds[parent["guild_id"]]
        now = _iso()
        thread = {"id": thread_id or self.snowflake(), "type": 11, "guild_id": guild["id"],
                  "parent_id": parent["id"], "owner_id": (owner or self.bot_user)["id"],
                  "name": name, "last_message_id": None, "message_count": 0,
                  "member_count": 1, "total_message_sent": 0, "rate_limit_per_user": 0,
                  "flags": 0, "applied_tags": [],
                  "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                      "archive_timestamp": now, "locked": False,
                                      "invitable": True, "create_timestamp": now}}
        guild["threads"].append(thread)
        self._add_channel(thread)
        self.gateway.dispatch("THREAD_CREATE", {**thread, "newly_created": True},
                              intent=Intent.GUILDS)
        return thread

    def _add_channel(self, channel: dict[str, Any]) -> dict[str, Any]:
        self.channels[channel["id"]] = channel
        self.messages[channel["id"]] = OrderedDict()
        return channel

    def history(self, channel: dict[str, Any] | str) -> list[dict[str, Any]]:
        """Messages in a channel, oldest first."""
        cid = channel if isinstance(channel, str) else channel["id"]
        return list(self.messages[cid].values())

    # -- messages ----------------------------------------------------------------------------

    def _message(self, channel: dict[str, Any], author: dict[str, Any], content: str, *,
                 reference: dict[str, Any] | None = None,
                 attachments: list[dict[str, Any]] | None = None,
                 embeds: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        mentioned = [self.users[uid] for uid in dict.fromkeys(_MENTION.findall(content))
                     if uid in self.users]
        message: dict[str, Any] = {
            "id": self.snowflake(), "channel_id": channel["id"], "author": author,
            "content": content, "timestamp": _iso(), "edited_timestamp": None, "tts": False,
            "mention_everyone": "@everyone" in content, "mentions": mentioned,
            "mention_roles": [], "attachments": attachments or [], "embeds": embeds or [],
            "pinned": False, "type": 0, "flags": 0, "components": [],
        }
        if reference is not None:
            message["type"] = 19
            message["message_reference"] = {"type": 0, "message_id": reference["id"],
                                            "channel_id": reference["channel_id"]}
            if channel.get("guild_id"):
                message["message_reference"]["guild_id"] = channel["guild_id"]
            message["referenced_message"] = {k: v for k, v in reference.items()
                                             if k != "referenced_message"}
        if channel.get("guild_id"):
            message["guild_id"] = channel["guild_id"]
        if channel["type"] in (10, 11, 12):
            channel["message_count"] += 1
            channel["total_message_sent"] += 1
            message["position"] = channel["total_message_sent"] - 1
        box = self.messages[channel["id"]]
        box[message["id"]] = message
        while len(box) > self.max_messages:
            box.popitem(last=False)
        channel["last_message_id"] = message["id"]
        self.gateway.dispatch("MESSAGE_CREATE", lambda s: self._as_seen(s, message),
                              intent=self._message_intent(channel))
        self.changed()
        return message

    @staticmethod
    def _message_intent(channel: dict[str, Any]) -> int:
        return Intent.GUILD_MESSAGES if channel.get("guild_id") else Intent.DIRECT_MESSAGES

    def _as_seen(self, session: Session, message: dict[str, Any]) -> dict[str, Any]:
        """The MESSAGE_CREATE payload for one session: guild messages gain ``member``; without
        MESSAGE_CONTENT, guild messages that neither mention the bot nor come from it arrive
        with empty content, embeds, attachments and components (Discord's rule)."""
        payload = dict(message)
        member = self._member_of(message.get("guild_id"), message["author"]["id"])
        if member is not None:
            payload["member"] = {k: v for k, v in member.items() if k != "user"}
        own = message["author"]["id"] == self.bot_user["id"]
        mentioned = any(u["id"] == self.bot_user["id"] for u in message["mentions"])
        if message.get("guild_id") and not session.intents & Intent.MESSAGE_CONTENT \
                and not own and not mentioned:
            payload.update(content="", embeds=[], attachments=[], components=[])
        return payload

    def inject_message(self, channel: dict[str, Any], author: dict[str, Any], content: str, *,
                       reply_to: dict[str, Any] | None = None,
                       files: list[Upload] | None = None) -> dict[str, Any]:
        """A user writes in ``channel`` (``<@id>`` in ``content`` mentions; ``files`` become
        attachments served at their CDN ``url``); MESSAGE_CREATE goes to every session with
        the channel's intent. Returns the stored message."""
        if channel.get("guild_id") and self._member_of(channel["guild_id"],
                                                       author["id"]) is None:
            self.add_member(self.guilds[channel["guild_id"]], author)
        return self._message(channel, author, content, reference=reply_to,
                             attachments=self._attachments(channel, files or []))

    def identified(self, session: Session) -> None:
        """Called by the gateway after a good IDENTIFY: send READY and the guilds."""
        ready = {"v": 10, "user": self.bot_user, "user_settings": {},
                 "guilds": [{"id": gid, "unavailable": True} for gid in self.guilds],
                 "private_channels": [], "relationships": [], "presences": [],
                 "guild_join_requests": [], "geo_ordered_rtc_regions": ["fake"],
                 "session_id": session.id, "session_type": "normal",
                 "resume_gateway_url": self.gateway.resume_url, "shard": session.shard,
                 "application": {"id": self.application_id, "flags": 1 << 19},
                 "_trace": ["fake-gateway"]}
        self.gateway.send_ready(session, ready,
                                [self._guild_snapshot(g) for g in self.guilds.values()])
        self.changed()

    # -- REST --------------------------------------------------------------------------------

    def _endpoint(self, verb: str, path: str, handler: Any) -> Any:
        name = f"{verb} {path}"

        async def endpoint(request: Request) -> Response:
            call, fault = await self.admit(request, name)
            if fault is not None:
                return fault
            try:
                if request.headers.get("authorization") != f"Bot {self.token}":
                    raise DiscordError(401, 0, "401: Unauthorized")
                limited = self._spend(call, request)
                if isinstance(limited, Response):
                    return limited
                result = await handler(request, call)
            except DiscordError as exc:
                return _error(exc, self._bucket_headers(call, request))
            headers = limited or {}
            if result is None:
                return Response(status_code=204, headers=headers)
            return json_response(result, headers=headers)

        return endpoint

    def _bucket_id(self, call: Call) -> str:
        return hashlib.sha1(call.name.encode()).hexdigest()[:16]

    def _spend(self, call: Call, request: Request) -> dict[str, str] | Response | None:
        """Count the request against its (route, channel) bucket; 429 once it is empty."""
        channel = request.path_params.get("channel_id")
        if channel is None:
            return None
        key = (call.name, channel)
        now = time.monotonic()
        started, used = self._buckets.get(key, (now, 0))
        if now - started >= self.route_window:
            started, used = now, 0
        if used >= self.route_limit:
            return self._too_many(call, self.route_window - (now - started), is_global=False)
        self._buckets[key] = (started, used + 1)
        return self._bucket_headers(call, request)

    def _bucket_headers(self, call: Call, request: Request) -> dict[str, str]:
        if request.path_params.get("channel_id") is None:
            return {}
        now = time.monotonic()
        started, used = self._buckets.get((call.name, request.path_params["channel_id"]),
                                          (now, 0))
        reset_after = max(0.0, self.route_window - (now - started))
        return {"X-RateLimit-Limit": str(self.route_limit),
                "X-RateLimit-Remaining": str(max(0, self.route_limit - used)),
                "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": self._bucket_id(call)}

    def _too_many(self, call: Call, retry_after: float, *, is_global: bool) -> Response:
        retry_after = max(retry_after, 0.001)
        headers = {"Retry-After": str(math.ceil(retry_after)),
                   "X-RateLimit-Limit": str(self.route_limit), "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                   "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                   "X-RateLimit-Bucket": self._bucket_id(call),
                   "X-RateLimit-Scope": "global" if is_global else "user"}
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": round(retry_after, 3),
                "global": is_global}
        return json_response(body, status=429, headers=headers)

    async def _unknown(self, request: Request) -> Response:
        await self.record_request(request, f"{request.method} /{request.path_params['rest']}")
        return _error(DiscordError(404, 0, "404: Not Found"))

    async def _gateway(self, request: Request, call: Call) -> Any:
        return {"url": self.gateway.url}

    async def _gateway_bot(self, request: Request, call: Call) -> Any:
        return {"url": self.gateway.url, "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999,
                                        "reset_after": 14_400_000, "max_concurrency": 1}}

    async def _me(self, request: Request, call: Call) -> Any:
        return self.bot_user

    async def _application(self, request: Request, call: Call) -> Any:
        return {"id": self.application_id, "name": self.bot_user["username"], "icon": None,
                "description": "", "bot_public": True, "bot_require_code_grant": False,
                "verify_key": "00" * 32, "flags": 1 << 19, "bot": self.bot_user,
                "owner": self.bot_user, "team": None, "summary": "", "rpc_origins": [],
                "redirect_uris": [], "tags": []}

    async def _open_dm(self, request: Request, call: Call) -> Any:
        body = call.body if isinstance(call.body, dict) else {}
        user = self.users.get(str(body.get("recipient_id")))
        if user is None:
            raise DiscordError(400, 50035, "Invalid Form Body",
                               {"recipient_id": {"_errors": [{"code": "NUMBER_TYPE_COERCE",
                                                              "message": "Unknown user"}]}})
        return self.dm(user)

    def _channel(self, request: Request) -> dict[str, Any]:
        channel = self.channels.get(request.path_params["channel_id"])
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        return channel

    def _stored(self, request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
        channel = self._channel(request)
        message = self.messages[channel["id"]].get(request.path_params["message_id"])
        if message is None:
            raise DiscordError(404, 10008, "Unknown Message")
        return channel, message

    async def _get_channel(self, request: Request, call: Call) -> Any:
        return self._channel(request)

    def _payload(self, call: Call) -> tuple[dict[str, Any], list[Upload]]:
        body = call.body
        if isinstance(body, dict) and "payload_json" in body:
            raw = body["payload_json"]
            raw = raw.data if isinstance(raw, Upload) else raw
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise DiscordError(400, 50109, "The request body contains invalid JSON.") \
                    from None
            files = [v for k, v in body.items() if k.startswith("files[") and
                     isinstance(v, Upload)]
            return payload, files
        if isinstance(body, bytes):
            raise DiscordError(400, 50109, "The request body contains invalid JSON.")
        return (body if isinstance(body, dict) else {}), []

    def _attachments(self, channel: dict[str, Any], files: list[Upload]) -> list[dict[str, Any]]:
        result = []
        for upload in files:
            attachment_id = self.snowflake()
            name = upload.filename or "file"
            remember(self.attachments, attachment_id, upload.data)
            url = f"{self.url}/attachments/{channel['id']}/{attachment_id}/{name}"
            result.append({"id": attachment_id, "filename": name, "size": len(upload.data),
                           "url": url, "proxy_url": url, "content_type": upload.content_type})
        return result

    def _check_content(self, payload: dict[str, Any]) -> str:
        content = payload.get("content")
        content = "" if content is None else str(content)
        if len(content) > MAX_CONTENT:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH",
                              f"Must be {MAX_CONTENT} or fewer in length.")
        return content

    async def _create_message(self, request: Request, call: Call) -> Any:
        channel = self._channel(request)
        payload, files = self._payload(call)
        content = self._check_content(payload)
        nonce = payload.get("nonce")
        if nonce is not None and len(str(nonce)) > 25:
            raise _form_error("nonce", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if nonce is not None and payload.get("enforce_nonce"):
            # Discord: a nonce seen recently from the same author returns that message and
            # creates nothing (the fake remembers the last MAX_ENTRIES nonces).
            earlier = self._nonces.get((channel["id"], str(nonce)))
            if earlier is not None and earlier in self.messages[channel["id"]]:
                return self.messages[channel["id"]][earlier]
        embeds = payload.get("embeds") or []
        if not content and not embeds and not files and not payload.get("sticker_ids"):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        reference = None
        wanted = payload.get("message_reference")
        if isinstance(wanted, dict) and wanted.get("message_id"):
            box: dict[str, dict[str, Any]] = self.messages.get(
                str(wanted.get("channel_id") or channel["id"]), {})
            reference = box.get(str(wanted["message_id"]))
            if reference is None and wanted.get("fail_if_not_exists", True):
                raise _form_error("message_reference", "REPLIES_UNKNOWN_MESSAGE",
                                  "Unknown message")
        message = self._message(channel, self.bot_user, content, reference=reference,
                                attachments=self._attachments(channel, files), embeds=embeds)
        if nonce is not None:
            message["nonce"] = str(nonce)
            if payload.get("enforce_nonce"):
                remember(self._nonces, (channel["id"], str(nonce)), message["id"])
        return message

    async def _edit_message(self, request: Request, call: Call) -> Any:
        channel, message = self._stored(request)
        if message["author"]["id"] != self.bot_user["id"]:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        payload, files = self._payload(call)
        if "content" in payload:
            message["content"] = self._check_content(payload)
        if "embeds" in payload:
            message["embeds"] = payload["embeds"] or []
        if files:
            message["attachments"] = message["attachments"] + self._attachments(channel, files)
        message["edited_timestamp"] = _iso()
        self.gateway.dispatch("MESSAGE_UPDATE", lambda s: self._as_seen(s, message),
                              intent=self._message_intent(channel))
        self.changed()
        return message

    async def _delete_message(self, request: Request, call: Call) -> Any:
        channel, message = self._stored(request)
        del self.messages[channel["id"]][message["id"]]
        event = {"id": message["id"], "channel_id": channel["id"]}
        if channel.get("guild_id"):
            event["guild_id"] = channel["guild_id"]
        self.gateway.dispatch("MESSAGE_DELETE", event, intent=self._message_intent(channel))
        self.changed()
        return None

    async def _typing(self, request: Request, call: Call) -> Any:
        self._channel(request)
        return None

    async def _thread(self, request: Request, call: Call) -> Any:
        channel, message = self._stored(request)
        if channel["type"] != 0:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        body = call.body if isinstance(call.body, dict) else {}
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise _form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in "
                              "length.")
        if message["id"] in self.channels:
            raise DiscordError(400, 160004, "A thread has already been created for this "
                               "message")
        # A thread started from a message has the message's id (Discord's rule).
        return self.thread(channel, name, thread_id=message["id"])

    async def _react(self, request: Request, call: Call) -> Any:
        _, message = self._stored(request)
        emoji = request.path_params["emoji"]
        reactions = message.setdefault("reactions", [])
        if not any(r["emoji"].get("name") == emoji for r in reactions):
            reactions.append({"count": 1, "me": True, "emoji": {"id": None, "name": emoji}})
        self.changed()
        return None

    async def _attachment(self, request: Request) -> Response:
        await self.record_request(request, "GET attachment")
        data = self.attachments.get(request.path_params["attachment_id"])
        if data is None:
            return _error(DiscordError(404, 0, "404: Not Found"))
        return Response(data, media_type="application/octet-stream")


def _error(exc: DiscordError, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"message": exc.message, "code": exc.code}
    if exc.errors is not None:
        body["errors"] = exc.errors
    return json_response(body, status=exc.status, headers=headers)
