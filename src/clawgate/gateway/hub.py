"""The hub: the one owner of WebSocket fan-out — connections, presence, state versions, and the
outbound byte budget every connection draws from (I10, I12).

``broadcast`` encodes an event once; every recipient queues the same :class:`Frame` and adds
only its own ``seq`` when the frame leaves, so a broadcast to N clients holds one copy of the
payload, not N. Memory is bounded twice: each connection may queue at most
``policy.connection_buffer`` bytes (past that it is a slow consumer and is closed with 1008),
and all connections together at most ``policy.total_buffer`` (past that the connection holding
the most is closed with 1013, "try again later"). ``policy.max_connections`` caps how many may
be open at once.

Live-session subscriptions (``sessions.subscribe``, ``sessions.messages.subscribe``) are
per-connection state the hub keeps in :class:`Subscriptions`, bounded per connection and
dropped when the connection leaves; the relay asks it who gets a ``sessions.changed`` or
``session.message`` and broadcasts to exactly those (still encoded once).

Presence changes travel as deltas (``{"change": "joined"|"left", "presence": [entry]}``): a
full list to every client on every connect would cost O(N²). The full list is in ``hello-ok``
and ``system-presence``. One-shot CLI connections are not presence entries (as in OpenClaw).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from clawgate.diagnostics.metrics import Metrics
from clawgate.gateway.policy import WsPolicy
from clawgate.gateway.protocol import has_scope
from clawgate.types import now_ms

UNSEQUENCED = -1  # connect.challenge goes out before the sequence starts
MAX_WATCHED_SESSIONS = 64  # sessions.messages.subscribe keys per connection


@dataclass(frozen=True, slots=True)
class Frame:
    """An event encoded once: the JSON object without its closing ``seq`` member."""

    head: str

    @classmethod
    def event(cls, event: str, payload: Any, state: dict[str, int] | None = None) -> Frame:
        body = b'{"type":"event","event":' + orjson.dumps(event) + b',"payload":' + \
            orjson.dumps(payload)
        if state is not None:
            body += b',"stateVersion":' + orjson.dumps(state)
        return cls(body.decode())

    @property
    def size(self) -> int:
        return len(self.head) + 16

    def text(self, seq: int) -> str:
        return self.head + "}" if seq == UNSEQUENCED else f'{self.head},"seq":{seq}}}'


class Peer(Protocol):
    """What the hub needs of a connection."""

    conn_id: str
    scopes: frozenset[str]

    @property
    def buffered(self) -> int: ...

    def push(self, frame: Frame) -> None: ...

    def shed(self, code: int, reason: str) -> None:
        """Close now and give back what is queued (its bytes leave the budget at once)."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close and wait until the connection has ended."""
        ...


class Subscriptions:
    """Which connections follow session changes (``sessions.subscribe``) and which follow the
    live transcript of which sessions (``sessions.messages.subscribe``).

    Bounded: a connection follows at most ``max_keys`` transcripts (a further one is refused,
    counted in ``ws_subscriptions_refused_total``); everything a connection held is dropped
    when it leaves the hub, so the total is at most ``max_keys`` per open connection.
    """

    def __init__(self, metrics: Metrics, max_keys: int = MAX_WATCHED_SESSIONS) -> None:
        self.metrics = metrics
        self.max_keys = max_keys
        self.sessions: set[Peer] = set()
        self.by_key: dict[str, set[Peer]] = {}
        self.keys_of: dict[Peer, set[str]] = {}

    def follow_sessions(self, peer: Peer, on: bool = True) -> None:
        if on:
            self.sessions.add(peer)
        else:
            self.sessions.discard(peer)

    def follow(self, peer: Peer, key: str) -> bool:
        """Follow ``key``'s transcript; False (nothing changes) when ``peer`` already follows
        ``max_keys`` others."""
        keys = self.keys_of.setdefault(peer, set())
        if key not in keys and len(keys) >= self.max_keys:
            self.metrics.inc("ws_subscriptions_refused_total")
            return False
        keys.add(key)
        self.by_key.setdefault(key, set()).add(peer)
        return True

    def unfollow(self, peer: Peer, key: str) -> None:
        keys = self.keys_of.get(peer)
        if keys is None or key not in keys:
            return
        keys.discard(key)
        if not keys:
            del self.keys_of[peer]
        peers = self.by_key[key]
        peers.discard(peer)
        if not peers:
            del self.by_key[key]

    def drop(self, peer: Peer) -> None:
        """Forget everything ``peer`` followed (it left)."""
        self.sessions.discard(peer)
        for key in list(self.keys_of.get(peer, ())):
            self.unfollow(peer, key)

    def session_peers(self) -> list[Peer]:
        return list(self.sessions)

    def transcript_peers(self, key: str) -> list[Peer]:
        """Who gets ``session.message`` for ``key``: its followers and every session follower
        (as in OpenClaw)."""
        return list(self.sessions | self.by_key.get(key, set()))


class Hub:
    """Connections of one gateway and everything sent to more than one of them."""

    def __init__(self, policy: WsPolicy, metrics: Metrics, *, version: str) -> None:
        self.policy = policy
        self.metrics = metrics
        self.version = version
        self.host = socket.gethostname()
        self.started_at = now_ms()
        self.open: set[Peer] = set()  # accepted sockets, authorized or not
        self.joined: dict[Peer, dict[str, Any] | None] = {}  # authorized -> presence entry
        self.audience = asyncio.Event()  # set while a connection is joined (the relay listens)
        self.by_id: dict[str, Peer] = {}  # authorized, by conn_id
        self.subs = Subscriptions(metrics)
        self.versions = {"presence": 0, "health": 0}
        self.buffered = 0  # queued outbound bytes of every connection
        self.peak_buffered = 0

    # -- membership --------------------------------------------------------------------------

    def attach(self, peer: Peer) -> bool:
        """Count a new socket; False (refuse it) when ``max_connections`` are open."""
        if len(self.open) >= self.policy.max_connections:
            self.metrics.inc("ws_connections_refused_total")
            return False
        self.open.add(peer)
        return True

    def detach(self, peer: Peer) -> None:
        self.open.discard(peer)
        self.leave(peer)

    def join(self, peer: Peer, entry: dict[str, Any] | None) -> None:
        """``peer`` passed the handshake: broadcasts reach it from now on."""
        self.joined[peer] = entry
        self.by_id[peer.conn_id] = peer
        self.audience.set()
        if entry is not None:
            self.versions["presence"] += 1
            self.broadcast("presence", {"change": "joined", "presence": [entry]},
                           state=dict(self.versions))

    def leave(self, peer: Peer) -> None:
        if peer not in self.joined:
            return
        entry = self.joined.pop(peer)
        self.by_id.pop(peer.conn_id, None)
        if not self.joined:
            self.audience.clear()
        self.subs.drop(peer)
        if entry is not None:
            self.versions["presence"] += 1
            left = {**entry, "reason": "disconnect", "ts": now_ms()}
            self.broadcast("presence", {"change": "left", "presence": [left]},
                           state=dict(self.versions))

    @property
    def connections(self) -> list[Peer]:
        """Authorized connections."""
        return list(self.joined)

    def presence(self) -> list[dict[str, Any]]:
        """The full presence list: the gateway itself, then every client entry."""
        own = {"host": self.host, "version": self.version, "platform": sys.platform,
               "mode": "gateway", "reason": "self", "text": f"Gateway: {self.host}",
               "ts": now_ms()}
        return [own, *(e for e in self.joined.values() if e is not None)]

    # -- fan-out -----------------------------------------------------------------------------

    def broadcast(self, event: str, payload: Any, *, scope: str | None = None,
                  to: Iterable[Peer] | None = None, state: dict[str, int] | None = None) -> int:
        """Send an event to every authorized connection (or those of ``to``) holding ``scope``;
        returns how many got it. The payload is encoded once for all of them."""
        recipients = [p for p in (self.joined if to is None else to)
                      if p in self.joined and (scope is None or has_scope(p.scopes, scope))]
        if not recipients:
            return 0
        frame = Frame.event(event, payload, state)
        for peer in recipients:
            peer.push(frame)
        return len(recipients)

    # -- the byte budget ---------------------------------------------------------------------

    def reserve(self, size: int, requester: Peer) -> bool:
        """Take ``size`` bytes from the total budget; when it is spent, close the connection
        holding the most (it is the slowest reader) and try once more."""
        if self.buffered + size > self.policy.total_buffer:
            victim = max(self.open, key=lambda p: p.buffered, default=None)
            if victim is not None and victim.buffered > 0:
                self.metrics.inc("ws_slow_consumers_total")
                victim.shed(1013, "gateway outbound buffer full; try again later")
            if self.buffered + size > self.policy.total_buffer:
                return False
        self.buffered += size
        self.peak_buffered = max(self.peak_buffered, self.buffered)
        return True

    def release(self, size: int) -> None:
        self.buffered -= size
