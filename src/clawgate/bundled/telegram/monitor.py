"""One Telegram account, running: who the bot is (``getMe``), its command menu
(``setMyCommands``), then either our own ``getUpdates`` long-poll loop or a registered webhook.

Polling. The loop asks for ``ALLOWED_UPDATES`` with the stored offset. The updates of a batch
are received (``context.receive`` returns once each is durable; one chat's updates in order,
different chats concurrently), and only then is ``offset = last update_id + 1`` saved in
``context.state``: a crash before that gets the batch again from Telegram, and the core answers
the redeliveries it admitted ``duplicate``; nothing is lost and nothing runs twice. A
``getUpdates`` that has not answered ``poll_stall_s`` seconds after its long-poll timeout is
cancelled and sent again (the stall watchdog; ``pollStalls`` counts them). 409 Conflict
(another process polls the token, or a webhook is set) and 401 (a refused token) end the
monitor with ``ChannelAuthError`` and the fix, so the core retries slowly; 429 waits the
``retry_after`` Telegram gave; network errors and 5xx are retried with backoff.

Webhook. ``setWebhook`` with the account's URL and secret token; updates then arrive at
``/channels/telegram/<account>/webhook`` (see ``hook.py``). The monitor refreshes
``getWebhookInfo`` for the status every minute.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from typing import Any

import telegram
from telegram.error import (
    BadRequest,
    Conflict,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from clawgate import Account, ChannelAuthError, ChannelContext, ClawgateError

from .client import Bots, retry_after, scrub
from .normalize import Identity, normalize

log = logging.getLogger("clawgate.telegram")

ALLOWED_UPDATES = ("message",)
OFFSET = "offset"
BATCH = 100
WEBHOOK_INFO_EVERY_S = 60.0
BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
MAX_COMMANDS = 100
TOKEN_FIX = "check bot_token: copy the token @BotFather gave for this bot (/token)"
POLLER_FIX = ("another process polls this bot token: stop it (Telegram allows one poller per "
              "token)")
WEBHOOK_FIX = ('a webhook is set for this bot: use mode = "webhook", or remove the webhook '
               "(deleteWebhook)")


class BotApiError(ClawgateError):
    """A Bot API call of the monitor failed in a way a restart may fix (the core restarts the
    monitor with backoff). The message never contains the token."""


def webhook_path(account: Account) -> str:
    return f"/channels/telegram/{account.account_id}/webhook"


class Monitor:
    """The running side of one account (``Channel.monitor`` creates one per start)."""

    def __init__(self, account: Account, context: ChannelContext, bots: Bots,
                 identities: dict[str, Identity]) -> None:
        self.account = account
        self.context = context
        self.config = account.config
        self.token = str(self.config["bot_token"])
        self.bot = bots.get(account)
        self._identities = identities
        self._connected = False
        self._stalls = 0

    async def run(self) -> None:
        """Until cancelled."""
        mode = str(self.config["mode"])
        self.context.status(mode=mode, connected=False)
        if not TOKEN.match(self.token):
            raise ChannelAuthError("bot_token is not a Telegram bot token "
                                   "(it looks like 123456789:AA...)", fix=TOKEN_FIX)
        try:
            me = await self._identify()
            self.context.status(bot=me.dump())
            await self._menu()
            if mode == "webhook":
                await self._webhook()
            else:
                await self.bot.delete_webhook()
                await self._poll(me)
        except InvalidToken as exc:
            raise ChannelAuthError(f"Telegram refused the bot token ({exc})",
                                   fix=TOKEN_FIX) from None
        except TelegramError as exc:
            raise BotApiError(f"{type(exc).__name__}: {scrub(str(exc), self.token)}") from None
        finally:
            self._identities.pop(self.account.account_id, None)

    async def _identify(self) -> Identity:
        user = await self.bot.get_me()
        me = Identity(user.id, user.username or "")
        self._identities[self.account.account_id] = me
        return me

    async def _menu(self) -> None:
        """``setMyCommands`` from the gateway's commands (best effort: a refusal is shown in
        the status, and the bot works without a menu)."""
        commands: list[telegram.BotCommand] = []
        for row in self.context.commands():
            name = row.get("name", "")
            if not COMMAND.match(name) or any(c.command == name for c in commands):
                continue
            description = " ".join(str(row.get("description") or name).split())[:256]
            commands.append(telegram.BotCommand(name, description or name))
            if len(commands) == MAX_COMMANDS:
                break
        try:
            await self.bot.set_my_commands(commands)
        except (BadRequest, NetworkError) as exc:
            log.warning("telegram/%s: setMyCommands failed: %s", self.account.account_id,
                        scrub(str(exc), self.token))
            self.context.status(commandsError=scrub(str(exc), self.token))
        else:
            self.context.status(commands=len(commands), commandsError=None)

    # -- polling -------------------------------------------------------------------------------

    async def _poll(self, me: Identity) -> None:
        timeout = int(self.config["poll_timeout_s"])
        deadline = timeout + float(self.config["poll_stall_s"])
        stored = await self.context.state.get(OFFSET)
        offset = int(stored) if isinstance(stored, int | str) and str(stored).isdigit() else None
        backoff = BACKOFF_START_S
        while True:
            try:
                async with asyncio.timeout(deadline):
                    updates = await self.bot.get_updates(
                        offset=offset, limit=BATCH, timeout=timeout,
                        allowed_updates=list(ALLOWED_UPDATES))
            except TimeoutError:
                self._stalls += 1
                self._trouble(f"getUpdates did not answer within {deadline:g} s; "
                              "the poll was restarted", pollStalls=self._stalls)
                continue
            except RetryAfter as exc:
                wait = retry_after(exc)
                self._trouble(f"getUpdates: rate limited by Telegram, waiting {wait:g} s")
                await asyncio.sleep(wait)
                continue
            except Conflict as exc:
                self.context.status(connected=False)
                webhook = "webhook" in str(exc).lower()
                raise ChannelAuthError(f"getUpdates: 409 Conflict ({exc})",
                                       fix=WEBHOOK_FIX if webhook else POLLER_FIX) from None
            except BadRequest:
                raise
            except NetworkError as exc:  # timeouts, connection errors, 5xx
                self._trouble(f"getUpdates failed: {scrub(str(exc), self.token)}; retrying "
                              f"in {backoff:g} s")
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX_S, backoff * 2)
                continue
            backoff = BACKOFF_START_S
            self._healthy(lastPollAt=_now_ms())
            if not updates:
                continue
            await self._batch(updates, me)
            offset = updates[-1].update_id + 1
            await self.context.state.set(OFFSET, offset)  # only after every receive returned

    async def _batch(self, updates: Sequence[telegram.Update], me: Identity) -> None:
        """Receive a batch: each chat's updates in order, different chats side by side (the
        durable admissions overlap instead of queueing behind one another). If one fails, the
        others are cancelled and the error ends the monitor before the offset moves: the whole
        batch comes again, and what was admitted is answered ``duplicate``."""
        chats: dict[int, list[telegram.Update]] = {}
        for update in updates:
            message = update.effective_message
            chats.setdefault(message.chat_id if message is not None else 0, []).append(update)
        if len(chats) == 1:
            await self._in_order(updates, me)
            return
        async with asyncio.TaskGroup() as group:
            for chat_updates in chats.values():
                group.create_task(self._in_order(chat_updates, me))

    async def _in_order(self, updates: Sequence[telegram.Update], me: Identity) -> None:
        for update in updates:
            await receive(self.context, self.account, update, me)

    def _trouble(self, error: str, **fields: Any) -> None:
        log.warning("telegram/%s: %s", self.account.account_id, error)
        self._connected = False
        self.context.status(connected=False, lastError=error, **fields)

    def _healthy(self, **fields: Any) -> None:
        if not self._connected:
            self._connected = True
            self.context.status(connected=True, lastError=None, **fields)
        else:
            self.context.status(**fields)

    # -- webhook -------------------------------------------------------------------------------

    async def _webhook(self) -> None:
        url = str(self.config.get("webhook_url") or "")
        secret = str(self.config.get("webhook_secret") or "")
        if not url or not SECRET.match(secret):
            raise ChannelAuthError("webhook mode needs webhook_url and webhook_secret",
                                   fix="set webhook_url (the public URL of "
                                   f"{webhook_path(self.account)}) and webhook_secret (1-256 "
                                   "characters A-Z a-z 0-9 _ -)")
        await self.bot.set_webhook(url, allowed_updates=list(ALLOWED_UPDATES),
                                   secret_token=secret)
        self._healthy(webhookUrl=url, webhookPath=webhook_path(self.account))
        while True:
            try:
                info = await self.bot.get_webhook_info()
            except (RetryAfter, NetworkError) as exc:
                if isinstance(exc, BadRequest):
                    raise
                log.info("telegram/%s: getWebhookInfo failed: %s", self.account.account_id,
                         scrub(str(exc), self.token))
            else:
                fields: dict[str, Any] = {"webhookPending": info.pending_update_count,
                                          "webhookLastError": info.last_error_message}
                if info.url != url:
                    self._trouble(f"the bot's webhook is {info.url or 'not set'}, not {url}: "
                                  "another process changed it", **fields)
                else:
                    self._healthy(**fields)
            await asyncio.sleep(WEBHOOK_INFO_EVERY_S)


async def receive(context: ChannelContext, account: Account, update: telegram.Update,
                  me: Identity) -> str:
    """Normalize one update and hand it to the core (durable when this returns); the status
    gets ``lastUpdateAt`` and ``pollLag``. Returns the outcome (``skipped`` when the update
    carried nothing to receive)."""
    try:
        message = normalize(update, me)
    except Exception:  # a malformed update must not wedge the account: skip it, loudly
        log.exception("telegram/%s: could not read update %s", account.account_id,
                      update.update_id)
        return "skipped"
    fields: dict[str, Any] = {"lastUpdateAt": _now_ms()}
    effective = update.effective_message
    if effective is not None and effective.date is not None:
        # pollLag: how old the update was when it reached us (Telegram dates are whole
        # seconds): a backlog after downtime, or a slow poll, shows here.
        fields["pollLag"] = round(max(0.0, time.time() - effective.date.timestamp()), 1)
    context.status(**fields)
    if message is None:
        return "skipped"
    return (await context.receive(message)).outcome


def _now_ms() -> int:
    return int(time.time() * 1000)
