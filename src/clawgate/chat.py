"""The vocabulary of chat platforms: what a channel plugin provides, and what it gets from the
core (all exported from ``clawgate``; the runtime that uses them is ``clawgate.channels``).

A channel plugin supplies platform mechanics only: its accounts' platform settings (a JSON
Schema), a long-running ``monitor`` per account, ``send`` returning a delivery receipt, ``edit``,
``typing``, ``probe``, and static :class:`Capabilities`. The core owns everything else —
session keys, routing, gating and pairing, dedupe, queueing, chunking, durable delivery and the
transcript — and hands the plugin a :class:`ChannelContext` to report what it receives.

A minimal channel::

    class Echoer:
        id = "echoer"
        label = "Echoer"
        capabilities = Capabilities(chat_types=("direct",), text_limit=2000)
        config_schema = {"type": "object", "properties": {"url": {"type": "string"}}}
        secrets = ()

        async def monitor(self, account, context):   # until cancelled
            async for event in my_platform_events(account.config["url"]):
                await context.receive(InboundMessage(...))   # then ack the platform

        async def send(self, account, message):
            return DeliveryReceipt((await post(message.target.to, message.text)),)

        async def edit(self, account, target, message_id, text): ...
        async def typing(self, account, target): ...
        async def probe(self, account): return {"ok": True}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from clawgate.errors import ClawgateError

ChatType = Literal["direct", "group", "channel"]
Markup = Literal["markdown", "html", "mrkdwn", "plain"]
MediaKind = Literal["image", "file", "audio", "video"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """Static facts about a platform. ``text_limit`` is the longest message part (characters)
    and ``max_lines`` the most lines per part (Discord's 17); ``edit`` means previews can be
    edited in place; ``markup`` is what ``send`` expects the core to hand it (the plugin
    renders Markdown itself when it says ``markdown``)."""

    chat_types: tuple[ChatType, ...] = ("direct",)
    threads: bool = False
    edit: bool = False
    reactions: bool = False
    media: bool = False
    typing: bool = False
    text_limit: int = 4000
    max_lines: int | None = None
    markup: Markup = "markdown"


@dataclass(frozen=True, slots=True)
class Account:
    """One configured account of a channel: ``config`` holds the platform keys the plugin's
    schema declares (secrets given as ``<key>_env`` already resolved)."""

    channel: str
    account_id: str
    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with an inbound message (fetched by the plugin only on demand)."""

    kind: Literal["image", "file", "audio", "video", "sticker"]
    file_id: str
    mime_type: str | None = None
    size: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A platform message, normalized by the plugin.

    ``message_id`` must be unique per account (it is the dedupe key); ``conversation`` is the
    chat / channel / DM id replies go to; ``mentioned`` is the platform's own notion (an
    ``@bot`` entity, a reply to the bot); ``from_self`` marks the bot's own messages (echoes),
    which the core drops.
    """

    message_id: str
    sender: str
    text: str
    conversation: str
    chat_type: ChatType = "direct"
    thread: str | None = None
    topic: str | None = None
    mentioned: bool = False
    sender_name: str | None = None
    reply_to: str | None = None
    attachments: tuple[Attachment, ...] = ()
    from_self: bool = False
    # The gateway's own notices carry an origin; one that comes back in is never processed.
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes on the platform."""

    to: str  # the conversation id
    chat_type: ChatType = "direct"
    thread: str | None = None
    reply_to: str | None = None  # a platform message id to reply to

    def dump(self) -> dict[str, Any]:
        return {"to": self.to, "chat_type": self.chat_type, "thread": self.thread,
                "reply_to": self.reply_to}

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> Target:
        return cls(str(data["to"]), data.get("chat_type") or "direct", data.get("thread"),
                   data.get("reply_to"))


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    """A file a reply carries (a ``MEDIA:`` token the core split out of the text and loaded):
    its bytes always, and the URL it came from when it was one (a platform that fetches URLs
    itself may pass that instead)."""

    kind: MediaKind
    name: str
    mime_type: str
    data: bytes = field(repr=False)
    url: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One part of a reply. ``idempotency_key`` (``<intent id>:<part>``) is stable across
    retries and restarts; a platform that supports it should pass it along. ``origin`` says who
    speaks: ``reply`` (the agent) or ``gateway`` (the gateway's own notice). A part with
    ``media`` is one file (``text`` is then empty); the core sends files only to channels whose
    capabilities say ``media``, after the text parts."""

    target: Target
    text: str
    idempotency_key: str
    part: int = 1
    parts: int = 1
    origin: Literal["reply", "gateway"] = "reply"
    media: OutboundMedia | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """The platform's ids of what ``send`` created (first is the primary one)."""

    message_ids: tuple[str, ...] = ()


class ChannelSendError(ClawgateError):
    """``send``/``edit`` failed. ``retryable`` (5xx, timeouts, rate limits) means the core
    tries again later, after ``retry_after_s`` when the platform said so; otherwise the intent
    fails and shows in ``channels.status``."""

    def __init__(self, message: str, *, retryable: bool = True,
                 retry_after_s: float | None = None) -> None:
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        super().__init__(message)


class ChannelAuthError(ClawgateError):
    """The platform refused the account's credentials (the monitor stops retrying fast and the
    account shows the ``fix``)."""

    def __init__(self, message: str, *, fix: str = "") -> None:
        self.fix = fix
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Received:
    """What became of an inbound message (``context.receive``'s answer)."""

    outcome: Literal["admitted", "duplicate", "command", "pairing", "dropped", "context"]
    session_key: str | None = None
    run_id: str | None = None
    reason: str = ""


class ChannelState(Protocol):
    """Small durable values of one account (a polling offset, a cursor)."""

    async def get(self, name: str) -> Any: ...

    async def set(self, name: str, value: Any) -> None: ...


class ChannelContext(Protocol):
    """What the core gives a channel's monitor and webhook handler."""

    @property
    def account(self) -> Account: ...

    @property
    def state(self) -> ChannelState: ...

    async def receive(self, message: InboundMessage) -> Received:
        """Run the inbound pipeline; when it returns, the message is durable (or was refused
        for good): only then may the platform be acknowledged."""
        ...

    def commands(self) -> list[dict[str, str]]:
        """The slash commands users may send (built-in and registered by plugins), each
        ``{"name", "description", "source"}`` — for a platform's command menu."""
        ...

    def status(self, **fields: Any) -> None:
        """Update the account's status snapshot (``connected``, ``bot``, ``mode``,
        ``lastError``, ...), shown by ``channels.status``."""
        ...


@runtime_checkable
class Channel(Protocol):
    """A chat platform, registered by a plugin with ``api.register_channel``."""

    id: str
    label: str
    capabilities: Capabilities
    config_schema: Mapping[str, Any]  # JSON Schema of one account's platform keys
    secrets: tuple[str, ...]  # keys that may also be given as ``<key>_env``

    async def monitor(self, account: Account, context: ChannelContext) -> None:
        """Receive until cancelled (the core restarts it with backoff when it raises)."""
        ...

    async def send(self, account: Account, message: OutboundMessage) -> DeliveryReceipt: ...

    async def edit(self, account: Account, target: Target, message_id: str,
                   text: str) -> None: ...

    async def typing(self, account: Account, target: Target) -> None: ...

    async def probe(self, account: Account) -> dict[str, Any]: ...

    # Optional, looked up with getattr by the core:
    #   async def webhook(self, account, request: WebhookRequest, context) -> WebhookResponse
    #       serves /channels/<id>/<account>/<path> (a platform calling us).
    #   async def fetch(self, account, attachment: Attachment) -> tuple[bytes, str]
    #       the bytes and MIME type of an inbound attachment (images reach models that
    #       take images).
    #   async def logout(self, account) -> None
    #       forget the platform session (channels.logout).


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """An HTTP request for ``/channels/<channel>/<account>/<path>``, read by the core."""

    method: str
    path: str  # what follows the account
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    status: int = 200
    body: Any = None  # JSON-able
    headers: Mapping[str, str] = field(default_factory=dict)
