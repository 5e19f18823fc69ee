"""Chat methods (``chat.send``, ``.history``, ``.abort``, ``.inject``) and the relay that turns
engine run events into ``agent`` and ``chat`` events (reference §2.4).

``chat.send`` answers ``{runId, status: "started"}`` as soon as ``engine.submit`` returned —
the message is durable by then (I9) — and the run's progress reaches every ``operator.read``
connection as ``chat`` events: throttled cumulative ``delta`` snapshots (at most one per
``DELTA_INTERVAL_S`` per run, the pending one always flushed before the end), then ``final``,
``aborted`` or ``error``. The idempotency key is the run id: a repeat while the run is admitted
or running answers ``in_flight``; after it ended, the cached result.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from clawgate.agents.bus import RunEvent, Subscription
from clawgate.agents.lanes import RunResult
from clawgate.gateway.methods import READ, WRITE, CallContext, CoreMethod, attached
from clawgate.gateway.methods.sessions import changed
from clawgate.gateway.methods.system import now_ms
from clawgate.gateway.protocol import Params, invalid, parse_params
from clawgate.gateway.ws import broadcast
from clawgate.sessions.transcript import StoredMessage

if TYPE_CHECKING:
    from clawgate.gateway.app import Gateway

log = logging.getLogger("clawgate.gateway.chat")

DELTA_INTERVAL_S = 0.05
RELAY_QUEUE = 65_536
QueueModeName = Literal["followup", "collect", "interrupt", "steer"]


class SendParams(Params):
    sessionKey: str = Field(min_length=1, max_length=512)
    message: str = Field(max_length=1_000_000)
    idempotencyKey: str = Field(min_length=1, max_length=256)
    thinking: str | None = None
    deliver: bool | None = None
    attachments: list[dict[str, Any]] | None = Field(default=None, max_length=16)
    timeoutMs: int | None = Field(default=None, ge=1)
    sessionId: str | None = None
    queueMode: QueueModeName | None = None
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


def _admitting(gateway: Gateway) -> set[str]:
    return attached(gateway, "_clawgate_ws_admitting", set)


@contextmanager
def admitting(gateway: Gateway, run_id: str) -> Iterator[None]:
    """Mark ``run_id`` as being admitted, so a concurrent repeat sees it ``in_flight``."""
    pending = _admitting(gateway)
    pending.add(run_id)
    try:
        yield
    finally:
        pending.discard(run_id)


def in_flight(gateway: Gateway, run_id: str) -> bool:
    return run_id in _admitting(gateway) or gateway.engine.find_run(run_id) is not None


def assistant_message(text: str, ts: int, **extra: Any) -> dict[str, Any]:
    content = [{"type": "text", "text": text}] if text else []
    return {"role": "assistant", "content": content, "timestamp": ts, **extra}


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
    gateway, run_id = ctx.gateway, p.idempotencyKey
    engine = gateway.engine
    agent, key = engine.session_key(p.sessionKey)
    if p.message.strip() == "/stop":
        return abort(gateway, key, None)
    if in_flight(gateway, run_id):
        return {"runId": run_id, "status": "in_flight"}
    done = engine.result(run_id)
    if done is not None:
        return chat_result(done)
    content = user_content(p.message, p.attachments)
    with admitting(gateway, run_id):
        run = await engine.submit(content, session_key=key, agent_id=agent.id,
                                  channel="webchat", mode=p.queueMode, run_id=run_id)
    ctx.reply({"runId": run_id, "status": "started"})
    changed(gateway, key, "send")
    if p.timeoutMs is not None:  # this request task (owned by the connection) keeps watch
        try:
            await asyncio.wait_for(asyncio.shield(run.done), p.timeoutMs / 1000)
        except TimeoutError:
            engine.abort(key, run_id)
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
        return None
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
    store = ctx.gateway.store
    _, key = ctx.gateway.engine.session_key(p.sessionKey)
    entry = await store.get(key)
    rows = await store.transcript(key, limit=p.limit) if entry is not None else []
    messages = [d for d in (display(m, p.maxChars) for m in rows) if d is not None]
    return {"sessionKey": key, "sessionId": entry.session_id if entry else None,
            "messages": messages, "thinkingLevel": entry.thinking_level if entry else None}


def abort(gateway: Gateway, key: str, run_id: str | None) -> dict[str, Any]:
    """Abort queued runs, then the active one; queued runs never started, so their
    ``aborted`` chat event is sent from here (the relay only sees runs that ran)."""
    active = gateway.engine.lanes.active(key)
    ids = gateway.engine.abort(key, run_id)
    for rid in ids:
        if active is None or rid != active.run_id:
            broadcast(gateway, "chat", {"runId": rid, "sessionKey": key, "seq": 1,
                                        "state": "aborted", "stopReason": "aborted"}, scope=READ)
    return {"ok": True, "aborted": bool(ids), "runIds": ids}


async def chat_abort(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(AbortParams, raw, "chat.abort")
    _, key = ctx.gateway.engine.session_key(p.sessionKey)
    if p.runId is not None:
        run = ctx.gateway.engine.find_run(p.runId)
        if run is not None and run.session_key != key:
            raise invalid(f"run {p.runId!r} does not belong to session {key!r}")
    return abort(ctx.gateway, key, p.runId)


async def chat_inject(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(InjectParams, raw, "chat.inject")
    gateway = ctx.gateway
    agent, key = gateway.engine.session_key(p.sessionKey)
    await gateway.store.ensure(key, agent_id=agent.id)
    stored = await gateway.store.append(key, [{"role": "assistant", "content": p.message,
                                               "stop_reason": "injected"}])
    run_id = f"inject-{uuid.uuid4()}"
    message = assistant_message(p.message, stored[0].created_at, stopReason="injected")
    broadcast(gateway, "chat", {"runId": run_id, "sessionKey": key, "seq": 1, "state": "final",
                                "message": message, "stopReason": "injected"}, scope=READ)
    changed(gateway, key, "inject")
    return {"ok": True, "runId": run_id, "messageId": str(stored[0].id)}


# -- the relay: engine run events -> agent and chat events -------------------------------------

@dataclass(slots=True)
class _Stream:
    session_key: str
    text: str = ""
    sent: int = 0  # characters already reported in a delta
    seq: int = 0
    last_sent: float = 0.0
    ts: int = 0  # of the newest assistant event

    @property
    def pending(self) -> bool:
        return len(self.text) > self.sent


class Relay:
    """Per-run chat state; owned by the relay task, so no locking is needed."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.runs: dict[str, _Stream] = {}

    def handle(self, ev: RunEvent) -> None:
        stream = self.runs.get(ev.run_id)
        if stream is None:
            stream = self.runs[ev.run_id] = _Stream(ev.session_key)
        if ev.stream == "assistant":
            # Assistant text is coalesced: one `agent` and one `chat` delta per run per
            # DELTA_INTERVAL_S, each carrying every character since the last one. Forwarding
            # every token would cost O(tokens) frames per client for no visible difference.
            stream.text += str(ev.data.get("delta", ""))
            stream.seq, stream.ts = ev.seq, ev.ts
            if time.monotonic() - stream.last_sent >= DELTA_INTERVAL_S:
                self.delta(ev.run_id, stream)
            return
        if stream.pending:  # text before a tool call or the end goes out first, in order
            self.delta(ev.run_id, stream)
        broadcast(self.gateway, "agent", ev.payload(), scope=READ)
        if ev.stream == "lifecycle" and ev.data.get("phase") in ("end", "error"):
            del self.runs[ev.run_id]
            self.end(ev)

    def delta(self, run_id: str, stream: _Stream) -> None:
        added = stream.text[stream.sent:]
        broadcast(self.gateway, "agent", {
            "runId": run_id, "seq": stream.seq, "stream": "assistant", "ts": stream.ts,
            "data": {"text": stream.text, "delta": added}, "sessionKey": stream.session_key,
        }, scope=READ)
        payload = {"runId": run_id, "sessionKey": stream.session_key, "seq": stream.seq,
                   "state": "delta", "message": assistant_message(stream.text, now_ms()),
                   "deltaText": added}
        stream.sent, stream.last_sent = len(stream.text), time.monotonic()
        broadcast(self.gateway, "chat", payload, scope=READ)

    def end(self, ev: RunEvent) -> None:
        data = ev.data
        status, text = data.get("status"), str(data.get("text") or "")
        stop = str(data.get("stopReason") or "")
        usage = dict(data.get("usage") or {})
        base = {"runId": ev.run_id, "sessionKey": ev.session_key, "seq": ev.seq}
        ts = int(data.get("endedAt") or now_ms())
        if status == "ok":
            wire_usage = {"input": usage.get("input", 0), "output": usage.get("output", 0),
                          "totalTokens": usage.get("total", 0)}
            message = assistant_message(text, ts, stopReason=stop, usage=wire_usage)
            payload = {**base, "state": "final", "message": message, "usage": wire_usage,
                       "stopReason": stop}
        elif status == "aborted":
            payload = {**base, "state": "aborted", "stopReason": stop or "aborted"}
            if text:
                payload["message"] = assistant_message(text, ts)
        else:
            kind = "timeout" if status == "timeout" else "unknown"
            payload = {**base, "state": "error", "errorKind": kind,
                       "errorMessage": str(data.get("error") or stop or "run failed")}
        broadcast(self.gateway, "chat", payload, scope=READ)

    def next_due(self) -> float | None:
        """Seconds until the earliest pending delta may go out (None: nothing pending)."""
        due = [s.last_sent + DELTA_INTERVAL_S for s in self.runs.values() if s.pending]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def flush_due(self) -> None:
        now = time.monotonic()
        for run_id, stream in list(self.runs.items()):
            if stream.pending and now - stream.last_sent >= DELTA_INTERVAL_S:
                self.delta(run_id, stream)


async def relay(gateway: Gateway) -> None:
    """Forward every run event of the gateway's engine until cancelled (by the tick loop)."""
    bus = gateway.engine.bus
    sub: Subscription = bus.subscribe(maxsize=RELAY_QUEUE)
    state = Relay(gateway)
    try:
        while True:
            wait = state.next_due()
            ev: RunEvent | None
            try:
                ev = await (sub.get() if wait is None else asyncio.wait_for(sub.get(), wait))
            except TimeoutError:
                state.flush_due()
                continue
            while ev is not None:
                try:
                    state.handle(ev)
                except Exception:  # one odd event must not end the relay
                    log.exception("chat relay could not forward %s", ev.run_id)
                ev = sub.get_nowait()
            state.flush_due()
            if sub.overflowed:  # should not happen at this queue size; recover, loudly
                log.warning("chat relay fell behind; some run events were dropped")
                sub.close()
                sub = bus.subscribe(maxsize=RELAY_QUEUE)
    finally:
        sub.close()


METHODS = (
    CoreMethod("chat.send", WRITE, chat_send),
    CoreMethod("chat.history", READ, chat_history),
    CoreMethod("chat.abort", WRITE, chat_abort),
    CoreMethod("chat.inject", WRITE, chat_inject),
)
