"""Socket Mode: one account's connection, through slack-sdk's ``websockets`` Socket Mode client.

Why that client and not the aiohttp one: the aiohttp client's liveness check is aiohttp's
``heartbeat``, which closes the socket when a pong is not read within ``ping_interval / 2``
(2.5 s by default) — a timer that fires whenever the event loop was busy for that long, the
reconnect flapping OpenClaw users hit (#73857). The ``websockets`` client relies on websockets'
keepalive (a ping every ``ping_interval_s``, and only a pong missing for 20 s closes the
connection), and its monitor reconnects only a socket that is actually closed. A loop busy
for a few seconds changes nothing.

Three things are changed in the SDK client (a small subclass):

- envelopes are handled by tasks this client owns (the SDK starts an unowned, unbounded task
  per frame): at most ``MAX_INFLIGHT`` at once, one at a time and in arrival order per
  conversation. Each is acknowledged only after ``context.receive`` returned. A
  ``disconnect`` frame reconnects only after every envelope before it was handled — never
  while one is being received;
- the frame queue is bounded (``MAX_FRAMES``): when it and the in-flight slots are full the
  client stops reading and the socket pushes back;
- the SDK's tasks, and the envelopes in flight, are awaited when the monitor stops.

An envelope whose ``receive`` failed is not acknowledged: Slack delivers it again (on this or
the next connection) and the core's dedupe makes a second delivery of an admitted message a
no-op. Reconnects: a ``disconnect`` frame (``refresh_requested``, ``warning``...) makes the
client open a fresh URL from ``apps.connections.open`` at once; a dropped socket is noticed by
the client's monitor within ``ping_interval_s`` and replaced the same way. A connection down
for longer than ``STALE_AFTER_S`` ends the monitor, and the core restarts it with backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.socket_mode.websockets import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from clawgate import ChannelAuthError, ChannelContext

from .client import APP_FIX, AUTH_ERRORS, slack_error
from .normalize import Identity

log = logging.getLogger("clawgate.channels.slack")
sdk_log = logging.getLogger("clawgate.channels.slack.sdk")

MAX_FRAMES = 1000
MAX_INFLIGHT = 32
CLOSE_TIMEOUT_S = 2.0
STALE_AFTER_S = 120.0
# An envelope's handler returns the ack's payload (None: a bare ack); when it raises, the
# envelope is not acknowledged and Slack delivers it again.
Handler = Callable[[SocketModeRequest], Awaitable[dict[str, Any] | None]]


class _Inflight:
    """The envelopes being handled: at most ``limit`` at once, in arrival order within a
    conversation (a lock per conversation, forgotten when its last envelope is done)."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._lanes: dict[str, tuple[asyncio.Lock, int]] = {}

    async def start(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Start ``work`` once a slot is free (waiting here is the back-pressure)."""
        await self._slots.acquire()
        lock, users = self._lanes.get(key) or (asyncio.Lock(), 0)
        self._lanes[key] = (lock, users + 1)
        # Tasks start in creation order, so they take a conversation's lock in that order.
        task = asyncio.get_running_loop().create_task(self._run(key, lock, work),
                                                      name=f"slack-envelope:{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: str, lock: asyncio.Lock,
                   work: Callable[[], Awaitable[None]]) -> None:
        try:
            async with lock:
                await work()
        finally:
            self._slots.release()
            held, users = self._lanes[key]
            if users <= 1:
                del self._lanes[key]
            else:
                self._lanes[key] = (held, users - 1)

    async def drain(self) -> None:
        """Wait until every envelope started so far was handled."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _lane(message: dict[str, Any]) -> str:
    """The conversation an envelope belongs to (its ordering lane)."""
    payload = message.get("payload") or {}
    event = payload.get("event") if isinstance(payload, dict) else None
    channel = (event or {}).get("channel") if isinstance(event, dict) else None
    channel = channel or (payload.get("channel_id") if isinstance(payload, dict) else None)
    return str(channel or message.get("envelope_id") or "")


class _Client(SocketModeClient):
    """slack-sdk's websockets Socket Mode client with owned, bounded, ordered envelope
    handling and a quiet, bounded close (see the module docstring)."""

    def __init__(self, app_token: str, web: AsyncWebClient, ping_interval: float,
                 on_connect: Callable[[], None],
                 on_frame: Callable[[dict[str, Any]], None]) -> None:
        super().__init__(app_token=app_token, web_client=web, ping_interval=ping_interval,
                         logger=sdk_log)
        # Replaced before the SDK's processor task first runs (it starts on the next loop turn).
        self.message_queue = asyncio.Queue(maxsize=MAX_FRAMES)
        self.on_connect = on_connect
        self.on_frame = on_frame
        self.failure: str | None = None
        self.inflight = _Inflight(MAX_INFLIGHT)

    async def process_message(self) -> None:
        raw = await self.message_queue.get()
        if raw is None:
            return
        message = json.loads(raw) if raw.startswith("{") else {}
        self.on_frame(message)  # hello, disconnect (which the SDK handles before listeners)
        if message.get("envelope_id"):
            await self.inflight.start(_lane(message),
                                      lambda: self.run_message_listeners(message, raw))
            return
        if message.get("type") == "disconnect":
            await self.inflight.drain()  # never reconnect while an envelope is being received
        await self.run_message_listeners(message, raw)

    async def issue_new_wss_url(self) -> str:
        try:
            url: str = await super().issue_new_wss_url()
        except Exception as exc:
            self.failure = f"apps.connections.open: {slack_error(exc) or exc}" \
                if isinstance(exc, SlackApiError) else f"apps.connections.open: {exc!r}"
            raise
        return url

    async def connect(self) -> None:
        await super().connect()  # type: ignore[no-untyped-call]
        self.failure = None
        self.on_connect()

    def tasks(self) -> list[asyncio.Future[Any]]:
        return [t for t in (self.message_processor, self.current_session_monitor,
                            self.message_receiver) if t is not None]

    async def aclose(self) -> None:
        # The SDK's close() closes the socket first and its receiver logs the closed socket as
        # an error; stopping the tasks first makes a clean stop quiet.
        self.closed = True
        self.auto_reconnect_enabled = False
        tasks = self.tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.inflight.cancel()
        session = self.current_session
        if session is None:
            return
        try:  # a peer that does not answer the close handshake must not hold the shutdown
            await asyncio.wait_for(session.close(), CLOSE_TIMEOUT_S)
        except Exception:
            transport = getattr(session, "transport", None)
            if transport is not None:
                transport.abort()


async def run(context: ChannelContext, web: AsyncWebClient, me: Identity, *,
              app_token: str, ping_interval: float, handle: Handler,
              reconnected: Callable[[], int]) -> None:
    """Hold the Socket Mode connection of one account until cancelled."""
    connects = 0

    def on_connect() -> None:
        nonlocal connects
        connects += 1
        fields: dict[str, Any] = {"socketConnects": connects}
        if connects > 1:
            fields["reconnectAttempts"] = reconnected()
        context.status(**fields)

    def on_frame(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "hello":
            context.status(connected=True, mode="socket", bot=me.status(),
                           socketConnections=message.get("num_connections"))
        elif kind == "disconnect":
            context.status(connected=False, lastDisconnect={
                "at": int(time.time() * 1000), "reason": message.get("reason")})

    client = _Client(app_token, web, ping_interval, on_connect, on_frame)

    async def on_request(_client: Any, request: SocketModeRequest) -> None:
        try:
            payload = await handle(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # not acknowledged: Slack delivers it again
            log.warning("slack: envelope %s not handled: %r", request.envelope_id, exc)
            context.status(lastError=f"{type(exc).__name__}: {exc}")
            return
        try:
            await client.send_socket_mode_response(SocketModeResponse(request.envelope_id,
                                                                      payload=payload))
        except Exception as exc:  # the socket went away: Slack redelivers, dedupe absorbs it
            log.info("slack: ack of %s not sent: %r", request.envelope_id, exc)

    client.socket_mode_request_listeners.append(on_request)
    try:
        try:
            await client.connect()
        except SlackApiError as exc:
            code = slack_error(exc)
            if code in AUTH_ERRORS:
                raise ChannelAuthError(f"Slack refused the app token ({code})",
                                       fix=APP_FIX) from None
            raise
        await _watch(client, context, ping_interval)
    finally:
        await client.aclose()


async def _watch(client: _Client, context: ChannelContext, ping_interval: float) -> None:
    """Report the connection's state; give up (the core restarts the monitor) when it stayed
    down too long."""
    loop = asyncio.get_running_loop()
    down_since: float | None = None
    check = max(0.05, min(ping_interval, 5.0))
    while True:
        await asyncio.sleep(check)
        up = bool(await client.is_connected())
        if up:
            if down_since is not None:  # back (the hello frame said so too)
                down_since = None
                context.status(connected=True)
            continue
        if down_since is None:
            down_since = loop.time()
            context.status(connected=False)
        if client.failure:
            context.status(lastError=client.failure)
        if loop.time() - down_since > max(STALE_AFTER_S, 6 * ping_interval):
            raise ConnectionError(f"Socket Mode has been down for "
                                  f"{loop.time() - down_since:.0f} s"
                                  + (f" ({client.failure})" if client.failure else ""))
