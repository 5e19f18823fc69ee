"""A scriptable HTTP fake on 127.0.0.1, run by uvicorn in a background thread.

The base of the provider fakes (mock_anthropic, mock_responses): a fake subclasses
:class:`LoopbackServer`, lists its routes and answers each request with an ASGI callable
(:class:`Streamed` for SSE bodies). The server thread has its own event loop, so sync and async
tests can use a fake and its pacing never depends on the test's loop. Thread-safe: ``plan``,
``requests``, ``pending`` and ``disconnects``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.support.poll import until

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received: lower-cased headers and the parsed JSON body."""

    method: str
    path: str
    headers: dict[str, str] = field(hash=False)
    body: Any = field(hash=False)


class _Server(uvicorn.Server):
    """uvicorn that signals (across threads) once it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class LoopbackServer(Generic[S]):
    """Start with ``with``/``async with`` or ``start()``/``stop()``; ``plan`` queues steps."""

    name = "loopback"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: deque[S] = deque()
        self._requests: list[RecordedRequest] = []
        self._disconnects = 0
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._crash: BaseException | None = None

    # -- what a fake provides ---------------------------------------------------------------

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def app(self) -> ASGIApp:
        """The ASGI app served (a subclass may wrap it, e.g. to time requests)."""
        return Starlette(routes=self.routes())

    # -- scripting and inspection -----------------------------------------------------------

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:<port>``."""
        if self._sock is None:
            raise RuntimeError(f"the {self.name} fake is not started")
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def plan(self, *steps: S) -> None:
        """Queue steps; each request consumes the oldest one."""
        with self._lock:
            self._steps.extend(steps)

    def next_step(self) -> S | None:
        with self._lock:
            return self._steps.popleft() if self._steps else None

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._steps)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def disconnects(self) -> int:
        """How many streamed answers the client abandoned before their end."""
        with self._lock:
            return self._disconnects

    async def until(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        await until(condition, within)

    def record(self, request: Request, body: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self._requests.append(RecordedRequest(request.method, request.url.path, headers,
                                                  body))

    def note_disconnect(self) -> None:
        with self._lock:
            self._disconnects += 1

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, cut short when the server stops."""
        if seconds > 0 and self._stopping is not None:
            with anyio.move_on_after(seconds):
                await self._stopping.wait()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"the {self.name} fake is already started")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # No Nagle: a keep-alive client would otherwise wait ~40 ms (delayed ACK) per request.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        config = uvicorn.Config(self.app(), log_config=None,
                                log_level=None, access_log=False, lifespan="off", ws="none",
                                timeout_graceful_shutdown=1)
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._run, name=f"fake-{self.name}",
                                        daemon=True)
        self._thread.start()
        if not self._server.ready.wait(10):
            raise RuntimeError(f"the {self.name} fake did not start within 10 s")
        if self._crash is not None or not self._server.started:
            raise RuntimeError(f"the {self.name} fake failed to start: {self._crash!r}")

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        if self._loop is not None and self._stopping is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # the loop has already closed
        thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = None

    def __enter__(self: Any) -> Any:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self: Any) -> Any:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self) -> None:
        assert self._server is not None
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(); a thread has nowhere else to raise
            self._crash = exc
        finally:
            self._server.ready.set()

    async def _serve(self) -> None:
        assert self._server is not None and self._sock is not None
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await self._server.serve(sockets=[self._sock])


Chunks = Callable[[], AsyncIterator[bytes | None]]


class Streamed:
    """An SSE response: sends what ``chunks()`` yields (``None`` drops the connection), and
    counts an abandoned answer as a disconnect."""

    def __init__(self, server: LoopbackServer[Any], chunks: Chunks,
                 headers: dict[str, str] | None = None) -> None:
        self.server = server
        self.chunks = chunks
        self.headers = headers or {}
        self.sent = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                # The request body is consumed, so the next message can only be a disconnect.
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not self.sent:
                    self.server.note_disconnect()
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await self._respond(send)
            group.cancel_scope.cancel()

    async def _respond(self, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        headers += [(k.encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for chunk in self.chunks():
            if chunk is None:
                return  # drop: uvicorn closes the connection when a body is left unfinished
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        self.sent = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One SSE event with an ``event:`` line (both fakes' APIs name their events)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def split(text: str, parts: int) -> list[str]:
    """``text`` cut into at most ``parts`` non-empty pieces of near-equal size."""
    if not text:
        return []
    size = -(-len(text) // max(1, parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def tokens(value: Any) -> int:
    """A stand-in token count: JSON length / 4 (at least 1)."""
    return max(1, len(orjson.dumps(value)) // 4)


def factory_fixture(cls: Callable[..., LoopbackServer[Any]]) -> Callable[..., Any]:
    """A pytest fixture ``(**kwargs) -> started fake``; every fake stops after the test."""

    @pytest.fixture
    def fixture() -> Iterator[Callable[..., Any]]:
        started: list[LoopbackServer[Any]] = []

        def make(**options: Any) -> Any:
            server = cls(**options)
            server.start()
            started.append(server)
            return server

        yield make
        for server in reversed(started):
            server.stop()

    return fixture
