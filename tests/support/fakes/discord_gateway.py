"""The Discord fake's Gateway (v10, JSON encoding): sessions, sequence numbers, RESUME replay.

Protocol, as Discord documents it: on connect the fake sends HELLO (op 10,
``heartbeat_interval``); the client IDENTIFYs (op 2: token, intents, shard) and gets READY (op
0, ``session_id``, ``resume_gateway_url``, ``user``, ``guilds`` as unavailable stubs,
``application``) followed by one GUILD_CREATE per guild; HEARTBEAT (op 1) is answered by
HEARTBEAT_ACK (op 11). A client that lost its socket RESUMEs (op 6: token, session_id, seq) and
gets every dispatch it missed, with its original ``s``, then RESUMED. On demand the fake sends
RECONNECT (op 7) or INVALID_SESSION (op 9, ``d`` = resumable), closes with a code, or drops the
TCP connection. Close codes: 4001 unknown opcode, 4002 decode error, 4003 not authenticated,
4004 authentication failed, 4005 already authenticated, 4012 invalid API version, 4013 invalid
intents, 4014 disallowed intents.

Transport compression: ``?compress=zlib-stream`` (what hikari asks for on Python < 3.14 without
``backports.zstd``) gets one zlib stream per connection, each message flushed with
``Z_SYNC_FLUSH`` (ending in ``00 00 ff ff``) and sent as a binary frame. ``zstd-stream`` is
refused (close 4000) because the standard library before 3.14 has no zstd compressor.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

if TYPE_CHECKING:
    from tests.support.fakes.discord_api import DiscordFake

__all__ = ["Gateway", "Intent", "Session"]

MAX_REPLAY = 5_000
MAX_SESSIONS = 100


class Intent:
    """Gateway intent bits used by the fake."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    GUILD_MESSAGE_TYPING = 1 << 11
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
    ALL = (1 << 26) - 1


@dataclass(slots=True)
class Session:
    """One gateway session: survives its socket until invalidated."""

    id: str
    intents: int
    shard: list[int]
    seq: int = 0
    replay: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_REPLAY))
    link: _Link | None = None


@dataclass(slots=True)
class _Link:
    """One WebSocket connection."""

    socket: WebSocket
    outbox: asyncio.Queue[dict[str, Any] | tuple[str, int, str]] = field(
        default_factory=lambda: asyncio.Queue(maxsize=MAX_REPLAY))
    compressor: Any = None
    session: Session | None = None


class Gateway:
    """The Gateway endpoints and sessions of one :class:`DiscordFake`."""

    def __init__(self, fake: DiscordFake, *, heartbeat_interval_ms: int = 41_250) -> None:
        self.fake = fake
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.sessions: dict[str, Session] = {}
        self.links: list[_Link] = []

    @property
    def url(self) -> str:
        """The URL ``GET /gateway/bot`` hands out."""
        return f"{self.fake.ws_url}/gateway"

    @property
    def resume_url(self) -> str:
        """``resume_gateway_url`` in READY (a different path, so tests can see its use)."""
        return f"{self.fake.ws_url}/resume"

    # -- dispatching -------------------------------------------------------------------------

    def dispatch(self, event: str, data: dict[str, Any] | Callable[[Session], Any],
                 *, intent: int | None = None) -> None:
        """Give ``event`` the next ``s`` of every session whose intents include ``intent``
        and send it to the session's socket if one is attached (else it waits for RESUME).
        ``data`` may be a function of the session (for per-session shapes)."""
        for session in list(self.sessions.values()):
            if intent is not None and not session.intents & intent:
                continue
            payload = data(session) if callable(data) else data
            if payload is None:
                continue
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": payload}
            session.replay.append(frame)
            if session.link is not None:
                self._push(session.link, frame)

    def _push(self, link: _Link, item: dict[str, Any] | tuple[str, int, str]) -> None:
        try:
            link.outbox.put_nowait(item)
        except asyncio.QueueFull:
            # A client this far behind is dead to Discord too: close so it resumes.
            with contextlib.suppress(asyncio.QueueFull):
                link.outbox.get_nowait()
                link.outbox.put_nowait(("close", 4000, "Unknown error."))

    def reconnect(self) -> None:
        """Send RECONNECT (op 7) on every socket; clients should resume."""
        for link in list(self.links):
            self._push(link, {"op": 7, "d": None, "s": None, "t": None})

    def invalidate(self, resumable: bool = False) -> None:
        """Send INVALID_SESSION (op 9); unless ``resumable`` the sessions are forgotten."""
        for link in list(self.links):
            self._push(link, {"op": 9, "d": resumable, "s": None, "t": None})
            if not resumable and link.session is not None:
                self.sessions.pop(link.session.id, None)
                link.session = None

    def close(self, code: int = 4000, reason: str = "Unknown error.") -> None:
        """Close every socket with ``code``."""
        for link in list(self.links):
            self._push(link, ("close", code, reason))

    def drop(self) -> int:
        """Abort every gateway TCP connection abruptly; returns how many."""
        return sum(self.fake.abort(link.socket.client) for link in list(self.links))

    def stop(self) -> None:
        """Close every socket (the fake is stopping)."""
        self.close(1001, "Going away")

    # -- one connection ----------------------------------------------------------------------

    async def serve(self, ws: WebSocket) -> None:
        """Handle one gateway WebSocket."""
        query = ws.query_params
        call = self.fake.record("gateway:connect", path=ws.url.path, headers=ws.headers,
                                query=query)
        await ws.accept()
        link = _Link(ws)
        refusal = self._check_query(query)
        if refusal is None and self.fake.take_fault(call) is not None:
            refusal = (4000, "Unknown error.")
        if refusal is not None:
            await ws.close(code=refusal[0], reason=refusal[1])
            return
        if query.get("compress") == "zlib-stream":
            link.compressor = zlib.compressobj()
        self.links.append(link)
        self._push(link, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms,
                                          "_trace": ["fake-gateway"]}, "s": None, "t": None})
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._writer(link))
                group.create_task(self._reader(link))
        finally:
            if link in self.links:
                self.links.remove(link)
            if link.session is not None and link.session.link is link:
                link.session.link = None
            self.fake.record("gateway:closed", path=ws.url.path)

    @staticmethod
    def _check_query(query: Any) -> tuple[int, str] | None:
        if query.get("v", "10") not in ("9", "10"):
            return 4012, "Invalid API version."
        if query.get("encoding", "json") != "json":
            return 4002, "Error while decoding payload."
        if query.get("compress") not in (None, "zlib-stream"):
            return 4000, "This fake supports compress=zlib-stream only."
        return None

    async def _writer(self, link: _Link) -> None:
        while True:
            item = await link.outbox.get()
            try:
                if isinstance(item, tuple):
                    await link.socket.close(code=item[1], reason=item[2])
                    return
                data = orjson.dumps(item)
                if link.compressor is not None:
                    await link.socket.send_bytes(link.compressor.compress(data) +
                                                 link.compressor.flush(zlib.Z_SYNC_FLUSH))
                else:
                    await link.socket.send_text(data.decode())
            except (WebSocketDisconnect, RuntimeError, OSError):
                return

    async def _reader(self, link: _Link) -> None:
        try:
            while True:
                message = await link.socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text") or message.get("bytes") or b""
                try:
                    frame = orjson.loads(raw)
                    op = frame["op"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    self._push(link, ("close", 4002, "Error while decoding payload."))
                    return
                if not self._handle(link, op, frame.get("d")):
                    return
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                link.outbox.put_nowait(("close", 1000, ""))

    _NAMES = {1: "HEARTBEAT", 2: "IDENTIFY", 3: "PRESENCE_UPDATE", 4: "VOICE_STATE_UPDATE",
              6: "RESUME", 8: "REQUEST_GUILD_MEMBERS", 31: "REQUEST_SOUNDBOARD_SOUNDS"}

    def _handle(self, link: _Link, op: int, data: Any) -> bool:
        """Answer one client frame; False once the connection is to close."""
        name = self._NAMES.get(op)
        self.fake.record(f"gateway:{name or op}", body=data)
        if name is None:
            self._push(link, ("close", 4001, "Unknown opcode."))
            return False
        if op == 1:
            self._push(link, {"op": 11, "d": None, "s": None, "t": None})
            return True
        if op == 2:
            return self._identify(link, data if isinstance(data, dict) else {})
        if op == 6:
            return self._resume(link, data if isinstance(data, dict) else {})
        if link.session is None:
            self._push(link, ("close", 4003, "Not authenticated."))
            return False
        return True

    def _identify(self, link: _Link, data: dict[str, Any]) -> bool:
        if link.session is not None:
            self._push(link, ("close", 4005, "Already authenticated."))
            return False
        if data.get("token") != self.fake.token:
            self._push(link, ("close", 4004, "Authentication failed."))
            return False
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0 or intents > Intent.ALL:
            self._push(link, ("close", 4013, "Invalid intent(s)."))
            return False
        if intents & Intent.PRIVILEGED & ~self.fake.privileged_intents:
            self._push(link, ("close", 4014, "Disallowed intent(s)."))
            return False
        shard = data.get("shard") or [0, 1]
        session = Session(secrets.token_hex(16), intents, list(shard))
        self.sessions[session.id] = session
        while len(self.sessions) > MAX_SESSIONS:  # forget the oldest (it can no longer resume)
            del self.sessions[next(iter(self.sessions))]
        session.link = link
        link.session = session
        self.fake.identified(session)
        return True

    def _resume(self, link: _Link, data: dict[str, Any]) -> bool:
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq")
        if data.get("token") != self.fake.token:
            self._push(link, ("close", 4004, "Authentication failed."))
            return False
        oldest = session.replay[0]["s"] if session is not None and session.replay else 1
        if session is None or not isinstance(seq, int) or seq > session.seq or seq < oldest - 1:
            self._push(link, {"op": 9, "d": False, "s": None, "t": None})
            return True
        if session.link is not None and session.link is not link:
            self._push(session.link, ("close", 4000, "Session resumed elsewhere."))
        session.link = link
        link.session = session
        for frame in session.replay:
            if frame["s"] > seq:
                self._push(link, frame)
        session.seq += 1
        resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {"_trace": ["fake-gateway"]}}
        session.replay.append(resumed)
        self._push(link, resumed)
        self.fake.changed()
        return True

    def send_ready(self, session: Session, ready: dict[str, Any],
                   guilds: list[dict[str, Any]]) -> None:
        """READY, then GUILD_CREATE for each guild (when the session has GUILDS)."""
        frames = [("READY", ready)] + [("GUILD_CREATE", g) for g in guilds
                                       if session.intents & Intent.GUILDS]
        for event, payload in frames:
            session.seq += 1
            frame = {"op": 0, "t": event, "s": session.seq, "d": payload}
            session.replay.append(frame)
            if session.link is not None:
                self._push(session.link, frame)
