"""Chat methods: ``chat.send``, ``.history``, ``.abort``, ``.inject`` (reference §2.4).

``chat.send`` answers ``{runId, status: "started"}`` as soon as the turn API admitted the
message — it is durable by then (I9) — and the run's progress reaches every ``operator.read``
connection through the gateway's relay (:mod:`clawgate.gateway.relay`) as ``chat`` events. The
idempotency key is the run id: a repeat while the run is admitted or running answers
``in_flight``; after it ended, the cached result.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from clawgate.agents.lanes import RunResult
from clawgate.agents.turn import Submission
from clawgate.gateway.protocol import Params, invalid, parse_params
from clawgate.gateway.relay import assistant_message
from clawgate.gateway.rpc import READ, WRITE, CallContext, CoreMethod
from clawgate.sessions.transcript import StoredMessage
from clawgate.types import QueueMode, now_ms


class SendParams(Params):
    sessionKey: str = Field(min_length=1, max_length=512)
    message: str = Field(max_length=1_000_000)
    idempotencyKey: str = Field(min_length=1, max_length=256)
    thinking: str | None = None
    deliver: bool | None = None
    attachments: list[dict[str, Any]] | None = Field(default=None, max_length=16)
    timeoutMs: int | None = Field(default=None, ge=1)
    sessionId: str | None = None
    queueMode: QueueMode | None = None
    fastMode: bool | None = None
    expectedLeafEntryId: str | None = None
    originatingChannel: str | None = None
    originatingTo: str | None = None
    originatingAccountId: str | None = None
    originatingThreadId: str | int | None = None


class HistoryParams(Params):
    sessionKey: str = Field(min_length=1, max_length=512)
    limit: int = Field(default=200, ge=1, le=1000)
    maxChars: int | None = Field(default=None, ge=1)


class AbortParams(Params):
    sessionKey: str = Field(min_length=1, max_length=512)
    runId: str | None = Field(default=None, min_length=1)


class InjectParams(Params):
    sessionKey: str = Field(min_length=1, max_length=512)
    message: str = Field(min_length=1, max_length=1_000_000)
    label: str | None = Field(default=None, max_length=512)


# -- shared with the agent method -----------------------------------------------------------------

def user_content(message: str, attachments: list[dict[str, Any]] | None) -> Any:
    """The user message; image attachments ({mimeType, content: base64}) become parts."""
    if not attachments:
        return message
    parts: list[dict[str, Any]] = [{"type": "text", "text": message}]
    for i, item in enumerate(attachments):
        mime, data = item.get("mimeType"), item.get("content")
        if not isinstance(mime, str) or not isinstance(data, str):
            raise invalid(f"attachments[{i}] needs string mimeType and base64 content")
        parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
    return parts


def chat_result(result: RunResult) -> dict[str, Any]:
    """What a repeated ``chat.send`` gets once its run has ended."""
    out: dict[str, Any] = {"runId": result.run_id, "status": result.status,
                           "stopReason": result.stop_reason,
                           "message": assistant_message(result.text, now_ms())}
    if result.error:
        out["error"] = result.error
    return out


# -- methods -----------------------------------------------------------------------------------

async def chat_send(ctx: CallContext, raw: Any) -> dict[str, Any] | None:
    p = parse_params(SendParams, raw, "chat.send")
    engine, run_id = ctx.gateway.runtime.engine, p.idempotencyKey
    agent, key = engine.session_key(p.sessionKey)
    if engine.in_flight(run_id):
        return {"runId": run_id, "status": "in_flight"}
    done = engine.result(run_id)
    if done is not None:
        return chat_result(done)
    turn = await engine.submit(Submission(
        user_content(p.message, p.attachments), session_key=key, agent_id=agent.id,
        channel="webchat", mode=p.queueMode, run_id=run_id))
    if turn.command == "stop":  # OpenClaw answers a stop with what it aborted
        stopped = list(turn.details.get("aborted", ()))
        return {"ok": True, "aborted": bool(stopped), "runIds": stopped}
    ctx.reply({"runId": run_id, "status": "started"})
    if p.timeoutMs is not None and not turn.done:  # this request task keeps watch
        try:
            await asyncio.wait_for(turn.result(), p.timeoutMs / 1000)
        except TimeoutError:
            turn.abort()
    return None


def display(m: StoredMessage, max_chars: int | None) -> dict[str, Any] | None:
    """A stored message as ``chat.history`` shows it (pi-style roles and content parts)."""
    def parts() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        items = [{"type": "text", "text": m.content}] if isinstance(m.content, str) else (
            m.content or [])
        for part in items:
            if part.get("type") in ("text", "input_text", "output_text"):
                text = str(part.get("text", ""))
                if max_chars is not None and len(text) > max_chars:
                    text = "[chat.history omitted: message too large]"
                out.append({"type": "text", "text": text})
            else:
                out.append({"type": "text", "text": f"[{part.get('type', 'part')}]"})
        return out

    if m.role == "system":
        record = (m.extra or {}).get("compaction")
        if not isinstance(record, dict):
            return None
        # Where a compaction happened: pi's compactionSummary message (the messages before
        # it are all still listed; the next prompts start from this summary).
        summary = m.content if isinstance(m.content, str) else ""
        return {"role": "compactionSummary", "summary": summary,
                "content": [{"type": "text", "text": summary}],
                "tokensBefore": record.get("tokensBefore"),
                "tokensAfter": record.get("tokensAfter"), "trigger": record.get("trigger"),
                "firstKeptEntryId": f"{int(record.get('firstKeptId', 0)):08x}",
                "timestamp": m.created_at}
    if (m.extra or {}).get("silent"):
        return None  # the memory flush turn: in the store, never shown as a chat message
    if m.role == "tool":
        return {"role": "toolResult", "toolCallId": m.tool_call_id or "",
                "toolName": m.name or "", "content": parts(), "timestamp": m.created_at}
    message: dict[str, Any] = {"role": m.role, "content": parts(), "timestamp": m.created_at}
    for call in m.tool_calls or ():
        fn = call.get("function") or {}
        message["content"].append({"type": "toolCall", "id": call.get("id", ""),
                                   "name": fn.get("name", ""),
                                   "arguments": fn.get("arguments", "")})
    if m.role == "assistant" and m.stop_reason:
        message["stopReason"] = m.stop_reason
    if m.role == "assistant" and m.usage:
        message["usage"] = m.usage
    return message


async def chat_history(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(HistoryParams, raw, "chat.history")
    engine = ctx.gateway.runtime.engine
    _, key = engine.session_key(p.sessionKey)
    entry = await engine.store.get(key)
    rows = await engine.store.transcript(key, limit=p.limit) if entry is not None else []
    messages = [d for d in (display(m, p.maxChars) for m in rows) if d is not None]
    return {"sessionKey": key, "sessionId": entry.session_id if entry else None,
            "messages": messages, "thinkingLevel": entry.thinking_level if entry else None}


async def chat_abort(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(AbortParams, raw, "chat.abort")
    engine = ctx.gateway.runtime.engine
    _, key = engine.session_key(p.sessionKey)
    if p.runId is not None:
        run = engine.find_run(p.runId)
        if run is not None and run.session_key != key:
            raise invalid(f"run {p.runId!r} does not belong to session {key!r}")
    ids = engine.abort(key, p.runId)
    return {"ok": True, "aborted": bool(ids), "runIds": ids}


async def chat_inject(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(InjectParams, raw, "chat.inject")
    engine = ctx.gateway.runtime.engine
    agent, key = engine.session_key(p.sessionKey)
    run_id, message_id, _ = await engine.inject(key, agent_id=agent.id, text=p.message)
    return {"ok": True, "runId": run_id, "messageId": str(message_id)}


METHODS = (
    CoreMethod("chat.send", WRITE, chat_send),
    CoreMethod("chat.history", READ, chat_history),
    CoreMethod("chat.abort", WRITE, chat_abort),
    CoreMethod("chat.inject", WRITE, chat_inject),
)
