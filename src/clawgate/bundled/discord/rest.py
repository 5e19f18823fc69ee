"""One Discord account's REST client: ``hikari.RESTApp(url=api_base_url)`` and the bot client
acquired from it, and the mapping of hikari's errors to the core's.

Retries have one owner each: hikari waits out a 429 itself when it is at most
``rate_limit_wait_s`` (its bucket manager also waits *before* a request when a bucket is empty),
and raises ``RateLimitTooLongError`` beyond that, which becomes
``ChannelSendError(retry_after_s=...)`` for the durable delivery queue. hikari's own retries of
5xx answers and connection errors are off (``max_retries=0``): the delivery queue retries those
with its backoff, and the ``nonce`` (``enforce_nonce``) derived from the part's idempotency key
lets Discord drop a repeat of a part it already created.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import hikari

from clawgate import ChannelAuthError, ChannelSendError, DeliveryReceipt, OutboundMessage, Target

log = logging.getLogger("clawgate.channels.discord")
T = TypeVar("T")

MAX_CONTENT = 2000
NONCE_CHARS = 25  # Discord's limit
MAX_KNOWN_CHANNELS = 4096
TOKEN_FIX = ("copy the bot token again from the Discord Developer Portal (your application -> "
             "Bot -> Reset Token) into channels.discord.bot_token or its _env variable")


def nonce(idempotency_key: str) -> str:
    """A 25-character nonce that is the same for every retry of one part."""
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    return base64.b32encode(digest).decode()[:NONCE_CHARS].lower()


def http_settings(timeout_s: float) -> hikari.impl.HTTPSettings:
    """hikari's HTTP settings with keep-alive on: its default (``force_close_transports``,
    for Windows) closes the connection after every request, which costs a TCP (and on
    Discord a TLS) handshake per message."""
    return hikari.impl.HTTPSettings(force_close_transports=False,
                                    timeouts=hikari.impl.HTTPTimeoutSettings(total=timeout_s))


def failure(exc: Exception, what: str) -> ChannelSendError | ChannelAuthError:
    """A hikari error as the core's: 429 beyond the wait -> retry later, 5xx and transport
    errors retryable, 401 a refused token, any other 4xx final."""
    if isinstance(exc, hikari.RateLimitTooLongError):
        return ChannelSendError(f"{what}: rate limited for {exc.retry_after:.1f} s",
                                retry_after_s=exc.retry_after)
    if isinstance(exc, hikari.UnauthorizedError):
        return ChannelAuthError(f"{what}: Discord refused the bot token (401)", fix=TOKEN_FIX)
    if isinstance(exc, hikari.HTTPResponseError):
        status = int(exc.status)
        detail = f"{what}: HTTP {status}" + (f" {exc.code}" if exc.code else "") + (
            f" {exc.message}" if exc.message else "")
        if isinstance(exc, hikari.BadRequestError) and exc.errors:
            detail += f" {exc.errors}"
        return ChannelSendError(detail[:500], retryable=status >= 500 or status == 429)
    if isinstance(exc, hikari.HTTPError | hikari.ComponentStateConflictError):
        return ChannelSendError(f"{what}: {exc}")  # connection errors, timeouts, a closed client
    return ChannelSendError(f"{what}: {type(exc).__name__}: {exc}")


def _channel(target: Target) -> int:
    return int(target.thread or target.to)


class DiscordRest:
    """The REST side of one account (a ``hikari.impl.RESTClientImpl`` of its own app)."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        timeout = float(config.get("timeout_s", 30))
        settings = http_settings(timeout)
        self._app = hikari.RESTApp(url=str(config.get("api_base_url") or "") or None,
                                   http_settings=settings, max_retries=0,
                                   max_rate_limit=float(config.get("rate_limit_wait_s", 10)))
        self._token = str(config["bot_token"])
        self._client: hikari.impl.RESTClientImpl | None = None
        self._parents: OrderedDict[int, int | None] = OrderedDict()  # channel -> thread parent

    async def start(self) -> None:
        await self._app.start()
        client = self._app.acquire(self._token, hikari.TokenType.BOT)
        client.start()
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
            await self._app.close()

    @property
    def client(self) -> hikari.impl.RESTClientImpl:
        if self._client is None:
            raise ChannelSendError("the discord REST client is closed")
        return self._client

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except hikari.HikariError as exc:
            raise failure(exc, what) from None
        except TimeoutError as exc:
            raise ChannelSendError(f"{what}: timed out") from exc

    # -- sending -------------------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """One part: its text (Markdown, rendered by Discord) or its file, as a reply when the
        target says so. Pings of @everyone, @here and roles are suppressed."""
        target = message.target
        text = message.text
        if len(text) > MAX_CONTENT:
            raise ChannelSendError(f"a part of {len(text)} characters is over Discord's "
                                   f"{MAX_CONTENT} (lower text_chunk_limit)", retryable=False)
        options: dict[str, Any] = {}
        if message.media is not None:
            media = message.media
            options["attachment"] = hikari.Bytes(media.data, media.name,
                                                 mimetype=media.mime_type)
        if target.reply_to:
            options.update(reply=int(target.reply_to), reply_must_exist=False,
                           mentions_reply=False)
        sent = await self._call("POST /channels/{id}/messages", self.client.create_message(
            _channel(target), text or hikari.UNDEFINED, nonce=nonce(message.idempotency_key),
            mentions_everyone=False, role_mentions=False, user_mentions=True, **options))
        return DeliveryReceipt((str(sent.id),))

    async def edit(self, target: Target, message_id: str, text: str) -> None:
        """Replace a message's text (previews; the final answer's first part). An edit of a
        message that is gone ("Unknown Message") fails for good."""
        if len(text) > MAX_CONTENT:
            text = text[:MAX_CONTENT - 1] + "…"
        await self._call("PATCH /channels/{id}/messages/{id}", self.client.edit_message(
            _channel(target), int(message_id), text, mentions_everyone=False,
            role_mentions=False, user_mentions=True))

    async def typing(self, target: Target) -> None:
        await self._call("POST /channels/{id}/typing",
                         self.client.trigger_typing(_channel(target)))

    async def probe(self) -> dict[str, Any]:
        """``GET /users/@me``: who the token belongs to."""
        try:
            me = await self._call("GET /users/@me", self.client.fetch_my_user())
        except (ChannelSendError, ChannelAuthError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "bot": {"id": str(me.id), "username": me.username}}

    # -- look-ups for the monitor --------------------------------------------------------------

    async def thread_parent(self, channel_id: int) -> int | None:
        """The parent channel of a thread, None for any other channel (asked once per channel,
        remembered for the newest ``MAX_KNOWN_CHANNELS``)."""
        if channel_id in self._parents:
            self._parents.move_to_end(channel_id)
            return self._parents[channel_id]
        channel = await self._call("GET /channels/{id}", self.client.fetch_channel(channel_id))
        parent = None
        if isinstance(channel, hikari.GuildThreadChannel) and channel.parent_id is not None:
            parent = int(channel.parent_id)
        self.remember(channel_id, parent)
        return parent

    def remember(self, channel_id: int, parent: int | None) -> None:
        self._parents[channel_id] = parent
        self._parents.move_to_end(channel_id)
        while len(self._parents) > MAX_KNOWN_CHANNELS:
            self._parents.popitem(last=False)
