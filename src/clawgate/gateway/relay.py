"""The relay: engine events -> WebSocket events, through the hub (reference §2.4).

Run events become ``agent`` events and ``chat`` events: throttled cumulative ``delta``
snapshots (at most one per ``DELTA_INTERVAL_S`` per run, the pending one always flushed before
the end), then ``final``, ``aborted`` or ``error``. Session events become ``sessions.changed``.
One relay task per gateway reads one bus subscription; every client gets the same frames.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from clawgate.agents.bus import Event, EventBus, RunEvent, SessionEvent, Subscription
from clawgate.gateway.hub import Hub
from clawgate.gateway.rpc import READ
from clawgate.types import now_ms

log = logging.getLogger("clawgate.gateway.relay")

DELTA_INTERVAL_S = 0.05
RELAY_QUEUE = 65_536
MAX_STREAMS = 10_000
CHANGED_REASONS = frozenset({"send", "patch", "reset", "delete", "inject", "compact"})


def assistant_message(text: str, ts: int, **extra: Any) -> dict[str, Any]:
    """An assistant message in OpenClaw's chat shape (content parts)."""
    content = [{"type": "text", "text": text}] if text else []
    return {"role": "assistant", "content": content, "timestamp": ts, **extra}


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

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.runs: dict[str, _Stream] = {}

    def handle(self, ev: Event) -> None:
        if isinstance(ev, SessionEvent):
            self.session(ev)
            return
        stream = self.runs.get(ev.run_id)
        if stream is None:
            if len(self.runs) >= MAX_STREAMS:  # a run that never ended must not pin memory
                self.runs.pop(next(iter(self.runs)))
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
        self.hub.broadcast("agent", ev.payload(), scope=READ)
        if ev.stream == "lifecycle" and ev.data.get("phase") in ("end", "error"):
            del self.runs[ev.run_id]
            self.end(ev)

    def delta(self, run_id: str, stream: _Stream) -> None:
        added = stream.text[stream.sent:]
        self.hub.broadcast("agent", {
            "runId": run_id, "seq": stream.seq, "stream": "assistant", "ts": stream.ts,
            "data": {"text": stream.text, "delta": added}, "sessionKey": stream.session_key,
        }, scope=READ)
        payload = {"runId": run_id, "sessionKey": stream.session_key, "seq": stream.seq,
                   "state": "delta", "message": assistant_message(stream.text, now_ms()),
                   "deltaText": added}
        stream.sent, stream.last_sent = len(stream.text), time.monotonic()
        self.hub.broadcast("chat", payload, scope=READ)

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
        self.hub.broadcast("chat", payload, scope=READ)

    def session(self, ev: SessionEvent) -> None:
        if ev.change == "inject":
            message = assistant_message(str(ev.fields.get("text", "")), ev.ts,
                                        stopReason="injected")
            self.hub.broadcast("chat", {"runId": ev.run_id, "sessionKey": ev.session_key,
                                        "seq": 1, "state": "final", "message": message,
                                        "stopReason": "injected"}, scope=READ)
        if ev.change in CHANGED_REASONS:
            payload: dict[str, Any] = {"sessionKey": ev.session_key, "reason": ev.change}
            if ev.change == "compact":  # as OpenClaw: {reason: "compact", compacted: true}
                payload["compacted"] = bool(ev.fields.get("compacted"))
            self.hub.broadcast("sessions.changed", payload, scope=READ)

    def next_due(self) -> float | None:
        """Seconds until the earliest pending delta may go out (None: nothing pending)."""
        due = [s.last_sent + DELTA_INTERVAL_S for s in self.runs.values() if s.pending]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def flush_due(self) -> None:
        now = time.monotonic()
        for run_id, stream in list(self.runs.items()):
            if stream.pending and now - stream.last_sent >= DELTA_INTERVAL_S:
                self.delta(run_id, stream)


async def relay(bus: EventBus, hub: Hub) -> None:
    """Forward every event of the engine's bus to the hub until cancelled (the gateway's
    lifespan owns the task)."""
    sub: Subscription = bus.subscribe(maxsize=RELAY_QUEUE, sessions=True)
    state = Relay(hub)
    try:
        while True:
            wait = state.next_due()
            ev: Event | None
            try:
                ev = await (sub.get() if wait is None else asyncio.wait_for(sub.get(), wait))
            except TimeoutError:
                state.flush_due()
                continue
            while ev is not None:
                try:
                    state.handle(ev)
                except Exception:  # one odd event must not end the relay
                    log.exception("relay could not forward %r", ev)
                ev = sub.get_nowait()
            state.flush_due()
            if sub.overflowed:  # should not happen at this queue size; recover, loudly
                log.warning("chat relay fell behind; some run events were dropped")
                sub.close()
                sub = bus.subscribe(maxsize=RELAY_QUEUE, sessions=True)
    finally:
        sub.close()
