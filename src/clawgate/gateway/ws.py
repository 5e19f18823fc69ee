"""The WebSocket control plane: one :class:`Connection` per client, on the gateway's root path.

Life of a connection: the hub admits it (or it is refused with 1013 when ``max_connections``
are open), it gets ``connect.challenge``, has ``handshake_timeout_s`` to send ``connect``,
answers ``hello-ok``, then serves ``req`` frames — each request in its own task owned by the
connection — until either side closes.

Every frame leaves through one bounded outbound queue per connection drained by one writer
task. A connection with a backlog may queue at most ``policy.connection_buffer`` bytes (and
``max_queued_frames`` frames); past that it is a slow consumer: its queue is dropped at once
and it is closed with 1008. The bytes it holds also count against the hub's total budget.
Nothing here outlives the connection: reader, writer and request tasks are all awaited before
the endpoint returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from clawgate.errors import RpcError
from clawgate.gateway import protocol
from clawgate.gateway.hub import UNSEQUENCED, Frame
from clawgate.gateway.logring import SERVING
from clawgate.gateway.methods import dispatch, method_names
from clawgate.gateway.methods.system import hello
from clawgate.gateway.policy import PRECONNECT_MAX_BYTES
from clawgate.gateway.protocol import ClientInfo, ErrorShape, ResponseFrame
from clawgate.gateway.rpc import Services

log = logging.getLogger("clawgate.gateway.ws")

CLOSE_TIMEOUT_S = 2.0
CLOSE_REQUESTED = "close requested"  # the cancel message request_close() sends the reader
# Modes of one-shot clients that are not presence entries (OpenClaw's rule for the CLI).
NO_PRESENCE_MODES = frozenset({"cli", "probe"})


class Connection:
    """One WebSocket client: handshake state, granted scopes, outbound queue and tasks."""

    __slots__ = ("gateway", "hub", "policy", "websocket", "conn_id", "address", "nonce",
                 "connected_at", "protocol", "role", "scopes", "client", "authorized",
                 "peak_buffered", "_buffered", "_queue", "_seq", "_closing", "_abandon",
                 "_finished", "_ended", "_writer", "_serving", "_reading", "_requests",
                 "_slots",
                 "__weakref__")

    def __init__(self, gateway: Services, websocket: WebSocket) -> None:
        self.gateway = gateway
        self.hub = gateway.hub
        self.policy = gateway.policy
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
        self.peak_buffered = 0
        self._buffered = 0  # bytes waiting in the queue (also reserved from the hub's budget)
        self._queue: deque[tuple[Frame | str, int]] | None = None  # made when first needed
        self._seq = 0
        self._closing: tuple[int, str] | None = None
        self._abandon = False  # slow consumer or dead socket: skip the orderly drain
        self._finished: asyncio.Future[None] | None = None  # made by close(), if called
        self._ended = False
        # An idle connection holds no task but the one serving it: the writer runs only while
        # something is queued, and reading happens in the serving task itself (I12: the cost
        # of an idle connection is what budgets.md counts).
        self._writer: asyncio.Task[None] | None = None
        self._serving: asyncio.Task[Any] | None = None
        self._reading = False
        self._requests: set[asyncio.Task[None]] | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def client_id(self) -> str:
        return self.client.id if self.client else ""

    @property
    def ended(self) -> bool:
        """True once the connection has closed and cleaned up."""
        return self._ended

    @property
    def buffered(self) -> int:
        return self._buffered

    # -- outbound --------------------------------------------------------------------------

    def respond(self, req_id: str, payload: Any) -> None:
        frame: ResponseFrame = {"type": "res", "id": req_id, "ok": True, "payload": payload}
        self._enqueue(orjson.dumps(frame).decode(), 0)

    def respond_error(self, req_id: str, error: ErrorShape) -> None:
        frame: ResponseFrame = {"type": "res", "id": req_id, "ok": False, "error": error}
        self._enqueue(orjson.dumps(frame).decode(), 0)

    def push(self, frame: Frame) -> None:
        """Queue a broadcast frame (shared with every recipient); adds this connection's next
        ``seq`` when it is written."""
        self._seq += 1
        self._enqueue(frame, self._seq)

    def _enqueue(self, item: Frame | str, seq: int) -> None:
        if self._closing is not None:
            return
        size = item.size if isinstance(item, Frame) else len(item)
        # A frame is always taken when nothing is queued (one large response is fine); a
        # backlog past the budget means the client does not read.
        if self._queue and (self._buffered + size > self.policy.connection_buffer
                            or len(self._queue) >= self.policy.max_queued_frames):
            self._overflow()
            return
        if not self.hub.reserve(size, self):
            self.shed(1013, "gateway outbound buffer full; try again later")
            return
        if self._queue is None:
            self._queue = deque()
        self._queue.append((item, seq))
        self._buffered += size
        self.peak_buffered = max(self.peak_buffered, self._buffered)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"ws-writer:{self.conn_id}")

    def _overflow(self) -> None:
        log.warning("disconnecting slow consumer %s (%s): %d frames, %d bytes queued",
                    self.conn_id, self.client_id, len(self._queue or ()), self._buffered)
        self.hub.metrics.inc("ws_slow_consumers_total")
        self.shed(1008, "slow consumer")

    def shed(self, code: int, reason: str) -> None:
        """Close now and drop what is queued: its bytes go back to the budget at once."""
        self._abandon = True
        self._queue = None
        self.hub.release(self._buffered)
        self._buffered = 0
        self.request_close(code, reason)

    async def _write_loop(self) -> None:
        """Send what is queued, then end (the next frame starts a new writer)."""
        try:
            while self._queue:
                item, seq = self._queue.popleft()
                if not self._queue:
                    self._queue = None  # an idle connection keeps no deque
                if isinstance(item, Frame):
                    size, text = item.size, item.text(seq)
                else:
                    size, text = len(item), item
                self._buffered -= size
                self.hub.release(size)
                await self.websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            self._abandon = True
            self.request_close(1006, "send failed")
        finally:
            self._writer = None

    # -- closing ---------------------------------------------------------------------------

    def request_close(self, code: int, reason: str) -> None:
        """Ask the connection to end; it stops receiving broadcasts at once."""
        if self._closing is not None:
            return
        self._closing = (code, reason)
        self.authorized = False
        self.hub.leave(self)
        serving = self._serving
        if self._reading and serving is not None and serving is not asyncio.current_task():
            serving.cancel(CLOSE_REQUESTED)  # stop waiting for the client's next frame

    async def close(self, code: int, reason: str) -> None:
        """Close (used by the gateway at shutdown) and wait until the connection has ended."""
        self.request_close(code, reason)
        with contextlib.suppress(TimeoutError):
            if not self._ended:
                if self._finished is None:
                    self._finished = asyncio.get_running_loop().create_future()
                await asyncio.wait_for(asyncio.shield(self._finished), CLOSE_TIMEOUT_S * 3)

    # -- the connection's life -------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until either side closes (reading in this task)."""
        self.hub.metrics.inc("ws_connections_total")
        loop = asyncio.get_running_loop()
        self._serving = asyncio.current_task()
        timer = loop.call_later(self.policy.handshake_timeout_s, self._handshake_expired)
        self._enqueue(Frame.event("connect.challenge",
                                  {"nonce": self.nonce, "ts": int(time.time() * 1000)}),
                      UNSEQUENCED)
        try:
            self._reading = True
            await self._read_loop()
        except asyncio.CancelledError as cancelled:
            # request_close() cancels the read with CLOSE_REQUESTED; anything else is a real
            # cancellation (the server is going away) and goes on after the clean-up below.
            if not (cancelled.args and cancelled.args[0] == CLOSE_REQUESTED) or \
                    self._serving is None:
                raise
            self._serving.uncancel()
        finally:
            self._reading = False
            timer.cancel()
            self.authorized = False
            self.hub.detach(self)
            requests = tuple(self._requests or ())
            for task in requests:
                task.cancel()
            await asyncio.gather(*requests, return_exceptions=True)
            await self._finish()
            self.hub.release(self._buffered)  # whatever the writer did not send
            self._buffered = 0
            self._queue = None
            self._ended = True
            if self._finished is not None and not self._finished.done():
                self._finished.set_result(None)

    async def _finish(self) -> None:
        writer = self._writer
        if self._closing is None or self._abandon:  # gone, or not worth an orderly drain
            if writer is not None:
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            if self._closing is None:  # the client went away: nothing left to say
                return
        elif writer is not None:  # deliver what is queued (e.g. a handshake refusal)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(writer), CLOSE_TIMEOUT_S)
            if not writer.done():
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        code, reason = self._closing
        if code != 1006:
            with contextlib.suppress(TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                await asyncio.wait_for(self.websocket.close(code, protocol.close_reason(reason)),
                                       CLOSE_TIMEOUT_S)

    def _handshake_expired(self) -> None:
        if not self.authorized:
            self.request_close(1008, "handshake timeout")

    async def _read_loop(self) -> None:
        while self._closing is None:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                try:
                    text = bytes(message.get("bytes") or b"").decode()
                except UnicodeDecodeError:
                    self.request_close(1007, "binary frame is not valid UTF-8 JSON")
                    return
            size = len(text) if text.isascii() else len(text.encode())
            if not self.authorized:
                if size > PRECONNECT_MAX_BYTES:
                    self.request_close(1009, "pre-connect frame too large")
                    return
                await self._handshake(text)
                if self._closing is not None:
                    return
            elif size > self.policy.max_payload:
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
            self.respond_error(req_id, protocol.error_shape(protocol.invalid(
                "invalid request frame: expected {type: 'req', id, method, params?}")))
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.policy.max_in_flight)
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(
            dispatch(self.gateway, self, req_id, method, frame.get("params")),
            name=f"ws-req:{method}")
        if self._requests is None:
            self._requests = set()
        self._requests.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        if self._requests is not None:
            self._requests.discard(task)
        if self._slots is not None:
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
                self.respond_error(req_id, protocol.error_shape(protocol.invalid(message)))
            self.request_close(1008, message)
            return
        try:
            answer = await self._connect(frame.get("params"))
        except protocol.Refusal as refused:
            self.respond_error(req_id, protocol.error_shape(refused))
            self.request_close(refused.close_code, refused.close_reason)
            return
        if self._closing is not None:  # timed out while we were building the answer
            return
        self.respond(req_id, answer)
        self.authorized = True  # from here on broadcasts reach it, after hello-ok
        self.hub.join(self, self._presence_entry())

    async def _connect(self, raw: Any) -> dict[str, Any]:
        gateway = self.gateway
        if not gateway.ready:
            raise protocol.starting()
        try:
            params = protocol.parse_params(protocol.ConnectParams, raw, "connect")
        except RpcError as exc:
            raise protocol.bad_connect(exc, gateway.version) from None
        version = protocol.negotiate(params.minProtocol, params.maxProtocol)
        if version is None:
            raise protocol.protocol_mismatch(params, gateway.version)
        gateway.check_connect(self.address, params)
        reason = protocol.verify_device(params, nonce=self.nonce,
                                        now_ms=int(time.time() * 1000))
        if reason is not None:
            raise protocol.device_invalid(reason)
        self.protocol, self.client, self.role = version, params.client, params.role
        self.scopes = protocol.granted_scopes(params)
        generation = gateway.runtime.host.current
        return await hello(gateway, conn_id=self.conn_id, protocol=version, role=self.role,
                           scopes=self.scopes, methods=method_names(generation),
                           joining=self._presence_entry())

    def _presence_entry(self) -> dict[str, Any] | None:
        client = self.client
        if client is None or client.mode in NO_PRESENCE_MODES:
            return None
        # OpenClaw's presence entry (a closed schema): the connection is told apart by its
        # instanceId, the client's own or, when it sent none, this connection's id.
        entry: dict[str, Any] = {"ip": self.address, "reason": "connect",
                                 "ts": self.connected_at, "roles": [self.role],
                                 "scopes": sorted(self.scopes), "version": client.version,
                                 "platform": client.platform, "mode": client.mode,
                                 "clientId": client.id,
                                 "instanceId": client.instanceId or self.conn_id}
        for name in ("deviceFamily", "modelIdentifier", "timeZone"):
            if getattr(client, name):
                entry[name] = getattr(client, name)
        if client.displayName:
            entry["text"] = client.displayName
        return entry


def endpoint(gateway: Services) -> Callable[[WebSocket], Awaitable[None]]:
    """The Starlette WebSocket endpoint mounted at ``/``."""

    async def serve(websocket: WebSocket) -> None:
        SERVING.set(gateway)
        await websocket.accept()
        connection = Connection(gateway, websocket)
        if not gateway.hub.attach(connection):
            await websocket.close(1013, f"too many connections "
                                        f"(gateway.ws.max_connections = "
                                        f"{gateway.policy.max_connections})")
            return
        # The upgrade request's headers were read (Origin/Host guard, address) and are not
        # needed again: an idle connection should not keep them.
        websocket.scope["headers"] = []
        await connection.run()

    return serve


def asgi_endpoint(gateway: Services) -> ASGIApp:
    """The endpoint as a plain ASGI app, for the guard to call directly (I12): going through
    the router and the exception middleware would keep their frames and closures alive for
    the whole life of every connection."""
    serve = endpoint(gateway)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await serve(WebSocket(scope, receive, send))

    return app
