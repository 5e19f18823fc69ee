"""Following an admitted channel turn while it runs: the typing indicator, and preview
streaming — one message sent when text first appears, then edited in place at most once per
``EDIT_INTERVAL_S`` — where the platform can edit (``capabilities.edit``) and the account's
``streaming`` is ``partial``.

The preview is best effort: a failed typing call or edit is logged and skipped. The final
reply never comes from here: it is the run's durable intent, whose first part the outbound
worker sends as an edit of the preview (recorded in the store) so the preview becomes the
answer. While a preview send is in flight the run's lock is held, so the worker cannot race
it and leave a stale preview beside the answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from clawgate.agents.turn import Turn
from clawgate.channels.accounts import AccountConfig
from clawgate.channels.media import split_media
from clawgate.chat import Channel, OutboundMessage, Target
from clawgate.sessions.store import SessionStore

log = logging.getLogger("clawgate.channels.streaming")
T = TypeVar("T")

EDIT_INTERVAL_S = 1.0
TYPING_EVERY_S = 4.0  # Telegram's indicator lasts about 5 s
PREVIEW_MIN_CHARS = 8  # too little text is not worth a message


async def follow(channel: Channel, account: AccountConfig, turn: Turn, target: Target,
                 store: SessionStore, lock: asyncio.Lock) -> None:
    """Typing and preview for ``turn`` until it ends."""
    caps = channel.capabilities
    assert account.account is not None
    platform = account.account
    previewing = caps.edit and account.policy.streaming == "partial"
    limit = account.policy.text_chunk_limit or caps.text_limit
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
            if event.stream != "assistant" or not previewing:
                continue
            text += str(event.data.get("delta", ""))
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


async def _quietly(call: Awaitable[T], what: str) -> T | None:
    try:
        return await call
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # previews and typing are best effort
        log.debug("channel %s failed: %r", what, exc)
        return None
