"""Following an admitted channel turn while it runs: the typing indicator, and either preview
streaming — one message sent when text first appears, then edited in place at most once per
``EDIT_INTERVAL_S`` — where the platform can edit (``capabilities.edit``) and the account's
``streaming`` is ``partial``, or block streaming (``streaming = "block"``, any platform): each
completed block of at least ``BLOCK_MIN_CHARS`` — up to a paragraph break outside a code fence,
or a whole part when the text outgrows one — is sent as its own message while the turn runs.

The preview is best effort: a failed typing call or edit is logged and skipped. The final
reply never comes from here: it is the run's durable intent, whose first part the outbound
worker sends as an edit of the preview (recorded in the store) so the preview becomes the
answer. Blocks already sent are remembered in ``Blocks`` (in memory) and the worker sends only
the rest of the final reply; after a restart, or when the final text does not begin with what
the blocks showed, the whole reply is sent. While a preview or block send is in flight the
run's lock is held, so the worker cannot race it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TypeVar

from clawgate.agents.turn import Turn
from clawgate.channels.accounts import AccountConfig
from clawgate.channels.chunker import chunk
from clawgate.channels.media import split_media
from clawgate.chat import Channel, OutboundMessage, Target
from clawgate.sessions.store import SessionStore

log = logging.getLogger("clawgate.channels.streaming")
T = TypeVar("T")

EDIT_INTERVAL_S = 1.0
TYPING_EVERY_S = 4.0  # Telegram's indicator lasts about 5 s
PREVIEW_MIN_CHARS = 8  # too little text is not worth a message
BLOCK_MIN_CHARS = 400  # a block is at least this long (the last one of a reply may be shorter)
MAX_RUNS = 10_000  # runs whose blocks are remembered until their reply is delivered
_FENCE_LINE = re.compile(r"^\s{0,3}(`{3,}|~{3,})", re.MULTILINE)


class Blocks:
    """What block streaming already sent of each run's reply (the text prefix), until the
    outbound worker delivered the rest. Bounded: the oldest runs are forgotten first (their
    replies are then sent whole)."""

    def __init__(self, limit: int = MAX_RUNS) -> None:
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._limit = limit

    def record(self, run_id: str, prefix: str) -> None:
        self._sent[run_id] = prefix
        self._sent.move_to_end(run_id)
        while len(self._sent) > self._limit:
            self._sent.popitem(last=False)

    def rest(self, run_id: str, text: str) -> str:
        """The part of the final reply ``text`` that no block showed yet."""
        sent = self._sent.get(run_id)
        if not sent or not text.startswith(sent):
            return text
        return text[len(sent):].lstrip("\n")

    def forget(self, run_id: str) -> None:
        self._sent.pop(run_id, None)


def block_end(pending: str, limit: int, max_lines: int | None = None) -> int:
    """Where the next block of ``pending`` (the text not yet sent) ends, or 0 while it is not
    complete: past the last paragraph break outside a code fence that leaves the block at
    least ``BLOCK_MIN_CHARS`` long, or at the end of the first part once the text outgrows a
    part (where the chunker would cut it)."""
    if len(pending) > limit:
        first = chunk(pending, limit, max_lines=max_lines)[0]
        return len(first) if pending.startswith(first) else 0
    cut = pending.rfind("\n\n")
    while cut >= BLOCK_MIN_CHARS:
        if len(_FENCE_LINE.findall(pending, 0, cut)) % 2 == 0:  # not inside a code fence
            return cut + 2
        cut = pending.rfind("\n\n", 0, cut)
    return 0


async def follow(channel: Channel, account: AccountConfig, turn: Turn, target: Target,
                 store: SessionStore, lock: asyncio.Lock, blocks: Blocks) -> None:
    """Typing and preview (or blocks) for ``turn`` until it ends."""
    caps = channel.capabilities
    assert account.account is not None
    platform = account.account
    previewing = caps.edit and account.policy.streaming == "partial"
    blocking = account.policy.streaming == "block"
    limit = account.policy.text_chunk_limit or caps.text_limit
    sent = 0  # how much of ``text`` blocks have shown
    text = ""
    preview: str | None = None
    shown = ""
    last_edit = 0.0
    next_typing = 0.0
    events = turn.events()
    try:
        while True:
            if caps.typing and time.monotonic() >= next_typing:
                next_typing = time.monotonic() + TYPING_EVERY_S
                await _quietly(channel.typing(platform, target), "typing")
            try:
                event = await asyncio.wait_for(anext(events), TYPING_EVERY_S)
            except TimeoutError:
                continue
            except StopAsyncIteration:
                return
            if event.stream != "assistant" or not (previewing or blocking):
                continue
            text += str(event.data.get("delta", ""))
            if blocking:
                shown_upto = await _send_blocks(channel, account, turn, target, lock, blocks,
                                                text, sent, limit)
                if shown_upto is None:
                    blocking = False  # a failed send, or a file: the final reply has the rest
                else:
                    sent = shown_upto
                continue
            due = time.monotonic() - last_edit >= EDIT_INTERVAL_S
            if not due or len(text) < PREVIEW_MIN_CHARS or text == shown:
                continue
            visible = split_media(text)[0] if "MEDIA:" in text.upper() else text
            if len(visible) < PREVIEW_MIN_CHARS:
                continue
            visible = visible if len(visible) <= limit else visible[:limit - 1] + "…"
            async with lock:
                if turn.done:
                    return  # the answer is on its way: no preview now
                if preview is None:
                    receipt = await _quietly(channel.send(platform, OutboundMessage(
                        target, visible, f"preview:{turn.run_id}")), "preview")
                    if receipt is not None and receipt.message_ids:
                        preview = receipt.message_ids[0]
                        await store.channels.set_preview(turn.run_id, preview)
                else:
                    await _quietly(channel.edit(platform, target, preview, visible), "edit")
            shown, last_edit = text, time.monotonic()
    finally:
        await events.aclose()


async def _send_blocks(channel: Channel, account: AccountConfig, turn: Turn, target: Target,
                       lock: asyncio.Lock, blocks: Blocks, text: str, sent: int,
                       limit: int) -> int | None:
    """Send every completed block of ``text`` after offset ``sent``; the new offset, or None to
    stop block streaming for this run."""
    assert account.account is not None
    caps = channel.capabilities
    while end := block_end(text[sent:], limit, caps.max_lines):
        block = text[sent:sent + end]
        if "MEDIA:" in block.upper():
            return None  # files go out with the final reply, after its text
        async with lock:
            if turn.done:
                return None  # the answer is on its way
            if block.strip():
                receipt = await _quietly(channel.send(account.account, OutboundMessage(
                    target, block.strip("\n"), f"block:{turn.run_id}:{sent}")), "block")
                if receipt is None:
                    return None
            sent += end
            blocks.record(turn.run_id, text[:sent])
    return sent


async def _quietly(call: Awaitable[T], what: str) -> T | None:
    try:
        return await call
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # previews and typing are best effort
        log.debug("channel %s failed: %r", what, exc)
        return None
