"""A small client for a gateway's WebSocket control plane — what the CLI uses.

::

    async with GatewayClient("ws://127.0.0.1:18789", token) as client:
        health = await client.call("health")
        async for event in client.events():
            ...

It answers the ``connect.challenge`` with a ``connect`` request (client id ``cli``, mode
``cli``, protocol 3..4, every operator scope), then matches responses to calls by id; events
go to a bounded queue that :meth:`GatewayClient.events` iterates (when nobody reads them, the
oldest are dropped). ``agent`` calls wait for the final response unless told otherwise.
:func:`call_remote` is the synchronous one-shot form, with the URL and credentials taken
from the local config, the environment and ``<state>/gateway.token``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from clawgate import __version__
from clawgate import config as config_module
from clawgate.errors import ClawgateError
from clawgate.gateway.auth import TOKEN_FILE
from clawgate.gateway.policy import PROTOCOL_MAX_PAYLOAD as MAX_PAYLOAD
from clawgate.gateway.protocol import OPERATOR_SCOPES

__all__ = ["Event", "GatewayClient", "GatewayError", "GatewayUnreachable", "call_remote",
           "gateway_token", "gateway_url"]


class GatewayError(ClawgateError):
    """The gateway refused a call (``code`` is the RPC error code) or the connection ended."""

    def __init__(self, code: str, message: str, *, details: Any = None,
                 retry_after_ms: int | None = None) -> None:
        self.code = code
        self.details = details
        self.retry_after_ms = retry_after_ms
        super().__init__(f"{code}: {message}")

    @classmethod
    def from_shape(cls, error: Any) -> GatewayError:
        shape = error if isinstance(error, dict) else {}
        return cls(str(shape.get("code", "UNAVAILABLE")), str(shape.get("message", "error")),
                   details=shape.get("details"), retry_after_ms=shape.get("retryAfterMs"))


class GatewayUnreachable(GatewayError):
    """No gateway answers at the URL (refused, unresolvable, timed out, not a gateway)."""

    def __init__(self, url: str, why: str) -> None:
        self.url = url
        self.code = "UNAVAILABLE"
        self.details = None
        self.retry_after_ms = None
        ClawgateError.__init__(self, f"no gateway at {url}: {why}; start one with "
                                     "`clawgate gateway`", reason="gateway_unreachable")


class Event(tuple[str, Any]):
    """One event frame. Unpacks as ``(name, payload)``; ``seq`` is the connection's sequence
    number (None for events sent outside the sequence, like ``connect.challenge``)."""

    seq: int | None

    def __new__(cls, name: str, payload: Any, seq: int | None = None) -> Event:
        event = super().__new__(cls, (name, payload))
        event.seq = seq
        return event

    @property
    def name(self) -> str:
        return self[0]

    @property
    def payload(self) -> Any:
        return self[1]


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    expect_final: bool
    accepted: Any = field(default=None)


class GatewayClient:
    """One authenticated connection to a gateway (use it as an async context manager)."""

    def __init__(self, url: str, token: str | None = None, *, password: str | None = None,
                 scopes: tuple[str, ...] = OPERATOR_SCOPES, client_id: str = "cli",
                 mode: str = "cli", timeout: float = 30.0, max_events: int = 10_000) -> None:
        self.url = url
        self.timeout = timeout
        self.hello: dict[str, Any] = {}
        self._token = token
        self._password = password
        self._scopes = scopes
        self._client_id = client_id
        self._mode = mode
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, _Pending] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue(max_events)
        self._closed: GatewayError | None = None

    async def __aenter__(self) -> GatewayClient:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        """Open the socket and do the handshake; returns the ``hello-ok`` payload."""
        try:
            ws = await connect(self.url, max_size=MAX_PAYLOAD, open_timeout=self.timeout)
        except ConnectionRefusedError:
            raise GatewayUnreachable(self.url, "connection refused") from None
        except socket.gaierror as exc:
            raise GatewayUnreachable(self.url, f"cannot resolve the host ({exc.strerror})") \
                from None
        except TimeoutError:
            raise GatewayUnreachable(self.url, "no answer (timed out)") from None
        except OSError as exc:
            raise GatewayUnreachable(self.url, exc.strerror or str(exc)) from None
        except InvalidURI:
            raise GatewayUnreachable(self.url, "not a ws:// or wss:// URL") from None
        except InvalidHandshake as exc:
            raise GatewayUnreachable(self.url, f"not a clawgate gateway ({exc})") from None
        self._ws = ws
        try:
            async with asyncio.timeout(self.timeout):
                challenge = orjson.loads(await ws.recv())
                if challenge.get("event") != "connect.challenge":
                    raise GatewayError("INVALID_REQUEST", "the server sent no connect.challenge")
                req_id = uuid.uuid4().hex
                await ws.send(orjson.dumps({"type": "req", "id": req_id, "method": "connect",
                                            "params": self._connect_params()}).decode())
                while True:
                    frame = orjson.loads(await ws.recv())
                    if frame.get("type") == "res" and frame.get("id") == req_id:
                        break
        except BaseException:
            await ws.close()
            raise
        if not frame.get("ok"):
            await ws.close()
            raise GatewayError.from_shape(frame.get("error"))
        self.hello = frame.get("payload") or {}
        self._reader = asyncio.get_running_loop().create_task(self._read(ws))
        return self.hello

    def _connect_params(self) -> dict[str, Any]:
        auth = {k: v for k, v in (("token", self._token), ("password", self._password)) if v}
        return {"minProtocol": 3, "maxProtocol": 4, "role": "operator",
                "client": {"id": self._client_id, "version": __version__,
                           "platform": sys.platform, "mode": self._mode},
                "scopes": list(self._scopes), "auth": auth,
                "userAgent": f"clawgate/{__version__}"}

    async def close(self) -> None:
        """Close the connection and stop the reader (pending calls fail)."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def call(self, method: str, params: Mapping[str, Any] | None = None, *,
                   expect_final: bool | None = None, wait_s: float | None = None) -> Any:
        """Call ``method`` and return its payload; raises GatewayError when refused.

        With ``expect_final`` (the default for ``agent``) an ``accepted`` answer is skipped
        and the call returns the final response that follows with the same id. ``wait_s``
        bounds the wait (default: the client's ``timeout``).
        """
        if self._ws is None or self._reader is None:
            raise GatewayError("UNAVAILABLE", "not connected")
        if self._closed is not None:
            raise self._closed
        req_id = uuid.uuid4().hex
        final = method == "agent" if expect_final is None else expect_final
        pending = _Pending(asyncio.get_running_loop().create_future(), final)
        self._pending[req_id] = pending
        frame: dict[str, Any] = {"type": "req", "id": req_id, "method": method}
        if params is not None:
            frame["params"] = dict(params)
        try:
            await self._ws.send(orjson.dumps(frame).decode())
            return await asyncio.wait_for(pending.future, wait_s or self.timeout)
        except ConnectionClosed as exc:
            raise self._closed or GatewayError("UNAVAILABLE", f"connection closed ({exc})") \
                from None
        finally:
            self._pending.pop(req_id, None)
            if pending.future.done() and not pending.future.cancelled():
                # The reader may fail the future while the send is failing too: the caller
                # got the error from the send, so mark the future's copy as retrieved.
                pending.future.exception()

    async def events(self) -> AsyncIterator[Event]:
        """Events as they arrive, until the connection closes."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # later iterators end too
                return
            yield event

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                try:
                    frame = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(frame, dict):
                    continue
                if frame.get("type") == "res":
                    self._resolve(frame)
                elif frame.get("type") == "event":
                    self._push(Event(str(frame.get("event")), frame.get("payload"),
                                     frame.get("seq")))
        except ConnectionClosed:
            pass
        finally:
            code = ws.close_code
            why = f"{code} {ws.close_reason or ''}".strip() if code else "no close frame"
            self._closed = GatewayError("UNAVAILABLE", f"connection closed ({why})")
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(self._closed)
            self._push(None)

    def _resolve(self, frame: dict[str, Any]) -> None:
        pending = self._pending.get(str(frame.get("id")))
        if pending is None or pending.future.done():
            return
        if not frame.get("ok"):
            pending.future.set_exception(GatewayError.from_shape(frame.get("error")))
            return
        payload = frame.get("payload")
        if pending.expect_final and isinstance(payload, dict) and payload.get(
                "status") == "accepted":
            pending.accepted = payload
            return
        pending.future.set_result(payload)

    def _push(self, event: Event | None) -> None:
        while True:
            try:
                self._events.put_nowait(event)
                return
            except asyncio.QueueFull:
                self._events.get_nowait()  # drop the oldest: an unread stream stays bounded


def gateway_url(env: Mapping[str, str] | None = None, *, url: str | None = None,
                port: int | None = None) -> str:
    """The gateway's WebSocket URL: ``url``, else ``CLAWGATE_GATEWAY_URL``, else the local
    config's bind address with ``port`` (else ``CLAWGATE_GATEWAY_PORT``, else the config's)."""
    env = os.environ if env is None else env
    chosen = url or env.get("CLAWGATE_GATEWAY_URL")
    if chosen:
        chosen = chosen.strip().rstrip("/")
        if chosen.startswith(("http://", "https://")):  # the address the gateway announces
            chosen = "ws" + chosen[4:]
        return chosen
    settings = config_module.load(env)
    host = settings.config.gateway.bind
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{settings.config.gateway.port if port is None else port}"


def gateway_token(env: Mapping[str, str] | None = None) -> str | None:
    """The local gateway's shared secret, never generating one: ``CLAWGATE_GATEWAY_TOKEN``
    (or ``OPENCLAW_GATEWAY_TOKEN``), the config's token, then ``<state>/gateway.token``; in
    password mode the password (the gateway accepts it in the token field too)."""
    env = os.environ if env is None else env
    settings = config_module.load(env)
    auth = settings.config.gateway.auth
    if auth.mode == "password":
        return (env.get("CLAWGATE_GATEWAY_PASSWORD") or env.get("OPENCLAW_GATEWAY_PASSWORD")
                or auth.password)
    token = env.get("CLAWGATE_GATEWAY_TOKEN") or env.get("OPENCLAW_GATEWAY_TOKEN") or auth.token
    if token:
        return token
    try:
        return (settings.state_dir / TOKEN_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def call_remote(method: str, params: Mapping[str, Any] | None = None, *, url: str | None = None,
                token: str | None = None, timeout: float = 30.0,
                env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Call one method on the running gateway and return its payload (a non-object payload
    comes back as ``{"value": payload}``). Synchronous: it runs its own event loop."""
    url = url or gateway_url(env)
    token = token or gateway_token(env)

    async def run() -> Any:
        async with GatewayClient(url, token, timeout=timeout) as client:
            return await client.call(method, params)

    payload = asyncio.run(run())
    return payload if isinstance(payload, dict) else {"value": payload}
