"""The relay: engine events -> WebSocket events, through the hub (reference §2.4).

Run events become ``agent`` events and ``chat`` events: throttled cumulative ``delta``
snapshots (at most one per ``DELTA_INTERVAL_S`` per run, the pending one always flushed before
the end), then ``final``, ``aborted`` or ``error``; a run's start-up phases (``run_status``)
become ``chat`` ``status`` events. ``agent`` and ``chat`` go to every ``operator.read``
connection.

Session changes go where OpenClaw sends them: ``sessions.changed`` only to connections that
called ``sessions.subscribe`` — with ``reason`` for a send, patch, reset, delete or inject, and
``phase`` (``start``, ``model``, ``end``, ``error``) plus the session's live status for a run —
and ``session.message`` (each message a turn stored, in transcript order, published after the
commit) to the followers of that session's transcript and every session subscriber.

One relay task per gateway reads one bus subscription; frames are encoded once per event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from clawgate.agents.bus import Event, EventBus, MessageEvent, RunEvent, SessionEvent, Subscription
from clawgate.gateway.display import assistant_message, display_message
from clawgate.gateway.hub import Hub
from clawgate.gateway.rpc import READ
from clawgate.sessions.keys import agent_of
from clawgate.types import now_ms

log = logging.getLogger("clawgate.gateway.relay")

DELTA_INTERVAL_S = 0.05
RELAY_QUEUE = 65_536
MAX_STREAMS = 10_000
CHANGED_REASONS = frozenset({"send", "patch", "reset", "delete", "inject",
                             "compact"})
# A run's end status -> the session status OpenClaw's session rows show.
SESSION_STATUS = {"ok": "done", "error": "failed", "aborted": "killed", "timeout": "timeout",
                  "interrupted": "failed"}
STATUS_PHASES = frozenset({"preparing_context", "starting_model"})


def _agent(key: str) -> dict[str, str]:
    agent = agent_of(key)
    return {"agentId": agent} if agent else {}


@dataclass(slots=True)
class _Stream:
    session_key: str
    text: str = ""
    sent: int = 0  # characters already reported in a delta
    seq: int = 0
    last_sent: float = 0.0
    ts: int = 0  # of the newest assistant event
    started_at: int | None = None

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
        if isinstance(ev, MessageEvent):
            self.messages(ev)
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
        if ev.stream == "run_status" and ev.data.get("phase") in STATUS_PHASES:
            self.hub.broadcast("chat", {"runId": ev.run_id, "sessionKey": ev.session_key,
                                        **_agent(ev.session_key), "seq": ev.seq,
                                        "state": "status", "phase": ev.data["phase"]},
                               scope=READ)
        if ev.stream != "lifecycle":
            return
        phase = ev.data.get("phase")
        if phase == "start":
            stream.started_at = int(ev.data.get("startedAt") or ev.ts)
        if phase in ("end", "error"):
            del self.runs[ev.run_id]
            self.end(ev)
        if phase in ("start", "model", "end", "error"):
            self.run_changed(ev, stream)

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

    def run_changed(self, ev: RunEvent, stream: _Stream) -> None:
        """``sessions.changed`` for a run's phase, with the live status it gives the session."""
        peers = self.hub.subs.session_peers()
        if not peers:
            return
        data, phase = ev.data, ev.data.get("phase")
        payload: dict[str, Any] = {"sessionKey": ev.session_key, **_agent(ev.session_key),
                                   "phase": phase, "runId": ev.run_id, "ts": ev.ts}
        if phase == "start":
            payload.update(status="running", hasActiveRun=True, activeRunIds=[ev.run_id],
                           startedAt=stream.started_at, endedAt=None, runtimeMs=None,
                           abortedLastRun=False, lastRunError=None)
        elif phase == "model":
            payload.update(modelProvider=data.get("provider"), model=data.get("model"))
        else:
            status = SESSION_STATUS.get(str(data.get("status")), "failed")
            ended = int(data.get("endedAt") or ev.ts)
            payload.update(status=status, hasActiveRun=False, activeRunIds=[],
                           endedAt=ended, abortedLastRun=status == "killed", lastRunId=ev.run_id,
                           lastRunError=data.get("error") if status != "done" else None)
            if stream.started_at is not None:
                payload.update(startedAt=stream.started_at,
                               runtimeMs=max(0, ended - stream.started_at))
        self.hub.broadcast("sessions.changed", payload, scope=READ, to=peers)

    def messages(self, ev: MessageEvent) -> None:
        """``session.message`` per stored message, in transcript order."""
        peers = self.hub.subs.transcript_peers(ev.session_key)
        if not peers:
            return
        for stored in ev.messages:
            message = display_message(stored)
            if message is None:
                continue
            payload: dict[str, Any] = {"sessionKey": ev.session_key, **_agent(ev.session_key),
                                       "message": message, "messageId": str(stored.id),
                                       "messageSeq": stored.seq}
            if ev.run_id:
                payload["runId"] = ev.run_id
            self.hub.broadcast("session.message", payload, scope=READ, to=peers)

    def session(self, ev: SessionEvent) -> None:
        if ev.change == "inject":
            message = assistant_message(str(ev.fields.get("text", "")), ev.ts,
                                        stopReason="injected")
            self.hub.broadcast("chat", {"runId": ev.run_id, "sessionKey": ev.session_key,
                                        "seq": 1, "state": "final", "message": message,
                                        "stopReason": "injected"}, scope=READ)
        if ev.change in CHANGED_REASONS:
            payload: dict[str, Any] = {"sessionKey": ev.session_key, **_agent(ev.session_key),
                                       "reason": ev.change, "ts": ev.ts}
            if ev.run_id and ev.change == "send":
                payload["runId"] = ev.run_id
            if ev.change == "compact":  # as OpenClaw: {reason: "compact", compacted: true}
                payload["compacted"] = bool(ev.fields.get("compacted"))
            self.hub.broadcast("sessions.changed", payload, scope=READ,
                               to=self.hub.subs.session_peers())

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
    """Forward the engine's bus to the hub until cancelled (the gateway's lifespan owns the
    task). It listens only while a WebSocket client is connected: with none, a turn's events
    would be read, turned into frames for nobody and dropped (a headless API gateway spent
    ~1/10 of its event loop on that). So it subscribes when the first client joins and leaves
    the bus at the first event after the last one left; a client that joins during a run gets
    that run's events from then on (its final event carries the whole reply)."""
    while True:
        await hub.audience.wait()
        await _forward(bus, hub)


async def _forward(bus: EventBus, hub: Hub) -> None:
    sub: Subscription = bus.subscribe(maxsize=RELAY_QUEUE, sessions=True)
    state = Relay(hub)
    try:
        while hub.audience.is_set():
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
