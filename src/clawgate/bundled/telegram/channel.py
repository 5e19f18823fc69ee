"""``clawgate.Channel`` for Telegram, on python-telegram-bot's low-level ``telegram.Bot``.

This module is imported whenever the plugin loads (it is enabled by default), so it imports
nothing of the library: ``client``, ``monitor``, ``outbound`` and ``hook`` (which do) are
imported when an account first starts, sends or is called by Telegram.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from clawgate import (
    Account,
    Attachment,
    Capabilities,
    ChannelContext,
    DeliveryReceipt,
    OutboundMessage,
    Target,
    WebhookRequest,
    WebhookResponse,
)

if TYPE_CHECKING:
    from .client import Bots
    from .normalize import Identity

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["bot_token"],
    "properties": {
        "bot_token": {"type": "string", "minLength": 1,
                      "description": "The bot's token from @BotFather (or bot_token_env)."},
        "api_base_url": {"type": "string", "pattern": "^https?://",
                         "default": "https://api.telegram.org",
                         "description": "Bot API root; requests go to "
                                        "<api_base_url>/bot<token>/<method>."},
        "mode": {"enum": ["polling", "webhook"], "default": "polling",
                 "description": "How updates arrive: our getUpdates loop, or a webhook."},
        "webhook_url": {"type": "string", "pattern": "^https?://",
                        "description": "Public URL Telegram POSTs updates to (webhook mode); "
                                       "it must reach /channels/telegram/<account>/webhook."},
        "webhook_secret": {"type": "string", "minLength": 1, "maxLength": 256,
                           "description": "Secret token Telegram sends with every update "
                                          "(webhook mode; A-Z a-z 0-9 _ -)."},
        "poll_timeout_s": {"type": "integer", "minimum": 0, "maximum": 50, "default": 25,
                           "description": "getUpdates long-poll timeout (seconds)."},
        "poll_stall_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600,
                         "default": 15,
                         "description": "A getUpdates unanswered this long after its timeout "
                                        "is cancelled and sent again (stall watchdog)."},
        "request_timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 300,
                              "default": 30,
                              "description": "Timeout of every other Bot API call (seconds)."},
    },
    "if": {"properties": {"mode": {"const": "webhook"}}, "required": ["mode"]},
    "then": {"required": ["webhook_url", "webhook_secret"]},
}


TYPING_GRACE_S = 0.25
MAX_RECENT_CHATS = 10_000


class Recent:
    """When the bot last sent a message to each chat (the newest ``MAX_RECENT_CHATS``)."""

    def __init__(self) -> None:
        self._at: OrderedDict[tuple[str, str], float] = OrderedDict()

    def mark(self, account: str, chat: str) -> None:
        key = (account, chat)
        self._at[key] = time.monotonic()
        self._at.move_to_end(key)
        while len(self._at) > MAX_RECENT_CHATS:
            self._at.popitem(last=False)

    def since(self, account: str, chat: str, moment: float) -> bool:
        """True when a message went to the chat after ``moment``."""
        return self._at.get((account, chat), float("-inf")) > moment


class TelegramChannel:
    """Telegram bots: private chats, groups and supergroups (with forum topics)."""

    id = "telegram"
    label = "Telegram"
    capabilities = Capabilities(chat_types=("direct", "group"), threads=True, edit=True,
                                media=True, typing=True, text_limit=4000, markup="markdown")
    config_schema = CONFIG_SCHEMA
    secrets = ("bot_token", "webhook_secret")

    def __init__(self) -> None:
        self._bots: Bots | None = None
        self._identities: dict[str, Identity] = {}  # account id -> getMe of its monitor
        self._recent = Recent()

    def _clients(self) -> Bots:
        if self._bots is None:
            from .client import Bots  # the library loads with the first account that needs it

            self._bots = Bots()
        return self._bots

    # -- lifecycle (the plugin's service) -------------------------------------------------------

    async def open(self, _context: object) -> None:
        return None  # clients are made on first use

    async def close(self, _context: object) -> None:
        bots, self._bots = self._bots, None
        if bots is not None:
            await bots.close()

    # -- the Channel protocol ---------------------------------------------------------------------

    async def monitor(self, account: Account, context: ChannelContext) -> None:
        """Identify the bot, set its menu, then poll (or hold the webhook) until cancelled."""
        from .monitor import Monitor

        await Monitor(account, context, self._clients(), self._identities).run()

    async def webhook(self, account: Account, request: WebhookRequest,
                      context: ChannelContext) -> WebhookResponse:
        from .hook import handle

        return await handle(account, request, context, self._clients(), self._identities)

    async def send(self, account: Account, message: OutboundMessage) -> DeliveryReceipt:
        from . import outbound

        receipt = await outbound.send(self._clients().get(account), account, message)
        self._recent.mark(account.account_id, message.target.to)
        return receipt

    async def edit(self, account: Account, target: Target, message_id: str, text: str) -> None:
        from . import outbound

        await outbound.edit(self._clients().get(account), account, target, message_id, text)

    async def typing(self, account: Account, target: Target) -> None:
        """``sendChatAction typing``, unless a message reaches the chat within
        ``TYPING_GRACE_S``: Telegram clears the indicator when a message arrives, so for a reply
        that quick the call would only cost a request (and rate-limit budget)."""
        from . import outbound

        asked = time.monotonic()
        await asyncio.sleep(TYPING_GRACE_S)
        if self._recent.since(account.account_id, target.to, asked):
            return
        await outbound.typing(self._clients().get(account), account, target)

    async def fetch(self, account: Account, attachment: Attachment) -> tuple[bytes, str]:
        from . import outbound

        return await outbound.fetch(self._clients().get(account), account, attachment)

    async def probe(self, account: Account) -> dict[str, Any]:
        """``getMe``: is the token accepted, and which bot is it."""
        from telegram.error import TelegramError

        from .client import scrub

        try:
            me = await self._clients().get(account).get_me()
        except TelegramError as exc:
            return {"ok": False, "error": scrub(f"{type(exc).__name__}: {exc}",
                                                str(account.config["bot_token"]))}
        return {"ok": True, "bot": {"id": me.id, "username": me.username}}
