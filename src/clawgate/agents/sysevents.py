"""System events: short notes queued on a session that join its next prompt.

A cron job with ``sessionTarget: "main"``, the ``wake`` RPC and ``clawgate system event`` do
not start a turn of their own: they queue a line of text on the agent's main session, and the
next message admitted there — the next heartbeat, or the user's next message — carries every
queued line ahead of its own text, as ``System: <text>`` lines (OpenClaw's
``enqueueSystemEvent`` / ``drainSystemEvents``). Once a message took them they are part of
that message, durable in its run record like any acknowledged input.

The queue itself lives in memory, as in OpenClaw (``system events are ephemeral``): a gateway
that stops before the next turn drops what was still queued. It is bounded per session
(:data:`PER_SESSION`, the oldest dropped and counted through ``on_drop``, the engine's
``system_events_dropped_total``) and in total (:data:`SESSIONS`, a new session refused with
QueueFullError).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from clawgate.errors import QueueFullError

PER_SESSION = 20
SESSIONS = 1_000
MAX_TEXT = 4_000
PREFIX = "System: "


class SystemEvents:
    """The queued system events of one engine, by session key."""

    def __init__(self, *, per_session: int = PER_SESSION, sessions: int = SESSIONS,
                 on_drop: Callable[[], None] | None = None) -> None:
        self._queues: OrderedDict[str, deque[str]] = OrderedDict()
        self._per_session = per_session
        self._sessions = sessions
        self._on_drop = on_drop  # an event was pushed out by a newer one

    def add(self, key: str, text: str) -> int:
        """Queue ``text`` (one line, trimmed, at most :data:`MAX_TEXT` characters) on ``key``;
        returns how many wait there now. QueueFullError when too many sessions have events."""
        line = " ".join(text.split())[:MAX_TEXT]
        if not line:
            return len(self._queues.get(key, ()))
        queue = self._queues.get(key)
        if queue is None:
            if len(self._queues) >= self._sessions:
                raise QueueFullError(f"system events wait on {self._sessions} sessions already",
                                     session_key=key)
            queue = self._queues[key] = deque(maxlen=self._per_session)
        if len(queue) == queue.maxlen and self._on_drop is not None:
            self._on_drop()
        queue.append(line)
        return len(queue)

    def pending(self, key: str) -> int:
        """How many events wait on ``key``."""
        return len(self._queues.get(key, ()))

    def take(self, key: str) -> tuple[str, ...]:
        """Remove and return the events of ``key``, oldest first."""
        queue = self._queues.pop(key, None)
        return tuple(queue) if queue else ()

    def restore(self, key: str, events: Sequence[str]) -> None:
        """Put events that a refused admission took back in front of the queue."""
        if not events:
            return
        newer = self._queues.pop(key, None) or deque()
        queue: deque[str] = deque(maxlen=self._per_session)
        for line in (*events, *newer):
            queue.append(line)  # the bound keeps the newest
        self._queues[key] = queue


def prepend(message: dict[str, Any], events: Sequence[str]) -> dict[str, Any]:
    """``message`` (a user message) with ``System: ...`` lines ahead of its content."""
    if not events:
        return message
    head = "\n".join(PREFIX + line for line in events)
    content = message.get("content")
    if isinstance(content, list):
        parts = [{"type": "text", "text": head}, *content]
        return {**message, "content": parts}
    body = str(content or "")
    return {**message, "content": f"{head}\n\n{body}" if body else head}
