"""Transcript reads: ``chat.history`` and ``chat.startup`` (what a chat pane loads first).

A page is the newest ``limit`` messages before ``offset`` (counted from the newest), oldest
first, cut to ``maxBytes`` of JSON (oldest dropped first) and each text part to ``maxChars``.
The answer carries what OpenClaw's clients render around it: ``sessionInfo`` (the session row
with its live run state), ``defaults`` (the agent's model), ``pendingInputs`` (messages admitted
but still queued behind the active run, not yet in the transcript), ``hasMore``/``nextOffset``
for older pages, and a ``deltaCursor``: sending it back as ``cursor`` answers only the messages
stored since (``{kind: "delta", ...}``), or ``{kind: "reset"}`` when the session was reset.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import orjson
from pydantic import Field

from clawgate.agents.lanes import Run
from clawgate.gateway.display import display_message
from clawgate.gateway.methods.sessions import defaults, session_row
from clawgate.gateway.protocol import Params, invalid, parse_params
from clawgate.gateway.rpc import READ, CallContext, CoreMethod
from clawgate.sessions.schema import SessionEntry
from clawgate.sessions.transcript import StoredMessage
from clawgate.types import now_ms

Name = Annotated[str, Field(min_length=1)]
MAX_DELTA = 1000  # messages a cursor read may return; more than that is a reset
PENDING_ID = "pending:"


class HistoryParams(Params):
    sessionKey: Annotated[str, Field(min_length=1, max_length=512)]
    agentId: Name | None = None
    cursor: str | None = None
    limit: int = Field(default=200, ge=1, le=1000)
    maxBytes: int | None = Field(default=None, ge=1024)
    offset: int = Field(default=0, ge=0)
    pendingBefore: int | None = Field(default=None, ge=1)
    inputRunIds: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, min_length=1, max_length=50)
    messageId: Name | None = None
    sessionId: Name | None = None
    maxChars: int | None = Field(default=None, ge=1, le=500_000)


class StartupByShortId(Params):
    shortId: Name
    slugHint: Name | None = None
    agentId: Name
    limit: int | None = Field(default=None, ge=1, le=1000)
    maxBytes: int | None = Field(default=None, ge=1024)


def cursor_of(entry: SessionEntry, messages: list[StoredMessage]) -> str:
    """``<session id>:<seq of the newest message>``: where a delta read starts."""
    return f"{entry.session_id}:{messages[-1].seq if messages else 0}"


def cap_bytes(shown: list[dict[str, Any]], max_bytes: int | None) -> list[dict[str, Any]]:
    """Drop the oldest messages until the page's JSON fits ``max_bytes``."""
    if max_bytes is None:
        return shown
    sizes = [len(orjson.dumps(m)) + 1 for m in shown]
    total = sum(sizes) + 2
    start = 0
    while start < len(shown) and total > max_bytes:
        total -= sizes[start]
        start += 1
    return shown[start:]


def pending_inputs(runs: tuple[Run, ...], max_chars: int | None) -> dict[str, Any]:
    """Messages admitted for this session but still queued (not in the transcript yet)."""
    items: list[dict[str, Any]] = []
    now_mono, now = time.monotonic(), now_ms()
    for run in runs:
        if run.cancel_reason is not None:
            continue
        accepted = now - int((now_mono - run.queued_at) * 1000)
        for i, message in enumerate(run.messages):
            if message.get("role") != "user":
                continue
            stored = StoredMessage(0, run.session_key, "", 0, "user", message.get("content"),
                                   accepted)
            shown = display_message(stored, max_chars) or {}
            shown["__openclaw"] = {"id": f"{PENDING_ID}{run.run_id}:{i}"}
            items.append({"id": f"{run.run_id}:{i}", "acceptedAt": accepted, "state": "pending",
                          "runId": run.run_id, "message": shown})
    return {"items": items[:20], "total": len(items)}


async def input_receipts(ctx: CallContext, run_ids: list[str]) -> list[dict[str, Any]]:
    """Per asked run: ``pending`` while its input waits in the queue, ``consumed`` once it
    joined the transcript; runs this gateway never admitted are left out."""
    engine = ctx.gateway.runtime.engine
    out: list[dict[str, Any]] = []
    for run_id in run_ids:
        run = engine.find_run(run_id)
        if run is not None:
            out.append({"runId": run_id,
                        "state": "pending" if run.status == "queued" else "consumed"})
            continue
        record = await engine.store.get_run(run_id)
        if record is not None or engine.result(run_id) is not None:
            out.append({"runId": run_id, "state": "consumed"})
    return out


async def history(ctx: CallContext, p: HistoryParams, method: str) -> dict[str, Any]:
    engine = ctx.gateway.runtime.engine
    agent, key = engine.session_key(p.sessionKey, p.agentId)
    if p.sessionId is not None and p.messageId is None:
        raise invalid("sessionId requires messageId")
    if p.cursor is not None and (p.offset or p.messageId is not None):
        raise invalid("cursor cannot be used with offset or messageId")
    entry = await engine.store.get(key)
    info = session_row(ctx.gateway, entry) if entry is not None else None
    queued = engine.lanes.queued(key)
    pending = pending_inputs(queued, p.maxChars)
    if p.cursor is not None:
        return await delta(ctx, p, entry, info, pending)
    rows: list[StoredMessage] = []
    more = False
    if entry is not None:
        rows = await engine.store.transcript(key, limit=p.offset + p.limit + 1)
        more = len(rows) > p.offset + p.limit
        rows = rows[-(p.offset + p.limit):len(rows) - p.offset] if p.offset else rows[-p.limit:]
    shown = [d for d in (display_message(m, p.maxChars) for m in rows) if d is not None]
    capped = cap_bytes(shown, p.maxBytes)
    more = more or len(capped) < len(shown)
    out: dict[str, Any] = {
        "sessionKey": p.sessionKey, "sessionId": entry.session_id if entry else None,
        "messages": capped, "pendingInputs": pending, "offset": p.offset,
        "hasMore": more, "defaults": defaults(ctx.gateway, ctx.generation, agent.id),
        "sessionInfo": info,
        "thinkingLevel": entry.thinking_level if entry else None,
        "verboseLevel": entry.verbose_level if entry else None,
    }
    if more:
        out["nextOffset"] = p.offset + len(capped)
    if entry is not None and not p.offset:
        out["deltaCursor"] = cursor_of(entry, rows)
    if p.inputRunIds:
        out["inputReceipts"] = await input_receipts(ctx, p.inputRunIds)
    return out


async def delta(ctx: CallContext, p: HistoryParams, entry: SessionEntry | None,
                info: dict[str, Any] | None, pending: dict[str, Any]) -> dict[str, Any]:
    """The messages stored after ``p.cursor``, or ``{kind: "reset"}``."""
    session_id, _, seq_text = (p.cursor or "").rpartition(":")
    if entry is None or session_id != entry.session_id or not seq_text.isdigit():
        return {"kind": "reset"}
    since = int(seq_text)
    rows = await ctx.gateway.runtime.engine.store.transcript(entry.key, limit=MAX_DELTA)
    if rows and rows[0].seq > since + 1 and len(rows) == MAX_DELTA:
        return {"kind": "reset"}  # more arrived than one delta carries
    new = [m for m in rows if m.seq > since]
    shown = [d for d in (display_message(m, p.maxChars) for m in new) if d is not None]
    out: dict[str, Any] = {"kind": "delta", "messages": cap_bytes(shown, p.maxBytes),
                           "deltaCursor": cursor_of(entry, rows) if rows else p.cursor,
                           "pendingInputs": pending, "sessionInfo": info}
    if p.inputRunIds:
        out["inputReceipts"] = await input_receipts(ctx, p.inputRunIds)
    return out


async def chat_history(ctx: CallContext, raw: Any) -> dict[str, Any]:
    return await history(ctx, parse_params(HistoryParams, raw, "chat.history"), "chat.history")


async def chat_startup(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """``chat.history`` for the pane a client opens; a ``shortId`` (OpenClaw's short session
    links) resolves to nothing here, so it answers ``{resolution: {ok: false}}``."""
    if isinstance(raw, dict) and "sessionKey" not in raw and "shortId" in raw:
        parse_params(StartupByShortId, raw, "chat.startup")
        return {"resolution": {"ok": False}}
    return await history(ctx, parse_params(HistoryParams, raw, "chat.startup"), "chat.startup")


METHODS = (
    CoreMethod("chat.history", READ, chat_history),
    CoreMethod("chat.startup", READ, chat_startup),
)
