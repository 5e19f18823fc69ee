"""The base of every platform fake: a Starlette app served by uvicorn on 127.0.0.1, port 0, in
the test's own event loop, with the facilities every fake shares.

- ``async with SomeFake() as fake:`` starts the server and always stops it; ``fake.url`` and
  ``fake.port`` say where it listens.
- Every request (and every WebSocket frame a client sends) is recorded as a :class:`Call`
  (platform method name, HTTP method, path, parsed body, headers, time) in a bounded deque;
  ``await fake.wait_for("sendMessage")`` waits for a matching call with a deadline, woken by each
  new call (no sleeping); ``fake.calls_of(name)`` and ``fake.counts`` read them back.
- ``fake.fail(match, Fault(...), times=n)`` scripts the next ``n`` matching calls to fail: a
  status (5xx), a rate limit with the platform's hint, a hang until a deadline (so the client
  times out), or a platform error body. Each platform renders the fault in its own shape
  (:meth:`FakeServer.fault_response`).
- ``fake.spawn(coro)`` runs a background job (webhook delivery, event pushing) owned by the fake:
  it is cancelled and awaited when the fake stops, and a job that crashed fails the ``async with``.
- ``fake.reset()`` forgets calls, faults and counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

__all__ = ["Call", "Fault", "FakeServer", "Upload", "json_response", "parse_body", "remember"]

_log = logging.getLogger(__name__)

MAX_CALLS = 100_000
MAX_ENTRIES = 10_000  # files, attachments, tickets... kept per fake
POLL_S = 0.005  # how often wait_until re-checks a condition nothing told it about

FaultKind = Literal["status", "rate_limit", "hang", "error"]


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart request."""

    name: str
    filename: str | None
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Call:
    """One thing a client sent: an HTTP request or a WebSocket frame.

    ``name`` is the platform's name for it (``sendMessage``, ``chat.postMessage``,
    ``POST /channels/{channel_id}/messages``, ``gateway:IDENTIFY``...), ``body`` the parsed body
    (JSON value, or a dict of form fields where file parts are :class:`Upload`), ``at`` the
    ``time.monotonic()`` of arrival and ``raw`` the body's bytes (for signature checks).
    """

    seq: int
    name: str
    method: str
    path: str
    body: Any
    headers: Mapping[str, str]
    query: Mapping[str, str]
    at: float
    raw: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted failure; which fields matter depends on ``kind``.

    - ``status``: answer HTTP ``status`` (5xx by default) with the platform's error body.
    - ``rate_limit``: the platform's 429 with ``retry_after`` seconds as its hint.
    - ``hang``: answer nothing for ``seconds`` (or until the fake stops), then a 504, so a
      client with a shorter timeout times out.
    - ``error``: the platform's error body for ``code`` / ``message`` (HTTP ``status`` where the
      platform uses one; Slack answers 200).
    """

    kind: FaultKind
    status: int = 500
    retry_after: float = 1.0
    seconds: float = 30.0
    code: int | str | None = None
    message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Script:
    match: Callable[[Call], bool]
    fault: Fault
    remaining: int


Match = str | Callable[[Call], bool]


def _matcher(match: Match) -> Callable[[Call], bool]:
    if isinstance(match, str):
        return lambda call: call.name == match
    return match


def remember(store: OrderedDict[Any, Any], key: Any, value: Any,
             limit: int = MAX_ENTRIES) -> None:
    """``store[key] = value``, dropping the oldest entries beyond ``limit`` (every map a fake
    fills from traffic is bounded)."""
    store[key] = value
    while len(store) > limit:
        store.popitem(last=False)


def json_response(payload: Any, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson (fast, and exact about floats and unicode)."""
    return Response(orjson.dumps(payload), status_code=status, headers=dict(headers or {}),
                    media_type="application/json")


def parse_body(content_type: str, raw: bytes) -> Any:
    """Parse a request body by its content type: JSON, form-urlencoded or multipart form data
    (file parts become :class:`Upload`); anything else stays bytes (``None`` when empty)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not raw:
        return None
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if kind == "multipart/form-data":
        return _multipart(content_type, raw)
    return raw


def _multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    # The stdlib MIME parser handles multipart/form-data; it saves a python-multipart dependency.
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    fields: dict[str, Any] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if filename is None and "content-type" not in part:
            fields[name] = data.decode("utf-8", "replace")  # a plain form field
        else:
            fields[name] = Upload(name, filename, part.get_content_type(), data)
    return fields


class _Uvicorn(uvicorn.Server):
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


class FakeServer:
    """Base of the platform fakes; subclasses provide :meth:`routes` and
    :meth:`fault_response`, and record calls with :meth:`record` / :meth:`admit`."""

    def __init__(self, *, max_calls: int = MAX_CALLS) -> None:
        self.calls: deque[Call] = deque(maxlen=max_calls)
        self.counts: Counter[str] = Counter()
        self.port = 0
        self.url = ""
        self._seq = 0
        self._scripts: list[_Script] = []
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._crashes: list[BaseException] = []
        self._server: _Uvicorn | None = None
        self._serve: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self.app = Starlette(routes=self.routes())

    # -- what subclasses provide -------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """The Starlette routes of the platform's API."""
        raise NotImplementedError

    def fault_response(self, fault: Fault, call: Call) -> Response:
        """Render a scripted fault in the platform's shape."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>``."""
        return "ws" + self.url[len("http"):]

    @property
    def closing(self) -> bool:
        """True once the fake has begun to stop (long polls and hangs answer then)."""
        return self._closing.is_set()

    async def start(self) -> None:
        """Listen on a free loopback port and serve until :meth:`stop`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, lifespan="off", log_config=None, log_level="warning",
                                access_log=False, ws_per_message_deflate=False,
                                timeout_graceful_shutdown=3, timeout_keep_alive=30)
        self._server = _Uvicorn(config)
        self._serve = asyncio.create_task(self._server.serve(sockets=[sock]),
                                          name=f"{type(self).__name__}-serve")
        listening = asyncio.create_task(self._server.listening.wait())
        try:
            await asyncio.wait((self._serve, listening), timeout=10,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            listening.cancel()
        if not self._server.listening.is_set():
            await self.stop()
            raise RuntimeError(f"{type(self).__name__} did not start listening")

    async def stop(self) -> None:
        """Release hangs and long polls, stop background jobs and the server."""
        self._closing.set()
        self._wake()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.on_stop()
        if self._server is not None and self._serve is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._serve, 10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._serve = self._sock = None
        if self._crashes:
            raise RuntimeError(f"a background job of {type(self).__name__} crashed") \
                from self._crashes[0]

    async def on_stop(self) -> None:
        """Hook for subclasses: close WebSockets etc. before the server shuts down."""

    def abort(self, client: tuple[str, int] | None) -> bool:
        """Drop the TCP connection of peer ``client`` (``websocket.client``) abruptly, with no
        close frame, as a network failure would. True if such a connection was found."""
        if self._server is None or client is None:
            return False
        for connection in list(self._server.server_state.connections):
            if tuple(getattr(connection, "client", None) or ()) == tuple(client):
                connection.transport.abort()
                return True
        return False

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a background job owned by this fake (cancelled and awaited by
        :meth:`stop`; a crash is kept and re-raised there)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("background job %s crashed", task.get_name(), exc_info=task.exception())
            self._crashes.append(task.exception())  # type: ignore[arg-type]

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` or until the fake stops; True when it is stopping. For scripted hangs
        and retry back-off, never on the normal request path."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True

    # -- recording ---------------------------------------------------------------------------

    def record(self, name: str, *, method: str = "WS", path: str = "", body: Any = None,
               headers: Mapping[str, str] | None = None,
               query: Mapping[str, str] | None = None, raw: bytes = b"") -> Call:
        """Record one call and wake every waiter."""
        self._seq += 1
        call = Call(self._seq, name, method, path, body, dict(headers or {}), dict(query or {}),
                    time.monotonic(), raw)
        self.calls.append(call)
        self.counts[name] += 1
        self._wake()
        return call

    async def record_request(self, request: Request, name: str) -> Call:
        """Read, parse and record an HTTP request."""
        raw = await request.body()
        body = parse_body(request.headers.get("content-type", ""), raw)
        return self.record(name, method=request.method, path=request.url.path, body=body,
                           headers=request.headers, query=request.query_params, raw=raw)

    async def admit(self, request: Request, name: str) -> tuple[Call, Response | None]:
        """Record the request and apply a scripted fault: (call, the fault's response or None)."""
        call = await self.record_request(request, name)
        return call, await self.apply_fault(call)

    async def apply_fault(self, call: Call) -> Response | None:
        """The response of the first scripted fault that matches ``call`` (consuming one of its
        ``times``), or None."""
        fault = self.take_fault(call)
        if fault is None:
            return None
        if fault.kind == "hang":
            await self.pause(fault.seconds)
            return self.fault_response(Fault("status", status=504), call)
        return self.fault_response(fault, call)

    def take_fault(self, call: Call) -> Fault | None:
        """Consume and return the first scripted fault matching ``call``."""
        for script in self._scripts:
            if script.remaining > 0 and script.match(call):
                script.remaining -= 1
                if script.remaining == 0:
                    self._scripts.remove(script)
                return script.fault
        return None

    def _wake(self) -> None:
        # Swap the event so every current waiter wakes and later ones wait afresh.
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def changed(self) -> None:
        """Tell waiters that the fake's state changed (subclasses call it after mutations)."""
        self._wake()

    # -- reading back ------------------------------------------------------------------------

    def calls_of(self, match: Match) -> list[Call]:
        """Recorded calls with that name (or matching that predicate), oldest first."""
        test = _matcher(match)
        return [call for call in self.calls if test(call)]

    async def wait_for(self, match: Match, within: float = 5.0, *, after: int = 0) -> Call:
        """The first recorded call matching ``match`` with ``seq > after``; waits up to
        ``within`` seconds for one to arrive, then raises TimeoutError."""
        test = _matcher(match)
        deadline = time.monotonic() + within
        seen = after
        while True:
            changed = self._changed
            for call in self.calls:
                if call.seq > seen:
                    if test(call):
                        return call
            seen = self._seq
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                recent = ", ".join(c.name for c in list(self.calls)[-8:])
                raise TimeoutError(f"no call matching {match!r} within {within}s "
                                   f"(last calls: {recent or 'none'})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def wait_until(self, condition: Callable[[], Any], within: float = 5.0) -> None:
        """Wait until ``condition()`` is truthy, re-checking at once whenever a call arrives
        or the fake's state changes, and every few milliseconds anyway (the condition may watch
        a client's state); TimeoutError after ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            changed = self._changed
            if condition():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("condition not met before the deadline")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, POLL_S))

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the latest call (for ``wait_for(..., after=fake.last_seq)``)."""
        return self._seq

    # -- scripting ---------------------------------------------------------------------------

    def fail(self, match: Match, fault: Fault, times: int = 1) -> None:
        """Make the next ``times`` calls matching ``match`` fail with ``fault``."""
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        self._scripts.append(_Script(_matcher(match), fault, times))

    def fail_status(self, match: Match, status: int = 500, times: int = 1) -> None:
        """The next ``times`` matching calls answer HTTP ``status``."""
        self.fail(match, Fault("status", status=status), times)

    def rate_limit(self, match: Match, retry_after: float = 1.0, times: int = 1) -> None:
        """The next ``times`` matching calls answer the platform's 429 with ``retry_after``."""
        self.fail(match, Fault("rate_limit", status=429, retry_after=retry_after), times)

    def hang(self, match: Match, seconds: float = 30.0, times: int = 1) -> None:
        """The next ``times`` matching calls answer nothing for ``seconds``."""
        self.fail(match, Fault("hang", seconds=seconds), times)

    def error(self, match: Match, code: int | str, message: str = "", *, status: int = 400,
              times: int = 1, **extra: Any) -> None:
        """The next ``times`` matching calls answer the platform error ``code``/``message``."""
        self.fail(match, Fault("error", status=status, code=code, message=message, extra=extra),
                  times)

    @property
    def pending_faults(self) -> int:
        """How many scripted failures are still to happen."""
        return sum(script.remaining for script in self._scripts)

    def reset(self) -> None:
        """Forget recorded calls, scripted faults and counters (platform state stays)."""
        self.calls.clear()
        self.counts.clear()
        self._scripts.clear()
        self._wake()
