"""The inbound pipeline, one path for every channel: normalize (the plugin) -> drop echoes ->
dedupe -> gate (DM policy with pairing, group policy, sender allowlists, mention gating) ->
route to an agent -> session key -> durable admission through the turn API.

When ``receive`` returns, the message is admitted (its dedupe row and its run committed in one
transaction) or refused for good, so the plugin may acknowledge the platform then (I11). A
platform that redelivers after a crash gets ``duplicate`` for what was admitted.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from clawgate.agents import commands
from clawgate.agents.engine import Engine
from clawgate.agents.roster import Agent
from clawgate.agents.turn import Submission, Turn
from clawgate.channels.accounts import AccountConfig
from clawgate.channels.gating import GroupContext, dm_gate, group_gate, route
from clawgate.chat import Attachment, Channel, InboundMessage, Received, Target
from clawgate.config import Settings
from clawgate.providers.catalog import Catalog
from clawgate.sessions import keys
from clawgate.sessions.channelstore import Delivery, DuplicateMessage

if TYPE_CHECKING:
    from clawgate.diagnostics.metrics import Metrics

log = logging.getLogger("clawgate.channels")

ORIGIN = "clawgate"  # the origin of the gateway's own notices (never processed when echoed)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I
CODE_LENGTH = 8
PAIRING_TTL_MS = 3_600_000
MAX_PENDING_PAIRINGS = 3
MAX_ATTACHMENTS = 8
MAX_IMAGE_BYTES = 10 * 1024 * 1024


def pairing_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def pairing_text(channel: str, code: str) -> str:
    return (f"Hi! I can't talk with you yet. Ask my owner to approve this code: {code}\n"
            f"(it expires in an hour; they run: clawgate pairing approve {channel} {code})")


class Inbound:
    """``receive`` for every account of every channel."""

    def __init__(self, settings: Settings, engine: Engine, metrics: Metrics,
                 follow: Callable[[AccountConfig, Turn, Target], None],
                 wake: Callable[[], None], channel: Callable[[str], Channel | None],
                 paired: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.settings = settings
        self._paired = paired  # told of each new pairing request (the channels.pairing event)
        self._channel = channel  # the plugin object of a channel id
        self.engine = engine
        self.store = engine.store
        self.metrics = metrics
        self.context = GroupContext()
        self._follow = follow  # typing and preview streaming of an admitted turn
        self._wake = wake  # the outbound worker has a new intent

    async def receive(self, account: AccountConfig, message: InboundMessage) -> Received:
        channel, account_id = account.channel, account.account_id
        self.metrics.inc("channel_inbound_total", channel=channel)
        if message.from_self or message.origin == ORIGIN:
            return Received("dropped", reason="the gateway's own message")
        if await self.store.channels.seen(channel, account_id, message.message_id):
            return Received("duplicate")
        policy = account.policy
        group = message.chat_type != "direct"
        if group:
            gate = group_gate(policy, message)
        else:
            approved = await self.store.channels.allowed(channel, account_id, message.sender)
            gate = dm_gate(policy, message.sender, approved)
        reply_to = message.message_id if policy.reply_to_mode != "off" else None
        target = Target(message.conversation, message.chat_type,
                        thread=message.thread or message.topic, reply_to=reply_to)
        # Chatter is context for the session it belongs to: a thread or forum topic is a
        # session of its own, so it keeps its own context.
        conversation = (channel, account_id, message.conversation, message.thread or "",
                        message.topic or "")
        if gate.verdict == "context":
            self.context.keep(conversation, message, policy.history_limit)
            return Received("context", reason=gate.reason)
        if gate.verdict == "drop":
            log.info("%s/%s: dropped a message from %s: %s", channel, account_id,
                     message.sender, gate.reason)
            return Received("dropped", reason=gate.reason)
        if gate.verdict == "pairing":
            return await self._pair(account, message, target)
        agent = self.engine.roster.get(route(account, message, self.settings.config.bindings,
                                             self.engine.roster.default.id))
        key = self._session_key(account, message, agent.id)
        if group and self._is_command(message.text):
            text = message.text  # the engine answers it: no sender label, no kept context
        else:
            text = self.context.render(conversation, message, group)
        content = await self._content(account, message, text, agent)
        try:
            turn = await self.engine.submit(Submission(
                content, session_key=key, agent_id=agent.id, channel=channel,
                inbound=(channel, account_id, message.message_id),
                delivery=Delivery(channel, account_id, target.dump())),
                follow=True)
        except DuplicateMessage:
            return Received("duplicate")
        if turn.command is not None or turn.claimed_by is not None:
            return await self._answered(account, message, target, turn)
        self._follow(account, turn, target)
        return Received("admitted", key, turn.run_id)

    async def _content(self, account: AccountConfig, message: InboundMessage, text: str,
                       agent: Agent) -> str | list[dict[str, Any]]:
        """The user message: the text, and the attachments — images as image parts when the
        agent's model takes images and the plugin can fetch them (``fetch``), otherwise a
        placeholder the model can read (``[image: photo.jpg, image/jpeg]``)."""
        if not message.attachments:
            return text
        fetch = self._fetcher(account)
        images = self._takes_images(agent)
        parts: list[dict[str, Any]] = []
        notes: list[str] = []
        for item in message.attachments[:MAX_ATTACHMENTS]:
            if item.kind == "image" and images and fetch is not None and (
                    item.size is None or item.size <= MAX_IMAGE_BYTES):
                try:
                    data, mime = await fetch(item)
                except Exception as exc:  # the text still goes through
                    log.warning("%s: could not fetch attachment %s: %r", account.channel,
                                item.file_id, exc)
                else:
                    url = f"data:{mime};base64,{base64.b64encode(data).decode()}"
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                    continue
            what = ", ".join(x for x in (item.name, item.mime_type) if x)
            notes.append(f"[{item.kind}{': ' + what if what else ''}]")
        body = "\n".join(x for x in (text, *notes) if x)
        if not parts:
            return body
        return [{"type": "text", "text": body}, *parts]

    def _fetcher(self, account: AccountConfig) -> Callable[
            [Attachment], Awaitable[tuple[bytes, str]]] | None:
        channel = self._channel(account.channel)
        fetch = getattr(channel, "fetch", None)
        if fetch is None or account.account is None:
            return None
        platform = account.account

        async def get(item: Attachment) -> tuple[bytes, str]:
            data, mime = await fetch(platform, item)
            return bytes(data), str(mime)

        return get

    def _is_command(self, text: str) -> bool:
        """A known slash command (``/status@bot`` in a group must reach the engine as sent)."""
        command = commands.parse(text)
        return command is not None and commands.known(
            command[0], self.engine.host.current.registry.commands)

    def _takes_images(self, agent: Agent) -> bool:
        registry = self.engine.host.current.registry
        catalog = Catalog.of(e.provider for e in registry.providers.values())
        ref = agent.models[0]
        info = catalog.get(ref.provider, ref.model)
        return info is not None and "image" in info.input

    def _session_key(self, account: AccountConfig, message: InboundMessage, agent: str) -> str:
        session = self.settings.config.session
        if message.chat_type == "direct":
            return keys.dm_key(agent, message.sender, account.policy.dm_scope or session.dm_scope,
                               channel=account.channel, account=account.account_id,
                               main=session.main_key)
        kind: Literal["group", "channel"] = "channel" if message.chat_type == "channel" \
            else "group"
        return keys.group_key(agent, account.channel, message.conversation, kind,
                              thread=message.thread, topic=message.topic)

    async def _answered(self, account: AccountConfig, message: InboundMessage, target: Target,
                        turn: Turn) -> Received:
        """A command (or a claim) answered without a run: its reply is an intent, recorded
        with the message's dedupe row."""
        turn.close()
        result = await turn.result()
        reply = {"target": target.dump(), "text": result.text} if result.text else None
        try:
            await self.store.channels.record(account.channel, account.account_id,
                                             message.message_id, "command",
                                             session_key=turn.session_key, reply=reply)
        except DuplicateMessage:
            return Received("duplicate")
        self._wake()
        return Received("command", turn.session_key, turn.run_id)

    async def _pair(self, account: AccountConfig, message: InboundMessage,
                    target: Target) -> Received:
        channel = account.channel
        try:
            outcome = await self.store.channels.request_pairing(
                channel, account.account_id, message.sender, message.sender_name,
                pairing_code(), ttl_ms=PAIRING_TTL_MS, max_pending=MAX_PENDING_PAIRINGS,
                message_id=message.message_id,
                reply=lambda code: {"target": Target(message.conversation, "direct").dump(),
                                    "text": pairing_text(channel, code)})
        except DuplicateMessage:
            return Received("duplicate")
        if outcome == "created":
            self._wake()
            if self._paired is not None:
                self._paired({"action": "requested", "channel": channel,
                              "accountId": account.account_id, "id": message.sender,
                              "name": message.sender_name})
        elif outcome == "full":
            log.warning("%s/%s: pairing refused for %s: %d requests are pending already",
                        channel, account.account_id, message.sender, MAX_PENDING_PAIRINGS)
        return Received("pairing", reason=f"pairing {outcome}")
