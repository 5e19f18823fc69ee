"""The Slack channel's mechanics: Socket Mode or the HTTP Events API in, the Web API out.

The core does routing, gating, pairing, dedupe, chunking, durable delivery and previews; this
channel turns Slack events into ``InboundMessage``s (``normalize``), renders the agent's
Markdown as mrkdwn (``render``) and talks to Slack through slack-sdk (``client``,
``socketmode``, ``events``). slack-sdk and aiohttp are imported (off the event loop) only when
an account starts or sends, so a gateway without a Slack account never loads them.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clawgate import (
    Account,
    Attachment,
    Capabilities,
    ChannelAuthError,
    ChannelContext,
    DeliveryReceipt,
    OutboundMessage,
    Target,
    WebhookRequest,
    WebhookResponse,
)

from .normalize import file_refs, message_of, slash_message
from .render import mrkdwn

if TYPE_CHECKING:
    from slack_sdk.socket_mode.request import SocketModeRequest

    from .client import SlackApi

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["bot_token"],
    "properties": {
        "bot_token": {"type": "string", "minLength": 1,
                      "description": "Bot User OAuth Token (xoxb-...)."},
        "app_token": {"type": "string", "minLength": 1,
                      "description": "App-level token (xapp-...) for Socket Mode."},
        "signing_secret": {"type": "string", "minLength": 1,
                           "description": "Signing secret of HTTP mode's requests."},
        "mode": {"enum": ["socket", "http"], "default": "socket"},
        "api_base_url": {"type": "string", "pattern": "^https?://",
                         "default": "https://slack.com/api/",
                         "description": "Web API root (for tests and proxies)."},
        "slash_command": {"type": "string", "pattern": "^/[a-z0-9_-]{1,31}$",
                          "default": "/clawd"},
        "ping_interval_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 300,
                            "default": 5,
                            "description": "Socket Mode keepalive ping interval."},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 300, "default": 30,
                      "description": "Web API request timeout."},
    },
    # Socket Mode needs the app token; HTTP mode the signing secret.
    "if": {"properties": {"mode": {"const": "http"}}},
    "then": {"required": ["signing_secret"]},
    "else": {"required": ["app_token"]},
}
_SDK_MODULES = ("client", "socketmode", "events")


@dataclass(frozen=True, slots=True)
class _Held:
    key: tuple[str, str, float]
    api: SlackApi


def _now_ms() -> int:
    return int(time.time() * 1000)


def _thread_of(target: Target) -> str | None:
    """Where a reply goes: the thread it belongs to, else (``reply_to_mode``) a thread under
    the message it answers (its dedupe key is ``<channel>:<ts>``)."""
    if target.thread:
        return target.thread
    if target.reply_to and not target.reply_to.startswith("slash:"):
        return target.reply_to.rsplit(":", 1)[-1]
    return None


def _check_tokens(config: Mapping[str, Any]) -> None:
    # Checked here, not by a schema pattern, so an error never echoes a token.
    if not str(config["bot_token"]).startswith("xoxb-"):
        raise ChannelAuthError("bot_token is not a bot token", fix=(
            "use the Bot User OAuth Token (it starts with xoxb-) from the Slack app's OAuth & "
            "Permissions page"))
    if config["mode"] == "socket" and not str(config.get("app_token", "")).startswith("xapp-"):
        raise ChannelAuthError("app_token is not an app-level token", fix=(
            "use an app-level token (it starts with xapp-) with the connections:write scope, "
            "from the Slack app's Basic Information page"))


class SlackChannel:
    """``clawgate.Channel`` for Slack."""

    id = "slack"
    label = "Slack"
    capabilities = Capabilities(chat_types=("direct", "group"), threads=True, edit=True,
                                media=True, typing=False, text_limit=4000)
    config_schema = CONFIG_SCHEMA
    secrets = ("bot_token", "app_token", "signing_secret")

    def __init__(self) -> None:
        self._apis: dict[str, _Held] = {}  # account id -> its Web API client
        self._lock = asyncio.Lock()
        self._loaded = False
        self._reconnects: dict[str, int] = {}  # account id -> reconnects (status)
        self._starts: dict[str, int] = {}

    # -- lifecycle (the plugin's service) ----------------------------------------------------

    async def open(self, _context: object) -> None:
        """Nothing to open: clients are made when an account first needs one."""

    async def close(self, _context: object) -> None:
        held, self._apis = list(self._apis.values()), {}
        for item in held:
            await item.api.aclose()

    async def _sdk(self) -> None:
        """Import slack-sdk (and aiohttp) once, in a worker thread: ~0.5 s of imports must
        not stall the event loop."""
        if not self._loaded:
            await asyncio.to_thread(lambda: [importlib.import_module(f"{__package__}.{name}")
                                             for name in _SDK_MODULES])
            self._loaded = True

    async def _api(self, account: Account) -> SlackApi:
        config = account.config
        key = (str(config["bot_token"]), str(config["api_base_url"]), float(config["timeout_s"]))
        held = self._apis.get(account.account_id)
        if held is not None and held.key == key:
            return held.api
        await self._sdk()
        from .client import SlackApi

        async with self._lock:
            held = self._apis.get(account.account_id)
            if held is not None and held.key == key:
                return held.api
            if held is not None:  # the account's config changed: a fresh client
                await held.api.aclose()
            api = SlackApi(key[0], key[1], key[2])
            self._apis[account.account_id] = _Held(key, api)
            return api

    def _reconnected(self, account_id: str) -> int:
        count = self._reconnects.get(account_id, 0) + 1
        self._reconnects[account_id] = count
        return count

    # -- receiving ---------------------------------------------------------------------------

    async def monitor(self, account: Account, context: ChannelContext) -> None:
        """Socket Mode (or, in HTTP mode, an idle wait: Slack calls the webhook) until
        cancelled. A refused token raises ``ChannelAuthError`` with the fix."""
        config = account.config
        starts = self._starts[account.account_id] = self._starts.get(account.account_id, 0) + 1
        if starts > 1:
            context.status(reconnectAttempts=self._reconnected(account.account_id))
        context.status(mode=config["mode"], connected=False)
        _check_tokens(config)
        api = await self._api(account)
        me = await api.identity()
        context.status(bot=me.status(), botUserId=me.user_id, team=me.team)
        if config["mode"] == "http":
            base = f"/channels/slack/{account.account_id}"
            context.status(connected=True, webhookPath=f"{base}/events",
                           commandsPath=f"{base}/commands")
            await asyncio.Event().wait()  # until the gateway stops the account
        from . import socketmode

        async def handle(request: SocketModeRequest) -> dict[str, Any] | None:
            if request.type == "events_api":
                await self._event(account, context, api, request.payload)
            elif request.type == "slash_commands":
                return await self._slash(account, context, api, request.payload)
            return None  # interactivity and the like: acknowledged, not used

        await socketmode.run(context, api.web, me, app_token=str(config["app_token"]),
                             ping_interval=float(config["ping_interval_s"]), handle=handle,
                             reconnected=lambda: self._reconnected(account.account_id))

    async def _event(self, account: Account, context: ChannelContext, api: SlackApi,
                     payload: Mapping[str, Any]) -> None:
        """An Events API ``event_callback``: received (durably) when this returns."""
        event = payload.get("event")
        if not isinstance(event, Mapping):
            return
        context.status(lastEventAt=_now_ms())
        me = await api.identity()
        message = message_of(event, me, api.names)
        if message is None:
            return
        if not message.from_self and message.sender not in api.names:
            await api.learn_name(message.sender)
            message = message_of(event, me, api.names) or message
        api.keep_files(file_refs(event))
        await context.receive(message)

    async def _slash(self, account: Account, context: ChannelContext, api: SlackApi,
                     payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """The ``/clawd`` slash command: its text as a message (``/clawd status`` runs
        ``/status``); answered with an ephemeral echo of the command, the reply follows."""
        commands = frozenset(c["name"] for c in context.commands())
        message = slash_message(payload, str(account.config["slash_command"]), commands)
        if message is None:
            return None
        await context.receive(message)
        said = f"{payload.get('command', '')} {payload.get('text', '')}".strip()
        return {"response_type": "ephemeral", "text": said}

    async def webhook(self, account: Account, request: WebhookRequest,
                      context: ChannelContext) -> WebhookResponse:
        """HTTP mode's ``events`` and ``commands`` routes (see ``events``)."""
        config = account.config
        if config["mode"] != "http":
            return WebhookResponse(404, {"error": {"message": (
                f"slack account {account.account_id!r} uses Socket Mode (set mode = \"http\" "
                "and signing_secret to receive HTTP events)")}})
        api = await self._api(account)
        from . import events

        async def on_event(payload: Mapping[str, Any]) -> None:
            await self._event(account, context, api, payload)

        async def on_command(payload: Mapping[str, Any]) -> dict[str, Any] | None:
            return await self._slash(account, context, api, payload)

        return await events.serve(str(config["signing_secret"]), request, on_event,
                                  on_command)

    async def fetch(self, account: Account, attachment: Attachment) -> tuple[bytes, str]:
        """An inbound file, downloaded with the bot token."""
        api = await self._api(account)
        data, mime = await api.download(attachment.file_id)
        return data, attachment.mime_type or mime

    # -- sending -----------------------------------------------------------------------------

    async def send(self, account: Account, message: OutboundMessage) -> DeliveryReceipt:
        """A text part (``chat.postMessage``, mrkdwn) or a file (the upload API); the
        receipt is the message ``ts`` (or the file id)."""
        api = await self._api(account)
        target = message.target
        thread = _thread_of(target)
        if message.media is not None:
            file_id = await api.upload(target.to, message.media, thread)
            return DeliveryReceipt((file_id,) if file_id else ())
        ts = await api.post(target.to, mrkdwn(message.text), thread)
        return DeliveryReceipt((ts,) if ts else ())

    async def edit(self, account: Account, target: Target, message_id: str, text: str) -> None:
        """``chat.update`` of a preview (or the preview becoming the answer)."""
        api = await self._api(account)
        await api.update(target.to, message_id, mrkdwn(text))

    async def typing(self, account: Account, target: Target) -> None:
        """Slack shows no typing indicator for bots on the Events API (capabilities say
        ``typing=False``, so the core never asks)."""
        return None

    async def probe(self, account: Account) -> dict[str, Any]:
        api = await self._api(account)
        return await api.probe()
