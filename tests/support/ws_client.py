"""WebSocket helpers for control-plane tests, on top of ``tests.support.gateway_server``.

``WsClient`` speaks the protocol frame by frame through the ``websockets`` package (so tests
see exactly what a client sees); ``open_client`` opens one and completes the handshake.
``Device`` is an Ed25519 device identity that signs the connect payload like OpenClaw clients
do; ``write_demo_plugin`` writes a plugin folder registering ``demo.*`` RPC methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from clawgate.gateway.protocol import b64url
from tests.support.gateway_server import TOKEN, GatewayServer

READ_WRITE = ["operator.read", "operator.write"]


def connect_params(*, token: str | None = TOKEN, scopes: list[str] | None = None,
                   min_protocol: int = 3, max_protocol: int = 4, client_id: str = "test",
                   mode: str = "test", **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "minProtocol": min_protocol, "maxProtocol": max_protocol,
        "client": {"id": client_id, "version": "1.0.0", "platform": "linux", "mode": mode},
        "role": "operator", **extra,
    }
    if token is not None:
        params["auth"] = {"token": token}
    if scopes is not None:
        params["scopes"] = scopes
    return params


class WsClient:
    """One raw protocol connection; frames that are not the awaited one are kept in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []  # every event frame received, in order
        self.responses: list[dict[str, Any]] = []  # res frames not yet claimed
        self.hello: dict[str, Any] = {}

    @classmethod
    async def open(cls, server: GatewayServer, **options: Any) -> WsClient:
        ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/", max_size=None,
                                      close_timeout=1, **options)
        return cls(ws)

    async def send(self, frame: Any) -> None:
        text = frame if isinstance(frame, str | bytes) else orjson.dumps(frame).decode()
        await self.ws.send(text)

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(await asyncio.wait_for(self.ws.recv(), within))
        if frame.get("type") == "event":
            self.events.append(frame)
        return frame

    async def challenge(self) -> dict[str, Any]:
        frame = await self.recv()
        assert frame["type"] == "event" and frame["event"] == "connect.challenge", frame
        return dict(frame["payload"])

    async def connect(self, params: dict[str, Any], req_id: str = "c1") -> dict[str, Any]:
        await self.send({"type": "req", "id": req_id, "method": "connect", "params": params})
        res = await self.response(req_id)
        if res["ok"]:
            self.hello = res["payload"]
        return res

    async def request(self, method: str, params: Any = None) -> str:
        req_id = uuid.uuid4().hex
        frame: dict[str, Any] = {"type": "req", "id": req_id, "method": method}
        if params is not None:
            frame["params"] = params
        await self.send(frame)
        return req_id

    async def response(self, req_id: str, within: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            for res in self.responses:
                if res["id"] == req_id:
                    self.responses.remove(res)
                    return res
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame.get("type") == "res":
                self.responses.append(frame)

    async def call(self, method: str, params: Any = None, within: float = 5.0) -> dict[str, Any]:
        return await self.response(await self.request(method, params), within)

    async def ok(self, method: str, params: Any = None, within: float = 5.0) -> Any:
        res = await self.call(method, params, within)
        assert res["ok"], res
        return res["payload"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        res = await self.call(method, params)
        assert not res["ok"], res
        return dict(res["error"])

    async def event(self, name: str, where: Callable[[Any], bool] = lambda _p: True,
                    within: float = 5.0, start: int = 0) -> dict[str, Any]:
        """The first event ``name`` (from index ``start`` of ``events``) whose payload passes
        ``where``, reading more frames until it arrives."""
        deadline = time.monotonic() + within
        seen = start
        while True:
            for frame in self.events[seen:]:
                if frame["event"] == name and where(frame.get("payload")):
                    return frame
            seen = len(self.events)
            frame = await self.recv(max(0.01, deadline - time.monotonic()))
            if frame.get("type") == "res":
                self.responses.append(frame)

    async def closed(self, within: float = 5.0) -> tuple[int | None, str]:
        """Read until the server closes; its close code and reason."""
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(within):
                while True:
                    await self.ws.recv()
        return self.ws.close_code, self.ws.close_reason or ""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2)


@contextlib.asynccontextmanager
async def open_client(server: GatewayServer, **params: Any) -> AsyncIterator[WsClient]:
    """A client past the handshake (``params`` go to :func:`connect_params`)."""
    client = await WsClient.open(server)
    try:
        await client.challenge()
        res = await client.connect(connect_params(**params))
        assert res["ok"], res
        yield client
    finally:
        await client.close()


class Device:
    """An Ed25519 device identity signing connect payloads (v2 or v3)."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = b64url(raw)
        self.id = hashlib.sha256(raw).hexdigest()

    def block(self, params: dict[str, Any], nonce: str, *, version: str = "v2",
              signed_at: int | None = None) -> dict[str, Any]:
        signed_at = int(time.time() * 1000) if signed_at is None else signed_at
        client = params["client"]
        fields = [version, self.id, client["id"], client["mode"], params.get("role", "operator"),
                  ",".join(params.get("scopes") or []), str(signed_at),
                  (params.get("auth") or {}).get("token", ""), nonce]
        if version == "v3":
            fields += [client["platform"].lower(), (client.get("deviceFamily") or "").lower()]
        signature = self.key.sign("|".join(fields).encode())
        return {"id": self.id, "publicKey": self.public_key, "signature": b64url(signature),
                "signedAt": signed_at, "nonce": nonce}


DEMO_PLUGIN = """
import secrets


def register(api):
    api.register_method("demo.echo", lambda params, context: {"echo": params,
                        "client": context.client_id}, scope="operator.read")
    api.register_method("demo.admin", lambda params, context: {"admin": True},
                        scope="operator.admin")

    async def flood(params, context):
        blob = secrets.token_hex(int(params.get("size", 1024)) // 2)  # incompressible
        count = int(params.get("count", 1))
        for i in range(count):
            context.broadcast("demo.flood", {"i": i, "blob": blob})
        return {"sent": count}

    api.register_method("demo.flood", flood, scope="operator.read")
"""


def write_demo_plugin(parent: Path) -> Path:
    """A plugin folder ``parent/demo`` registering ``demo.echo`` (operator.read),
    ``demo.admin`` (operator.admin) and ``demo.flood`` (broadcasts ``count`` events)."""
    root = parent / "demo"
    root.mkdir(parents=True, exist_ok=True)
    (root / "clawgate.plugin.json").write_text(orjson.dumps(
        {"id": "demo", "configSchema": {"type": "object"}, "entry": "plugin:register"}).decode())
    (root / "plugin.py").write_text(textwrap.dedent(DEMO_PLUGIN))
    return root
