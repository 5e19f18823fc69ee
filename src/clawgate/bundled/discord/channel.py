"""The Discord channel's ``clawgate.Channel``: config, capabilities, and one REST client per
account, shared by ``send``, ``edit``, ``typing``, ``probe`` and the monitor's look-ups.

Receiving is ``monitor`` (``gateway.py``: one ``hikari.GatewayBot`` per account), sending is
``rest.py`` (one ``hikari.RESTApp(url=api_base_url)`` client per account, opened on first use
and closed with the plugin's service). Both modules import hikari, and this one imports them
only inside the calls that need them: a gateway with no Discord account never loads hikari.

Discord renders Markdown itself, so replies go out as the agent wrote them (the core has already
split them into parts of at most 2,000 characters and 17 lines); ``@everyone``, ``@here`` and
role pings are suppressed with ``allowed_mentions``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from clawgate import (
    Account,
    Attachment,
    Capabilities,
    ChannelContext,
    ChannelSendError,
    DeliveryReceipt,
    OutboundMessage,
    Target,
)

if TYPE_CHECKING:
    import httpx

    from .gateway import Counters
    from .rest import DiscordRest

DEFAULT_API = "https://discord.com/api/v10"
MAX_FETCH_BYTES = 25 * 1024 * 1024  # Discord's own upload limit for bots without boosts
FETCH_TIMEOUT_S = 30.0

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["bot_token"],
    "properties": {
        "bot_token": {
            "type": "string", "pattern": r"^[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+$",
            "description": "The bot's token (Developer Portal -> your application -> Bot)."},
        "api_base_url": {
            "type": "string", "pattern": "^https?://", "default": DEFAULT_API,
            "description": "The REST root, version included (a proxy or a test fake)."},
        "gateway_url": {
            "type": "string", "pattern": "^wss?://",
            "description": "Connect here instead of the URL GET /gateway/bot hands out."},
        "intents": {
            "type": "object", "additionalProperties": False,
            "default": {"message_content": True},
            "properties": {"message_content": {
                "type": "boolean", "default": True,
                "description": "Ask for the privileged Message Content intent; without it "
                               "guild messages are read only when they mention the bot."}}},
        "allow_bots": {
            "type": "boolean", "default": False,
            "description": "Process messages of other bots (and webhooks)."},
        "rate_limit_wait_s": {
            "type": "number", "minimum": 0, "maximum": 300, "default": 10,
            "description": "Longest 429 hikari waits out itself; longer ones are retried "
                           "later by the delivery queue."},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 300, "default": 30},
    },
}


class DiscordChannel:
    """``clawgate.Channel`` for Discord bots."""

    id = "discord"
    label = "Discord"
    capabilities = Capabilities(chat_types=("direct", "group"), threads=True, edit=True,
                                media=True, typing=True, text_limit=2000, max_lines=17,
                                markup="markdown")
    config_schema = CONFIG_SCHEMA
    secrets = ("bot_token",)

    def __init__(self) -> None:
        self._clients: dict[str, DiscordRest] = {}
        self._counters: dict[str, Counters] = {}
        self._lock = asyncio.Lock()
        self._closed = False
        self._http: httpx.AsyncClient | None = None

    # -- lifecycle (the plugin's service) -----------------------------------------------------

    async def open(self, _context: object) -> None:
        self._closed = False

    async def close(self, _context: object) -> None:
        """Close every account's REST client and the attachment downloader."""
        async with self._lock:
            self._closed = True
            clients, self._clients = list(self._clients.values()), {}
            http, self._http = self._http, None
        for client in clients:
            await client.close()
        if http is not None:
            await http.aclose()

    async def _client(self, account: Account) -> DiscordRest:
        """The account's REST client, started on first use."""
        client = self._clients.get(account.account_id)
        if client is not None:
            return client
        async with self._lock:
            if self._closed:
                raise ChannelSendError("the discord channel is stopped")
            client = self._clients.get(account.account_id)
            if client is None:
                from .rest import DiscordRest

                client = DiscordRest(account.config)
                await client.start()
                self._clients[account.account_id] = client
            return client

    # -- the Channel protocol ------------------------------------------------------------------

    async def monitor(self, account: Account, context: ChannelContext) -> None:
        """Hold the account's Gateway connection until cancelled; raises when hikari gives up
        (a refused token or intent, a fatal close code) so the core restarts it."""
        from .gateway import Counters, Monitor

        counters = self._counters.setdefault(account.account_id, Counters())
        await Monitor(account, context, await self._client(account), counters).run()

    async def send(self, account: Account, message: OutboundMessage) -> DeliveryReceipt:
        client = await self._client(account)
        return await client.send(message)

    async def edit(self, account: Account, target: Target, message_id: str, text: str) -> None:
        client = await self._client(account)
        await client.edit(target, message_id, text)

    async def typing(self, account: Account, target: Target) -> None:
        client = await self._client(account)
        await client.typing(target)

    async def probe(self, account: Account) -> dict[str, Any]:
        client = await self._client(account)
        return await client.probe()

    async def fetch(self, account: Account, attachment: Attachment) -> tuple[bytes, str]:
        """Download an inbound attachment from its CDN URL (its ``file_id``)."""
        import httpx

        url = attachment.file_id
        if not url.startswith(("https://", "http://")):
            raise ChannelSendError(f"attachment {url!r} has no URL", retryable=False)
        async with self._lock:
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=True)
            http = self._http
        chunks: list[bytes] = []
        size = 0
        async with http.stream("GET", url) as response:
            if response.status_code >= 400:
                raise ChannelSendError(f"GET {url}: HTTP {response.status_code}",
                                       retryable=response.status_code >= 500)
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_FETCH_BYTES:
                    raise ChannelSendError(f"attachment {url!r} is over {MAX_FETCH_BYTES} bytes",
                                           retryable=False)
                chunks.append(chunk)
            mime = response.headers.get("content-type", "").split(";", 1)[0].strip()
        if not mime or mime == "application/octet-stream":
            mime = attachment.mime_type or mime or "application/octet-stream"
        return b"".join(chunks), mime
