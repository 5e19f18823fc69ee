"""Durable outbound: pending intents -> parts -> platform sends -> receipts.

One worker task per gateway sends every pending intent that is due: it chunks the text to the
account's limit (deterministically, so a restart finds the same parts), skips parts that have a
receipt, sends the rest with the idempotency key ``<intent>:<part>`` and commits each part's
receipt right after the platform accepted it. The first part of a reply that was streamed as a
preview edits the preview in place. Retryable failures (5xx, timeouts, rate limits) back off
exponentially — after the platform's ``retry_after`` when it gave one — and an intent that
fails ``delivery.max_attempts`` times, or once for good (a 4xx), is ``failed`` and shows in
``channels.status``. Conversations are served concurrently, one intent at a time each, in the
order the intents were created — up to ``PER_ACCOUNT`` conversations of one account and
``IN_FLIGHT`` in all at once, so one busy chat never holds up the others and no platform sees
an unbounded burst.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clawgate.channels.accounts import AccountConfig
from clawgate.channels.chunker import chunk
from clawgate.channels.media import MediaLoader, display_name, split_media
from clawgate.channels.streaming import Blocks
from clawgate.chat import Channel, ChannelSendError, OutboundMessage, Target
from clawgate.config import DeliveryConfig
from clawgate.diagnostics.metrics import Metrics
from clawgate.errors import Unavailable
from clawgate.sessions.channelstore import Intent
from clawgate.sessions.store import SessionStore
from clawgate.types import now_ms

log = logging.getLogger("clawgate.channels.outbound")

BATCH = 64
PRUNE_EVERY_S = 3600.0
KEEP_MS = 7 * 86_400_000  # dedupe rows and finished intents older than this are forgotten
MAX_WATCHED = 10_000  # intents whose end someone awaits at once (cron announcements)
# Conversations sending at once: per account (platform limits are per bot: Telegram ~30
# messages/s, Discord 50 requests/s) and in all (one worker's share of the loop).
PER_ACCOUNT = 8
IN_FLIGHT = 64

Slot = tuple[str, str, str]  # channel, account, conversation (the target's chat id)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A channel account that can send now."""

    channel: Channel
    account: AccountConfig


Lookup = Callable[[str, str], Endpoint | None]
Owns = Callable[[str, str], bool]
NOT_OWNER_WAIT_S = 2.0  # how often a replica looks again at due intents another one owns


class Outbound:
    """The worker that delivers every pending intent of the store."""

    def __init__(self, store: SessionStore, lookup: Lookup, config: DeliveryConfig,
                 metrics: Metrics, previews: dict[str, asyncio.Lock],
                 media: MediaLoader, blocks: Blocks | None = None,
                 owns: Owns | None = None) -> None:
        self._store = store
        # Which accounts this replica sends for (their owner; see channels.runtime): due
        # intents of the others are left to their owner.
        self._owns = owns
        self._skipped = False
        self._media = media
        self._lookup = lookup
        self._config = config
        self._metrics = metrics
        self._previews = previews  # run id -> held while its preview is being streamed
        self._blocks = blocks or Blocks()  # what block streaming already sent of each reply
        self._wakeup = asyncio.Event()
        self.idle = asyncio.Event()  # set while nothing is due and nothing is being sent
        self._busy: dict[Slot, asyncio.Task[None]] = {}
        self._per_account: dict[tuple[str, str], int] = {}
        self._last_prune = 0.0
        self._watchers: dict[str, set[asyncio.Event]] = {}  # intent id -> who awaits its end

    def watch(self, intent_id: str) -> asyncio.Event:
        """An event set each time an attempt at ``intent_id`` ends (sent, failed or retried
        later); the caller reads the intent's status and calls ``unwatch`` when done."""
        if len(self._watchers) >= MAX_WATCHED and intent_id not in self._watchers:
            raise Unavailable(f"{MAX_WATCHED} deliveries are awaited already")
        event = asyncio.Event()
        self._watchers.setdefault(intent_id, set()).add(event)
        return event

    def unwatch(self, intent_id: str, event: asyncio.Event) -> None:
        watchers = self._watchers.get(intent_id)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self._watchers[intent_id]

    def _attempted(self, intent_id: str) -> None:
        for event in self._watchers.get(intent_id, ()):
            event.set()

    def wake(self) -> None:
        """A new intent exists (or an account came up): look now."""
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver until cancelled (the channel runtime owns the task)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wakeup.clear()
                due = await self._store.channels.due(BATCH)
                if self._owns is not None:
                    mine = [i for i in due if self._owns(i.channel, i.account)]
                    self._skipped = len(mine) < len(due)
                    due = mine
                for slot, intents in _by_conversation(due).items():
                    account = slot[:2]
                    if (slot in self._busy or len(self._busy) >= IN_FLIGHT
                            or self._per_account.get(account, 0) >= PER_ACCOUNT):
                        continue  # picked up when a sender of that account finishes
                    task = loop.create_task(self._conversation(intents),
                                            name=f"outbound:{':'.join(slot)}")
                    self._busy[slot] = task
                    self._per_account[account] = self._per_account.get(account, 0) + 1
                    task.add_done_callback(functools.partial(self._done, slot))
                if not due and not self._busy:
                    self.idle.set()
                else:
                    self.idle.clear()
                if loop.time() - self._last_prune > PRUNE_EVERY_S:
                    self._last_prune = loop.time()
                    await self._store.channels.prune(KEEP_MS)
                await self._sleep()
        finally:
            for task in list(self._busy.values()):
                task.cancel()
            await asyncio.gather(*self._busy.values(), return_exceptions=True)

    def _done(self, slot: Slot, _task: asyncio.Task[None]) -> None:
        self._busy.pop(slot, None)
        account = slot[:2]
        left = self._per_account.get(account, 1) - 1
        if left:
            self._per_account[account] = left
        else:
            self._per_account.pop(account, None)
        self._wakeup.set()

    async def _sleep(self) -> None:
        due = await self._store.channels.next_due_at()
        wait = None if due is None else max(0.0, (due - now_ms()) / 1000)
        if wait == 0.0 and self._busy:
            wait = None  # the due ones belong to conversations that are sending: wait for them
        if self._skipped:  # due ones of accounts another replica owns: look again later
            wait = NOT_OWNER_WAIT_S if wait is None else max(wait, NOT_OWNER_WAIT_S)
        try:
            await asyncio.wait_for(self._wakeup.wait(), wait)
        except TimeoutError:
            pass

    async def _conversation(self, intents: list[Intent]) -> None:
        """Send one conversation's due intents in order; the worker looks again when done."""
        for intent in intents:
            await self.deliver(intent)

    async def deliver(self, intent: Intent) -> None:
        endpoint = self._lookup(intent.channel, intent.account)
        if endpoint is None:
            await self._failed_attempt(intent, ChannelSendError(
                f"no running account {intent.channel}/{intent.account}"))
            self._attempted(intent.intent_id)
            return
        preview_lock = self._previews.get(intent.run_id or "")
        if preview_lock is not None:
            async with preview_lock:  # the preview of this run is not being sent right now
                pass
        try:
            await self._send(endpoint, intent)
        except ChannelSendError as exc:
            await self._failed_attempt(intent, exc)
        except Exception as exc:  # a plugin bug: retried like a transient failure, logged
            log.warning("%s/%s: sending intent %s failed: %r", intent.channel, intent.account,
                        intent.intent_id, exc)
            await self._failed_attempt(intent, ChannelSendError(f"{type(exc).__name__}: {exc}"))
        else:
            await self._store.channels.finish(intent.intent_id, "sent")
            self._metrics.inc("channel_outbound_total", channel=intent.channel, status="sent")
            self._blocks.forget(intent.run_id or "")
        finally:
            self._attempted(intent.intent_id)

    async def _send(self, endpoint: Endpoint, intent: Intent) -> None:
        channel, account = endpoint.channel, endpoint.account
        caps = channel.capabilities
        limit = account.policy.text_chunk_limit or caps.text_limit
        reply = self._blocks.rest(intent.run_id, intent.text) \
            if intent.run_id and intent.kind == "reply" else intent.text
        text, sources = split_media(reply)
        if not caps.media:  # the platform cannot take files: links stay as text
            text = "\n".join([text, *(f"Attachment: {display_name(s)} ({s})"
                                     if s.lower().startswith("http") else
                                     f"[attachment {display_name(s)} not sent: this channel "
                                     "takes no files]" for s in sources)]).strip()
            sources = ()
        parts = chunk(text, limit, max_lines=caps.max_lines) if text else []
        total = len(parts) + len(sources)
        done = await self._store.channels.receipts(intent.intent_id)
        preview = (await self._store.channels.preview(intent.run_id)
                   if intent.run_id and caps.edit else None)
        target = Target.load(intent.target)
        origin = "gateway" if intent.kind in ("notice", "pairing") else "reply"
        assert account.account is not None  # a running account has its platform config
        for number in range(1, total + 1):
            if number in done:
                continue
            part_target = target
            if number > 1 and account.policy.reply_to_mode != "all":
                part_target = Target(target.to, target.chat_type, target.thread, None)
            key = f"{intent.intent_id}:{number}"
            if number > len(parts):
                message = await self._media_part(sources[number - len(parts) - 1], part_target,
                                                 key, number, total, origin)
            elif number == 1 and preview is not None and await self._edited(
                    endpoint, part_target, preview, parts[0], intent):
                await self._store.channels.commit_part(intent.intent_id, number, [preview])
                continue
            else:
                message = OutboundMessage(part_target, parts[number - 1], key, number, total,
                                          origin)  # type: ignore[arg-type]
            receipt = await channel.send(account.account, message)
            await self._store.channels.commit_part(intent.intent_id, number,
                                                   list(receipt.message_ids))

    async def _edited(self, endpoint: Endpoint, target: Target, preview: str, text: str,
                      intent: Intent) -> bool:
        """Turn the streamed preview into the reply's first part. False when the platform
        refuses the edit for good (the user deleted the preview, it is too old to edit): the
        part is then sent as a new message rather than failing the whole reply."""
        assert endpoint.account.account is not None
        try:
            await endpoint.channel.edit(endpoint.account.account, target, preview, text)
        except ChannelSendError as exc:
            if exc.retryable:
                raise
            log.info("%s/%s: preview %s of intent %s cannot be edited (%s); sending the reply "
                     "as a new message", intent.channel, intent.account, preview,
                     intent.intent_id, exc)
            return False
        return True

    async def _media_part(self, source: str, target: Target, key: str, number: int,
                          total: int, origin: str) -> OutboundMessage:
        """The part that sends one file; a file that cannot be had for good (refused path,
        missing, too large) becomes a one-line note instead, so the rest is still sent."""
        try:
            media = await self._media.load(source)
        except ChannelSendError as exc:
            if exc.retryable:
                raise
            log.warning("reply attachment not sent: %s", exc)
            return OutboundMessage(target, f"[attachment {display_name(source)} not sent]", key,
                                   number, total, origin)  # type: ignore[arg-type]
        return OutboundMessage(target, "", key, number, total, origin,  # type: ignore[arg-type]
                               media)

    async def _failed_attempt(self, intent: Intent, exc: ChannelSendError) -> None:
        attempts = intent.attempts + 1
        if not exc.retryable or attempts >= self._config.max_attempts:
            log.warning("%s/%s: giving up on intent %s after %d attempt(s): %s", intent.channel,
                        intent.account, intent.intent_id, attempts, exc)
            await self._store.channels.finish(intent.intent_id, "failed", str(exc))
            self._blocks.forget(intent.run_id or "")
            self._metrics.inc("channel_outbound_total", channel=intent.channel,
                              status="failed")
            return
        backoff = min(self._config.backoff_max_ms,
                      self._config.backoff_base_ms * 2 ** (attempts - 1))
        if exc.retry_after_s is not None:
            backoff = max(backoff, int(exc.retry_after_s * 1000))
        await self._store.channels.retry(intent.intent_id, at=now_ms() + backoff,
                                         error=str(exc))
        self._metrics.inc("channel_outbound_retries_total", channel=intent.channel)


def _by_conversation(due: list[Intent]) -> dict[Slot, list[Intent]]:
    """Due intents grouped by the conversation they go to, each group in creation order."""
    groups: dict[Slot, list[Intent]] = {}
    for intent in due:
        slot = (intent.channel, intent.account, str(intent.target.get("to", "")))
        groups.setdefault(slot, []).append(intent)
    return groups


def describe(intent: Intent) -> dict[str, Any]:
    """A failed or pending intent as ``channels.status`` shows it."""
    return {"intentId": intent.intent_id, "kind": intent.kind, "status": intent.status,
            "attempts": intent.attempts, "lastError": intent.last_error,
            "runId": intent.run_id, "updatedAt": intent.updated_at}
