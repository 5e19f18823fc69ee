"""The WebSocket control plane: one :class:`Connection` per client, on the gateway's root path.

Life of a connection: accept, send ``connect.challenge``, wait (bounded by the handshake
timeout) for a ``connect`` request, answer ``hello-ok``, then serve ``req`` frames — each
request in its own task owned by the connection — until either side closes.

Every frame leaves through one bounded outbound queue per connection drained by one writer
task. The bound (frames and bytes, ``policy.maxBufferedBytes``) is what keeps a client that
stops reading from growing server memory: when it overflows, the queue is dropped and the
client is disconnected with 1008 "slow consumer". Nothing here outlives the connection: the
reader, the writer and the request tasks are all awaited before the endpoint returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from clawgate.gateway import protocol
from clawgate.gateway.methods import dispatch
from clawgate.gateway.protocol import ClientInfo, ErrorShape, ResponseFrame, RpcError, has_scope

if TYPE_CHECKING:
    from clawgate.gateway.app import Gateway

log = logging.getLogger("clawgate.gateway.ws")

MAX_QUEUED_FRAMES = 10_000
HEALTH_EVERY_TICKS = 4  # a `health` event every fourth tick (60 s at the default interval)
MAX_IN_FLIGHT = 64  # requests served at once per connection; the reader waits beyond that
CLOSE_TIMEOUT_S = 2.0


def _knob(gateway: Gateway, name: str, default: float) -> float:
    """A tunable read from the gateway object (tests set them; defaults are OpenClaw's)."""
    value = getattr(gateway, name, None)
    return float(default if value is None else value)


def handshake_timeout(gateway: Gateway) -> float:
    env = gateway.env.get("CLAWGATE_HANDSHAKE_TIMEOUT_MS") or gateway.env.get(
        "OPENCLAW_HANDSHAKE_TIMEOUT_MS")
    default = protocol.HANDSHAKE_TIMEOUT_MS / 1000
    if env and env.strip().isdigit() and int(env) > 0:
        default = int(env) / 1000
    return _knob(gateway, "handshake_timeout_s", default)


def tick_interval(gateway: Gateway) -> float:
    return _knob(gateway, "tick_interval_s", protocol.TICK_INTERVAL_MS / 1000)


class Connection:
    """One WebSocket client: handshake state, granted scopes, outbound queue and tasks."""

    def __init__(self, gateway: Gateway, websocket: WebSocket) -> None:
        self.gateway = gateway
        self.websocket = websocket
        self.conn_id = uuid.uuid4().hex
        self.address = websocket.client.host if websocket.client else "unknown"
        self.nonce = str(uuid.uuid4())
        self.connected_at = int(time.time() * 1000)
        self.protocol = 0
        self.role = "operator"
        self.scopes: frozenset[str] = frozenset()
        self.client: ClientInfo | None = None
        self.authorized = False
        self.max_bytes = int(_knob(gateway, "ws_max_buffered_bytes",
                                   protocol.MAX_BUFFERED_BYTES))
        self.max_frames = int(_knob(gateway, "ws_max_queued_frames", MAX_QUEUED_FRAMES))
        self.max_payload = int(_knob(gateway, "ws_max_payload", protocol.MAX_PAYLOAD))
        self.buffered = 0  # characters waiting in the queue (a lower bound on bytes)
        self.peak_buffered = 0
        self._queue: deque[str] = deque()
        self._wakeup = asyncio.Event()
        self._seq = 0
        self._closing: tuple[int, str] | None = None
        self._close_requested = asyncio.Event()
        self._abandon = False  # slow consumer or dead socket: skip the orderly drain
        self._draining = False
        self._finished = asyncio.Event()
        self._requests: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    @property
    def client_id(self) -> str:
        return self.client.id if self.client else ""

    # -- outbound --------------------------------------------------------------------------

    def respond(self, req_id: str, payload: Any) -> None:
        frame: ResponseFrame = {"type": "res", "id": req_id, "ok": True, "payload": payload}
        self._send(frame)

    def respond_error(self, req_id: str, error: ErrorShape) -> None:
        frame: ResponseFrame = {"type": "res", "id": req_id, "ok": False, "error": error}
        self._send(frame)

    def push_event(self, event_json: str, payload_json: str) -> None:
        """Queue an event already serialized once for every recipient; adds this
        connection's next ``seq``."""
        self._seq += 1
        self._enqueue(f'{{"type":"event","event":{event_json},"payload":{payload_json},'
                      f'"seq":{self._seq}}}')

    def _send(self, frame: Mapping[str, Any]) -> None:
        self._enqueue(orjson.dumps(frame).decode())

    def _enqueue(self, text: str) -> None:
        if self._closing is not None:
            return
        if len(self._queue) >= self.max_frames or self.buffered + len(text) > self.max_bytes:
            self._overflow()
            return
        self._queue.append(text)
        self.buffered += len(text)
        self.peak_buffered = max(self.peak_buffered, self.buffered)
        self._wakeup.set()

    def _overflow(self) -> None:
        log.warning("disconnecting slow consumer %s (%s): %d frames, %d bytes queued",
                    self.conn_id, self.client_id, len(self._queue), self.buffered)
        self.gateway.metrics.inc("ws_slow_consumers_total")
        self._abandon = True
        self._queue.clear()  # give the memory back now, not when the socket dies
        self.buffered = 0
        self.request_close(1008, "slow consumer")

    async def _write_loop(self) -> None:
        try:
            while True:
                if not self._queue:
                    if self._draining:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                text = self._queue.popleft()
                self.buffered -= len(text)
                await self.websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._abandon = True
            self.request_close(1006, "send failed")

    # -- closing ---------------------------------------------------------------------------

    def request_close(self, code: int, reason: str) -> None:
        """Ask the connection to end; it stops receiving broadcasts at once."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        self._leave()
        self._close_requested.set()

    async def close(self, code: int, reason: str) -> None:
        """Close (used by the gateway at shutdown) and wait until the connection has ended."""
        self.request_close(code, reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finished.wait(), CLOSE_TIMEOUT_S * 3)

    def _leave(self) -> None:
        was = self.authorized
        self.authorized = False
        self.gateway.connections.discard(self)
        if was:
            from clawgate.gateway.methods.system import announce_presence

            announce_presence(self.gateway)

    # -- the connection's life -------------------------------------------------------------

    async def run(self) -> None:
        self.gateway.metrics.inc("ws_connections_total")
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write_loop(), name=f"ws-writer:{self.conn_id}")
        timer = loop.call_later(handshake_timeout(self.gateway), self._handshake_expired)
        self._send({"type": "event", "event": "connect.challenge",
                    "payload": {"nonce": self.nonce, "ts": int(time.time() * 1000)}})
        reader = loop.create_task(self._read_loop(), name=f"ws-reader:{self.conn_id}")
        closer = loop.create_task(self._close_requested.wait())
        try:
            await asyncio.wait({reader, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            self._leave()
            for task in (reader, closer, *self._requests):
                task.cancel()
            await asyncio.gather(reader, closer, *self._requests, return_exceptions=True)
            await self._finish(writer)
            self._finished.set()

    async def _finish(self, writer: asyncio.Task[None]) -> None:
        if self._closing is None:  # the client went away: nothing left to say
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            return
        code, reason = self._closing
        if self._abandon:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        else:  # deliver what is queued (e.g. the refusal of a handshake), then close
            self._draining = True
            self._wakeup.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer, CLOSE_TIMEOUT_S)
        if code != 1006:
            with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                await asyncio.wait_for(self.websocket.close(code, reason[:120]), CLOSE_TIMEOUT_S)

    def _handshake_expired(self) -> None:
        if not self.authorized:
            self.request_close(1008, "handshake timeout")

    async def _read_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                try:
                    text = bytes(message.get("bytes") or b"").decode()
                except UnicodeDecodeError:
                    self.request_close(1007, "frames must be UTF-8 JSON")
                    return
            size = len(text) if text.isascii() else len(text.encode())
            if not self.authorized:
                if size > protocol.PRECONNECT_MAX_BYTES:
                    self.request_close(1009, "pre-connect frame too large")
                    return
                await self._handshake(text)
                if self._closing is not None:
                    return
            elif size > self.max_payload:
                self.request_close(1009, "frame too large")
                return
            else:
                await self._admit(text)

    async def _admit(self, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            log.debug("connection %s sent a frame that is not JSON", self.conn_id)
            return
        req_id = frame.get("id") if isinstance(frame, dict) else None
        if not isinstance(req_id, str) or not req_id:
            log.debug("connection %s sent a frame without an id", self.conn_id)
            return
        method = frame.get("method")
        if frame.get("type") != "req" or not isinstance(method, str) or not method:
            self.respond_error(req_id, protocol.invalid(
                "invalid request frame: expected {type: 'req', id, method, params?}").shape())
            return
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(
            dispatch(self.gateway, self, req_id, method, frame.get("params")),
            name=f"ws-req:{method}")
        self._requests.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._requests.discard(task)
        self._slots.release()

    # -- handshake -------------------------------------------------------------------------

    async def _handshake(self, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            frame = None
        req_id = frame.get("id") if isinstance(frame, dict) else None
        if not isinstance(frame, dict) or frame.get("type") != "req" or frame.get(
                "method") != "connect" or not isinstance(req_id, str) or not req_id:
            message = "invalid handshake: first request must be connect"
            if isinstance(req_id, str) and req_id:
                self.respond_error(req_id, protocol.invalid(message).shape())
            self.request_close(1008, message)
            return
        try:
            hello = await self._connect(frame.get("params"))
        except protocol.Refusal as refused:
            self.respond_error(req_id, refused.shape())
            self.request_close(refused.close_code, refused.message)
            return
        if self._closing is not None:  # timed out while we were building the answer
            return
        self.respond(req_id, hello)
        self.authorized = True  # from here on broadcasts reach it, after hello-ok
        self.gateway.connections.add(self)
        from clawgate.gateway.methods.system import announce_presence

        announce_presence(self.gateway)

    async def _connect(self, raw: Any) -> dict[str, Any]:
        gateway = self.gateway
        if not gateway.ready:
            raise protocol.starting()
        try:
            params = protocol.parse_params(protocol.ConnectParams, raw, "connect")
        except RpcError as exc:
            raise protocol.Refusal(1008, exc.code, exc.message) from None
        version = protocol.negotiate(params.minProtocol, params.maxProtocol)
        if version is None:
            raise protocol.protocol_mismatch(params)
        if gateway.credentials.mode != "none":
            wait = gateway.limiter.retry_after(self.address)
            if wait > 0:
                raise protocol.rate_limited(wait)
            kind, presented = protocol.presented_secret(params, gateway.credentials.mode)
            if not gateway.credentials.check(presented):
                gateway.limiter.failed(self.address)
                raise protocol.unauthorized(kind, presented)
            gateway.limiter.succeeded(self.address)
        reason = protocol.verify_device(params, nonce=self.nonce,
                                        now_ms=int(time.time() * 1000))
        if reason is not None:
            raise protocol.device_invalid(reason)
        self.protocol, self.client, self.role = version, params.client, params.role
        self.scopes = protocol.granted_scopes(params)
        from clawgate.gateway.methods.system import hello

        return await hello(gateway, self)


def endpoint(gateway: Gateway) -> Callable[[WebSocket], Awaitable[None]]:
    """The Starlette WebSocket endpoint mounted at ``/``."""

    async def serve(websocket: WebSocket) -> None:
        await websocket.accept()
        await Connection(gateway, websocket).run()

    return serve


def broadcast(gateway: Gateway, event: str, payload: Any, *, scope: str | None = None) -> int:
    """Send an event to every authorized connection (holding ``scope`` when given); each gets
    its own ``seq``. The payload is serialized once. Returns how many connections got it."""
    if not gateway.connections:
        return 0
    event_json = orjson.dumps(event).decode()
    payload_json = orjson.dumps(payload).decode()
    sent = 0
    for conn in list(gateway.connections):
        if conn.authorized and (scope is None or has_scope(conn.scopes, scope)):
            conn.push_event(event_json, payload_json)
            sent += 1
    return sent


async def tick_loop(gateway: Gateway, stop: asyncio.Event) -> None:
    """Run while the gateway serves: ``tick {ts}`` every ``policy.tickIntervalMs``, and the
    relay turning engine run events into ``agent`` and ``chat`` events. Ends when ``stop``
    is set; the relay is a child task, cancelled and awaited here."""
    from clawgate.gateway.methods import chat, system

    system.install_log_ring(gateway)
    relay = asyncio.get_running_loop().create_task(chat.relay(gateway), name="ws-chat-relay")
    try:
        interval = tick_interval(gateway)
        ticks = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                broadcast(gateway, "tick", {"ts": int(time.time() * 1000)})
                ticks += 1
                if ticks % HEALTH_EVERY_TICKS == 0 and gateway.connections:
                    broadcast(gateway, "health", await system.health_summary(gateway))
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
        system.remove_log_ring(gateway)
