"""A real :class:`Gateway`, served in-process (``in_process``: httpx's ASGITransport inside the
gateway's lifespan, for request/response shape tests) or by uvicorn on 127.0.0.1
(``serve_gateway``: for streaming, WebSocket, process and load tests).

The server runs as a task of the test's own event loop, so a test can reach into the gateway
it talks to (``server.gateway.runtime.engine.store``...) without crossing threads. Usage::

    async with serve_gateway(tmp_path, {"plugins": {"entries": {"echo": {"config": {
            "chunk_chars": 4}}}}}) as server:
        async with server.client() as http:
            r = await http.post("/v1/chat/completions", json={...})

``serve_gateway`` stops the server (and with it the gateway's lifespan) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn

from clawgate.config import Settings, parse
from clawgate.gateway.app import Gateway
from tests.support.poll import until  # noqa: F401  (re-exported for tests)

TOKEN = "test-gateway-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class _Server(uvicorn.Server):
    """uvicorn that says when it listens, without capturing the test process's signals."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class GatewayServer:
    """One gateway on a free loopback port."""

    def __init__(self, gateway: Gateway, sock: socket.socket) -> None:
        self.gateway = gateway
        self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def client(self, *, token: str | None = TOKEN, **options: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10, **options)

    def openai(self, prefix: str = "/v1") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + prefix, api_key=TOKEN, max_retries=0,
                                  timeout=10)


def settings(state: Path, config: Mapping[str, Any] | None = None) -> Settings:
    """Settings with ``state`` as the state directory and ``config`` as the parsed TOML."""
    return Settings(config=parse(dict(config or {})), state_dir=state,
                    config_path=state / "clawgate.toml")


def echo(**options: Any) -> dict[str, Any]:
    """Config that sets the echo plugin's options (``delay_ms``, ``chunk_chars``)."""
    return {"plugins": {"entries": {"echo": {"config": options}}}}


@contextlib.asynccontextmanager
async def serve_gateway(state: Path, config: Mapping[str, Any] | None = None, *,
                        prepare: Callable[[Gateway], None] | None = None,
                        env: Mapping[str, str] | None = None,
                        ) -> AsyncIterator[GatewayServer]:
    """Build a Gateway over ``state`` (with ``env`` as its environment, the test token added)
    and serve it until the block ends."""
    gateway = Gateway(settings(state, config),
                      env={"CLAWGATE_GATEWAY_TOKEN": TOKEN, **(env or {})},
                      host="127.0.0.1", port=0, drain_deadline_s=5)
    if prepare is not None:
        prepare(gateway)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    # The gateway's own server knobs (proxy headers, read timeouts, WebSocket options).
    server = _Server(gateway.server_config(lifespan="on", log_config=None))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="gateway-under-test")
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait((task, listening), timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            raise RuntimeError("the gateway did not start (see the log for why)")
        yield GatewayServer(gateway, sock)
    finally:
        listening.cancel()
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of an SSE body."""
    events: list[tuple[str | None, str]] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
        events.append((name, "\n".join(data)))
    return events


class GatewayApp:
    """A gateway reached through ``httpx.ASGITransport``: the same app, lifespan and auth as
    over a socket, without one (responses are buffered, so not for mid-stream behaviour)."""

    url = "http://127.0.0.1:18789"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.gateway.app, client=("127.0.0.1", 40_000))

    def client(self, *, token: str | None = TOKEN, **options: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(options.pop("headers", {}))
        return httpx.AsyncClient(transport=self.transport(), base_url=self.url,
                                 headers=headers, timeout=10, **options)

    def openai(self, prefix: str = "/v1") -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + prefix, api_key=TOKEN, max_retries=0,
                                  timeout=10, http_client=httpx.AsyncClient(
                                      transport=self.transport(), timeout=10))


@contextlib.asynccontextmanager
async def in_process(state: Path, config: Mapping[str, Any] | None = None, *,
                     env: Mapping[str, str] | None = None) -> AsyncIterator[GatewayApp]:
    """A Gateway over ``state`` running its lifespan for the block, reached in-process."""
    gateway = Gateway(settings(state, config),
                      env={"CLAWGATE_GATEWAY_TOKEN": TOKEN, **(env or {})},
                      host="127.0.0.1", port=0, drain_deadline_s=5)
    async with gateway.lifespan():
        yield GatewayApp(gateway)
