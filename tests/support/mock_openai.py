"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, with scriptable behaviour.

The server runs uvicorn + Starlette in a background thread (its own event loop), so sync and
async tests alike can talk to it over loopback, and its pacing never depends on the test's loop.

Usage::

    with MockOpenAI() as server:                     # or: async with MockOpenAI() as server
        server.plan(Fail(429, retry_after=0.05), Reply("Hello", chunks=3))
        provider = OpenAIProvider(base_url=server.url, api_key="k")
        ...
        assert len(server.requests) == 2
        assert server.requests[0].body["stream"] is True

Each ``POST /v1/chat/completions`` consumes the next planned step (``Reply``, ``CallTools`` or
``Fail``); with none planned it echoes the last user message. Steps stream as SSE when the
request says ``stream: true`` and otherwise answer with one JSON completion. ``GET /v1/models``
lists ``models``. Pytest fixtures: ``mock_openai`` (one server) and ``mock_openai_factory``
(``factory(**kwargs) -> MockOpenAI``), enabled with ``pytest_plugins =
["tests.support.mock_openai"]``; both stop every server they started.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.support.poll import until

__all__ = [
    "CallTools",
    "Fail",
    "MockOpenAI",
    "MockUsage",
    "RecordedRequest",
    "Reply",
    "Step",
    "call_tool",
    "mock_openai",
    "mock_openai_factory",
    "stall",
]


@dataclass(frozen=True, slots=True)
class MockUsage:
    """The ``usage`` object to report (computed from the texts when a step leaves it None)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer with ``text`` split into ``chunks`` content deltas.

    ``delay`` is waited before the response starts, ``interval`` between chunks;
    ``drop_after=k`` sends k content chunks and then drops the connection mid-body.
    """

    text: str = ""
    chunks: int = 1
    interval: float = 0.0
    delay: float = 0.0
    finish_reason: str = "stop"
    usage: MockUsage | None = None
    drop_after: int | None = None


@dataclass(frozen=True, slots=True)
class CallTools:
    """Call tools: ``calls`` are ``(name, json_arguments)`` pairs, ids ``call_mock_<i>``.

    Each call's arguments stream in ``fragments`` pieces, as real servers do.
    """

    calls: tuple[tuple[str, str], ...]
    text: str = ""
    fragments: int = 3
    delay: float = 0.0
    usage: MockUsage | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with HTTP ``status`` and an OpenAI-style error body (plus ``Retry-After``)."""

    status: int
    message: str = "mock failure"
    code: str | None = None
    retry_after: float | None = None
    delay: float = 0.0


Step = Reply | CallTools | Fail


def call_tool(name: str, arguments: str = "{}", **options: Any) -> CallTools:
    """A step calling one tool (``options`` as for :class:`CallTools`)."""
    return CallTools(((name, arguments),), **options)


def stall(seconds: float) -> Reply:
    """A step that sends nothing for ``seconds``, then an empty answer."""
    return Reply("", delay=seconds)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received: lower-cased headers, the parsed JSON body and the
    client's address (its port tells connections apart)."""

    method: str
    path: str
    headers: dict[str, str] = field(hash=False)
    body: Any = field(hash=False)
    peer: tuple[str, int] | None = field(default=None, hash=False)


class _Server(uvicorn.Server):
    """uvicorn that signals (across threads) once it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class MockOpenAI:
    """The scriptable server; start it with ``with``/``async with`` or ``start()``/``stop()``."""

    def __init__(
        self,
        *,
        models: tuple[str, ...] = ("mock-model",),
        api_key: str | None = None,
        latency: float = 0.0,
    ) -> None:
        """``api_key`` makes requests without that Bearer token fail with 401; ``latency`` is
        added before every chat response."""
        self.models = models
        self.api_key = api_key
        self.latency = latency
        self._lock = threading.Lock()
        self._steps: deque[Step] = deque()
        self._requests: list[RecordedRequest] = []
        self._disconnects = 0
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._crash: BaseException | None = None

    # -- scripting and inspection (thread-safe) --------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give a provider, e.g. ``http://127.0.0.1:54321/v1``."""
        if self._sock is None:
            raise RuntimeError("the mock server is not started")
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def plan(self, *steps: Step) -> None:
        """Queue steps; each chat request consumes the oldest one."""
        with self._lock:
            self._steps.extend(steps)

    @property
    def pending(self) -> int:
        """How many planned steps no request has consumed yet."""
        with self._lock:
            return len(self._steps)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def disconnects(self) -> int:
        """How many responses the client abandoned (closed the connection) before their end."""
        with self._lock:
            return self._disconnects

    async def until(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        """Wait until ``condition()`` holds, polling; raise ``TimeoutError`` after ``within`` s."""
        await until(condition, within)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Bind a free port on 127.0.0.1 and serve until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the mock server is already started")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # No Nagle: a keep-alive client would otherwise wait ~40 ms (delayed ACK) per request.
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        config = uvicorn.Config(
            self._app(),
            log_config=None,  # leave the process's logging configuration alone
            log_level=None,
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._run, name="mock-openai", daemon=True)
        self._thread.start()
        # The server thread sets ``ready`` once it listens, or when it fails to start.
        if not self._server.ready.wait(10):
            raise RuntimeError("the mock server did not start within 10 s")
        if self._crash is not None or not self._server.started:
            raise RuntimeError(f"the mock server failed to start: {self._crash!r}")

    def stop(self) -> None:
        """Stop serving, cut short any stalled response, and wait for the thread to end."""
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

    def __enter__(self) -> MockOpenAI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> MockOpenAI:
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
            self._server.ready.set()  # never leave start() waiting on a server that died

    async def _serve(self) -> None:
        assert self._server is not None and self._sock is not None
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await self._server.serve(sockets=[self._sock])

    # -- the HTTP app (runs on the server thread) -------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    def _record(self, request: Request, body: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            peer = (request.client.host, request.client.port) if request.client else None
            self._requests.append(RecordedRequest(request.method, request.url.path, headers, body,
                                                  peer))

    def _unauthorized(self, request: Request) -> Response | None:
        if self.api_key is None:
            return None
        if request.headers.get("authorization") == f"Bearer {self.api_key}":
            return None
        error = {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
        return JSONResponse({"error": error}, status_code=401)

    async def _models(self, request: Request) -> Response:
        self._record(request, None)
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        data = [{"id": m, "object": "model", "owned_by": "mock"} for m in self.models]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._record(request, raw.decode("utf-8", "replace"))
            return JSONResponse({"error": {"message": "body is not JSON"}}, status_code=400)
        self._record(request, body)
        denied = self._unauthorized(request)
        if denied is not None:
            return denied
        with self._lock:
            step = self._steps.popleft() if self._steps else Reply(_last_user_text(body))
        return _Scripted(self, step, body)

    async def _pause(self, seconds: float) -> None:
        # A pause ends early when the server stops, so a stalled test never delays teardown.
        if seconds > 0 and self._stopping is not None:
            with anyio.move_on_after(seconds):
                await self._stopping.wait()

    def _note_disconnect(self) -> None:
        with self._lock:
            self._disconnects += 1


class _Scripted:
    """The ASGI response for one step: it paces, streams, drops and notices disconnects."""

    def __init__(self, server: MockOpenAI, step: Step, body: dict[str, Any]) -> None:
        self.server = server
        self.step = step
        self.body = body
        self.model = str(body.get("model", "mock-model"))
        # Set once the whole answer is out: uvicorn reports "disconnect" after any complete
        # response too, and only an abandoned answer should count.
        self.sent = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def watch() -> None:
                # The request body is consumed, so the next message can only be a disconnect.
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not self.sent:
                    self.server._note_disconnect()
                group.cancel_scope.cancel()

            group.start_soon(watch)
            await self._respond(send)
            group.cancel_scope.cancel()

    async def _respond(self, send: Send) -> None:
        step = self.step
        await self.server._pause(self.server.latency + step.delay)
        if isinstance(step, Fail):
            headers = {"retry-after": f"{step.retry_after:g}"} if step.retry_after else {}
            error = {"message": step.message, "type": "mock_error", "code": step.code}
            self.sent = True
            await _send_whole(send, step.status, orjson.dumps({"error": error}), headers)
            return
        if not self.body.get("stream"):
            self.sent = True
            await _send_whole(send, 200, orjson.dumps(self._completion()), {})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for index, event in enumerate(self._events()):
            if index and isinstance(step, Reply):
                await self.server._pause(step.interval)
            if event is None:
                return  # drop: uvicorn closes the connection when a body is left unfinished
            await send({"type": "http.response.body", "body": event, "more_body": True})
        self.sent = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _events(self) -> Iterator[bytes | None]:
        step = self.step
        assert not isinstance(step, Fail)
        yield self._chunk({"role": "assistant", "content": ""})
        if isinstance(step, Reply):
            for number, piece in enumerate(_split(step.text, step.chunks)):
                if step.drop_after is not None and number >= step.drop_after:
                    yield None
                    return
                yield self._chunk({"content": piece})
            reason, text = step.finish_reason, step.text
        else:
            if step.text:
                yield self._chunk({"content": step.text})
            for index, (name, arguments) in enumerate(step.calls):
                head = {
                    "index": index,
                    "id": f"call_mock_{index}",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                yield self._chunk({"tool_calls": [head]})
                for piece in _split(arguments, step.fragments):
                    yield self._chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                    )
            reason, text = "tool_calls", step.text + "".join(a for _, a in step.calls)
        yield self._chunk({}, reason)
        if (self.body.get("stream_options") or {}).get("include_usage"):
            usage = self._usage(text)
            yield _sse(
                {
                    "id": "chatcmpl-mock",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": self.model,
                    "choices": [],
                    "usage": usage,
                }
            )
        yield b"data: [DONE]\n\n"

    def _completion(self) -> dict[str, Any]:
        step = self.step
        message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
        if isinstance(step, CallTools):
            message["tool_calls"] = [
                {
                    "id": f"call_mock_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                for i, (name, arguments) in enumerate(step.calls)
            ]
            reason = "tool_calls"
        else:
            assert isinstance(step, Reply)
            reason = step.finish_reason
        return {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": 0,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reason}],
            "usage": self._usage(step.text),
        }

    def _usage(self, text: str) -> dict[str, Any]:
        step = self.step
        assert not isinstance(step, Fail)
        given = step.usage or MockUsage(
            prompt_tokens=max(1, len(orjson.dumps(self.body.get("messages", []))) // 4),
            completion_tokens=max(1, len(text) // 4),
        )
        usage: dict[str, Any] = {
            "prompt_tokens": given.prompt_tokens,
            "completion_tokens": given.completion_tokens,
            "total_tokens": given.prompt_tokens + given.completion_tokens,
        }
        if given.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": given.cached_tokens}
        return usage

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return _sse(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": self.model,
                "choices": [choice],
            }
        )


async def _send_whole(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _split(text: str, parts: int) -> list[str]:
    """``text`` cut into at most ``parts`` non-empty pieces of near-equal size."""
    if not text:
        return []
    size = -(-len(text) // max(1, parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


@pytest.fixture
def mock_openai() -> Iterator[MockOpenAI]:
    """A started mock server, stopped after the test."""
    with MockOpenAI() as server:
        yield server


@pytest.fixture
def mock_openai_factory() -> Iterator[Callable[..., MockOpenAI]]:
    """A factory ``(**MockOpenAI kwargs) -> started server``; every server stops after the test."""
    started: list[MockOpenAI] = []

    def factory(**options: Any) -> MockOpenAI:
        server = MockOpenAI(**options)
        server.start()
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()
