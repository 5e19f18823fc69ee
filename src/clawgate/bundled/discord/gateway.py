"""The Discord account's monitor: one ``hikari.GatewayBot`` that receives, and the lanes that
hand its messages to the core.

hikari owns the Gateway protocol: HELLO/IDENTIFY/READY, heartbeats, RESUME after a dropped
socket, RECONNECT (op 7) and INVALID_SESSION (op 9), and unlimited reconnects with its own
backoff (capped at 60 s). The monitor uses ``start()``/``close()`` only — never ``run()``, which
would install signal handlers and manage the event loop — and passes ``logs=None``,
``banner=None``, ``suppress_optimization_warning=True`` and ``check_for_updates=False`` so
hikari touches nothing process-wide. When hikari gives up (a close code it will not reconnect
after: 4004 authentication failed, 4014 disallowed intents, 4013, 4010-4012...) its shard ends
and the monitor raises — the core restarts it with backoff, slowly and with a fix for a refused
token or intent — so a dead connection is never a silent stall.

Inbound: hikari's MESSAGE_CREATE listener only filters (the bot's own echoes, other bots, guild
messages without content) and puts the message on one of ``LANES`` bounded queues, chosen by
channel so one channel's messages stay in order. Each lane's worker normalizes a message and
awaits ``context.receive``; Discord has no acknowledgement, and a RESUME replay of a message
already admitted is a ``duplicate`` there (the snowflake is the dedupe key). A full lane drops
the newest message and counts it (``droppedEvents``). When the monitor stops, the lanes get
``DRAIN_S`` to admit what they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import hikari

from clawgate import Account, ChannelAuthError, ChannelContext, ClawgateError

from .normalize import addressed, inbound, leading_mention
from .rest import TOKEN_FIX, DiscordRest, http_settings

log = logging.getLogger("clawgate.channels.discord")

LANES = 8
LANE_SIZE = 512
DRAIN_S = 2.0
CACHE = (hikari.api.CacheComponents.GUILDS | hikari.api.CacheComponents.GUILD_CHANNELS
         | hikari.api.CacheComponents.GUILD_THREADS | hikari.api.CacheComponents.ME)
INTENT_FIX = ("enable the Message Content Intent for the bot (Discord Developer Portal -> your "
              "application -> Bot -> Privileged Gateway Intents), or set "
              "intents.message_content = false (guild messages are then read only when they "
              "mention the bot)")
NO_CONTENT_WARNING = ("intents.message_content = false: guild messages reach the bot only when "
                      "they mention it or reply to it")


@dataclass(slots=True)
class Counters:
    """What an account's status counts across monitor restarts (the channel keeps one per
    account)."""

    runs: int = 0
    reconnects: int = 0  # what the status shows as reconnectAttempts
    dropped: int = 0  # messages refused because an inbound lane was full


class GatewayClosed(ClawgateError):
    """The Gateway connection ended and hikari will not reconnect it."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Bot(hikari.GatewayBot):
    """``GatewayBot`` with two adjustments, per instance (nothing shared), on hikari 2.x
    internals that the tests exercise:

    - it connects to the configured ``gateway_url`` instead of the URL ``GET /gateway/bot``
      hands out (hikari has no option for it; RESUME still uses READY's
      ``resume_gateway_url``);
    - ``forget_dead_shards`` drops shards whose connection hikari gave up on, so ``close()``
      does not re-raise their (already reported) error through the event loop's exception
      handler.
    """

    def __init__(self, token: str, *, gateway_url: str | None, **options: Any) -> None:
        super().__init__(token, **options)
        self._gateway_override = gateway_url

    async def _start_one_shard(self, *, activity: hikari.Activity | None, afk: bool,
                               idle_since: Any, status: hikari.Status, large_threshold: int,
                               shard_id: int, shard_count: int, url: str) -> None:
        await super()._start_one_shard(
            activity=activity, afk=afk, idle_since=idle_since, status=status,
            large_threshold=large_threshold, shard_id=shard_id, shard_count=shard_count,
            url=self._gateway_override or url)

    def forget_dead_shards(self) -> None:
        shards: dict[int, Any] = getattr(self, "_shards", {})
        for shard_id, shard in list(shards.items()):
            task = getattr(shard, "_keep_alive_task", None)
            if isinstance(task, asyncio.Task) and task.done():
                if not task.cancelled():
                    task.exception()  # retrieved: its error is the monitor's to report
                del shards[shard_id]


def closed(exc: hikari.GatewayServerClosedConnectionError) -> ClawgateError:
    """The error for a close code hikari does not reconnect after."""
    code = int(exc.code) if exc.code is not None else 0
    if code == hikari.ShardCloseCode.AUTHENTICATION_FAILED:
        return ChannelAuthError("Discord refused the bot token (gateway close 4004)",
                                fix=TOKEN_FIX)
    if code == hikari.ShardCloseCode.DISALLOWED_INTENT:
        return ChannelAuthError("Discord refused the Message Content intent (gateway close "
                                "4014: disallowed intents)", fix=INTENT_FIX)
    return GatewayClosed(f"Discord closed the gateway connection for good: {code} "
                         f"{exc.reason or ''}".strip())


class Monitor:
    """One run of an account's Gateway connection (``run`` until cancelled or hikari gives
    up)."""

    def __init__(self, account: Account, context: ChannelContext, rest: DiscordRest,
                 counters: Counters) -> None:
        config = account.config
        self._context = context
        self._rest = rest
        self._counters = counters
        self._content = bool((config.get("intents") or {}).get("message_content", True))
        self._allow_bots = bool(config.get("allow_bots", False))
        intents = (hikari.Intents.GUILDS | hikari.Intents.GUILD_MESSAGES
                   | hikari.Intents.DM_MESSAGES)
        if self._content:
            intents |= hikari.Intents.MESSAGE_CONTENT
        timeout = float(config.get("timeout_s", 30))
        # logs=None / banner=None / no optimization warning: no global logging set-up, nothing
        # printed; the cache keeps only guilds, channels and threads (thread look-ups), bounded
        # by the guilds the bot is in.
        self._bot = _Bot(
            str(config["bot_token"]), gateway_url=config.get("gateway_url"),
            rest_url=str(config.get("api_base_url") or "") or None, intents=intents, logs=None,
            banner=None, suppress_optimization_warning=True, auto_chunk_members=False,
            cache_settings=hikari.impl.CacheSettings(components=CACHE),
            http_settings=http_settings(timeout))
        self._lanes: list[asyncio.Queue[hikari.Message]] = [
            asyncio.Queue(maxsize=LANE_SIZE) for _ in range(LANES)]
        self._closing = False
        self._lost = False  # disconnected, not connected again yet
        self._bot_id: int | None = None
        self._mention: re.Pattern[str] | None = None

    # -- run -------------------------------------------------------------------------------

    async def run(self) -> None:
        counters = self._counters
        if counters.runs:
            counters.reconnects += 1  # the core counted the restart that started this run
        counters.runs += 1
        status: dict[str, Any] = {"mode": "gateway", "connected": False,
                                  "messageContent": self._content,
                                  "reconnectAttempts": counters.reconnects}
        if not self._content:
            status["intentsWarning"] = NO_CONTENT_WARNING
        self._context.status(**status)
        bot = self._bot
        bot.subscribe(hikari.ShardReadyEvent, self._on_ready)
        bot.subscribe(hikari.ShardConnectedEvent, self._on_connected)
        bot.subscribe(hikari.ShardDisconnectedEvent, self._on_disconnected)
        bot.subscribe(hikari.ShardResumedEvent, self._on_resumed)
        bot.subscribe(hikari.MessageCreateEvent, self._on_message)
        loop = asyncio.get_running_loop()
        workers = [loop.create_task(self._work(lane), name=f"discord-lane-{n}")
                   for n, lane in enumerate(self._lanes)]
        cancelled = False
        try:
            await self._start()
            await self._watch()
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            self._closing = True
            if self._lost and not cancelled:
                # The connection this run lost is the one the core's restart replaces:
                # count it once.
                counters.reconnects -= 1
                self._context.status(reconnectAttempts=counters.reconnects)
            try:
                await self._stop()
                # What hikari already handed over is admitted if it can be, briefly.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*(q.join() for q in self._lanes)),
                                           DRAIN_S)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                self._context.status(connected=False)

    async def _start(self) -> None:
        try:
            await self._bot.start(check_for_updates=False)
        except hikari.UnauthorizedError:
            raise ChannelAuthError("Discord refused the bot token (401 on GET /gateway/bot)",
                                   fix=TOKEN_FIX) from None
        except hikari.GatewayServerClosedConnectionError as exc:
            raise closed(exc) from None

    async def _watch(self) -> None:
        """Until hikari's shards end: then raise (never return quietly)."""
        try:
            await self._bot.join()
        except hikari.GatewayServerClosedConnectionError as exc:
            raise closed(exc) from None
        raise GatewayClosed("the Discord gateway connection ended")

    async def _stop(self) -> None:
        if not self._bot.is_alive:
            return
        self._bot.forget_dead_shards()
        try:
            await self._bot.close()
        except Exception as exc:  # closing is best effort; the error is not the story
            log.debug("discord: closing the bot failed: %r", exc)

    # -- hikari's events (each handler is short and never awaits anything slow) ----------------

    async def _on_ready(self, event: hikari.ShardReadyEvent) -> None:
        me = event.my_user
        self._bot_id = int(me.id)
        self._mention = leading_mention(self._bot_id)
        self._context.status(bot={"id": str(me.id), "username": me.username},
                             botUsername=me.username, lastEventAt=_now_ms())

    async def _on_connected(self, event: hikari.ShardConnectedEvent) -> None:
        self._lost = False
        self._context.status(connected=True, lastEventAt=_now_ms())

    async def _on_disconnected(self, event: hikari.ShardDisconnectedEvent) -> None:
        if self._closing:
            return
        # The core counts restarts of the monitor; hikari's reconnects within a run add to it.
        self._lost = True
        self._counters.reconnects += 1
        self._context.status(connected=False, reconnectAttempts=self._counters.reconnects,
                             lastDisconnectAt=_now_ms())

    async def _on_resumed(self, event: hikari.ShardResumedEvent) -> None:
        self._context.status(lastResumedAt=_now_ms(), lastEventAt=_now_ms())

    async def _on_message(self, event: hikari.MessageCreateEvent) -> None:
        message = event.message
        bot_id = self._bot_id or int(event.shard.get_user_id())
        author = message.author
        if int(author.id) == bot_id:
            return  # Discord echoes every message the bot sends
        if (author.is_bot or message.webhook_id is not None) and not self._allow_bots:
            return
        if not self._content and message.guild_id is not None \
                and not addressed(message, bot_id):
            return  # without the intent it has no content: mention-only
        self._context.status(lastEventAt=_now_ms())
        lane = self._lanes[int(message.channel_id) % LANES]
        try:
            lane.put_nowait(message)
        except asyncio.QueueFull:
            self._counters.dropped += 1
            log.warning("discord: inbound lane full, dropped message %s", message.id)
            self._context.status(droppedEvents=self._counters.dropped,
                                 lastError=f"inbound lane full: dropped message {message.id}")

    # -- admission -----------------------------------------------------------------------------

    async def _work(self, lane: asyncio.Queue[hikari.Message]) -> None:
        while True:
            message = await lane.get()
            try:
                await self._admit(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one bad message must not stop the lane
                log.warning("discord: message %s was not admitted: %r", message.id, exc)
                self._context.status(lastError=f"message {message.id} was not admitted: "
                                               f"{type(exc).__name__}: {exc}")
            finally:
                lane.task_done()

    async def _admit(self, message: hikari.Message) -> None:
        bot_id = self._bot_id or int(self._bot.get_me().id)  # type: ignore[union-attr]
        mention = self._mention or leading_mention(bot_id)
        parent = await self._parent(message)
        item = inbound(message, bot_id=bot_id, parent=parent, mention=mention)
        if item is not None:
            await self._context.receive(item)

    async def _parent(self, message: hikari.Message) -> int | None:
        """The parent channel when the message is in a thread: from hikari's cache (threads
        arrive in GUILD_CREATE and THREAD_CREATE), else asked once over REST."""
        if message.guild_id is None:
            return None
        channel_id = int(message.channel_id)
        cache = self._bot.cache
        thread = cache.get_thread(channel_id)
        if thread is not None:
            return int(thread.parent_id) if thread.parent_id is not None else None
        if cache.get_guild_channel(channel_id) is not None:
            return None
        try:
            return await self._rest.thread_parent(channel_id)
        except ClawgateError as exc:  # answer in the channel rather than not at all
            log.warning("discord: could not tell whether %s is a thread: %s", channel_id, exc)
            return None
