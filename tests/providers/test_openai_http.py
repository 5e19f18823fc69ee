"""The OpenAI plugin's HTTP client on the wire: proxies from the environment, long and
CRLF-ended SSE lines, connection reuse — against real loopback servers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clawgate.providers.base import ModelRequest, TextDelta
from tests.support.bundled import module
from tests.support.mock_openai import MockOpenAI, Reply

OpenAIProvider = module("openai", "provider").OpenAIProvider

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def request(text: str = "hi") -> ModelRequest:
    return ModelRequest("mock-model", ({"role": "user", "content": text},))


async def text(provider: Any, text: str = "hi") -> str:
    return "".join([e.text async for e in provider.stream(request(text))
                    if isinstance(e, TextDelta)])


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[Any]:
    p = OpenAIProvider(base_url=url, api_key="sk-test", max_retries=0)
    try:
        yield p
    finally:
        await p.aclose()


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1: it records each request line (absolute-form
    URL) and relays the exchange to the target over a connection of its own."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.auth: list[str | None] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ForwardProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, *fields = head.decode().split("\r\n")
                method, target, version = first.split(" ")
                self.lines.append(f"{method} {target}")
                headers = {k.lower(): v for k, _, v in (f.partition(": ") for f in fields if f)}
                self.auth.append(headers.get("proxy-authorization"))
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                host_port, _, path = target.removeprefix("http://").partition("/")
                host, _, port = host_port.partition(":")
                up_reader, upstream = await asyncio.open_connection(host, int(port))
                kept = [f for f in fields if f and not f.lower().startswith("proxy-")]
                upstream.write(f"{method} /{path} {version}\r\n".encode()
                               + "\r\n".join([*kept, "connection: close"]).encode()
                               + b"\r\n\r\n" + body)
                writer.write(await up_reader.read())  # the whole answer, then the next request
                await writer.drain()
                upstream.close()
                writer.close()
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def test_requests_go_through_the_proxy_the_environment_names(monkeypatch) -> None:
    with MockOpenAI() as server:
        async with ForwardProxy() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://u:p%40ss@"))
            async with opened(server.url) as p:
                assert await text(p, "via the proxy") == "via the proxy"
            assert proxy.lines == [f"POST {server.url}/chat/completions"]
            # Credentials in the proxy URL become Proxy-Authorization (u:p@ss), not part of
            # the request to the provider.
            assert proxy.auth == ["Basic dTpwQHNz"]
            assert "proxy-authorization" not in server.requests[0].headers


async def test_no_proxy_exempts_the_provider_host(monkeypatch) -> None:
    with MockOpenAI() as server:
        async with ForwardProxy() as proxy:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
            async with opened(server.url) as p:
                assert await text(p, "direct") == "direct"
            assert proxy.lines == []


async def test_an_event_longer_than_a_read_buffer_arrives_whole() -> None:
    long = "x" * 300_000  # one SSE line of ~300 KB (aiohttp's line reader stops at 64 KiB)
    with MockOpenAI() as server:
        server.plan(Reply(long, chunks=1))
        async with opened(server.url) as p:
            assert await text(p) == long


async def raw_server(answer: bytes) -> asyncio.Server:
    """A server that reads one request and writes ``answer`` in small pieces."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        for start in range(0, len(answer), 7):  # lines split across reads
            writer.write(answer[start:start + 7])
            await writer.drain()
            await asyncio.sleep(0)
        writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_crlf_and_cr_ended_event_lines_are_read() -> None:
    events = [b'data: {"choices":[{"index":0,"delta":{"content":"h\xc3\xa9"}}]}',
              b'data: {"choices":[{"index":0,"delta":{"content":"llo"}}]}',
              b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
              b"data: [DONE]"]
    body = b"\r\n\r\n".join(events[:2]) + b"\r\r" + b"\r\n\r\n".join(events[2:]) + b"\r\n\r\n"
    answer = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
              b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
              + body)
    server = await raw_server(answer)
    try:
        port = server.sockets[0].getsockname()[1]
        async with opened(f"http://127.0.0.1:{port}/v1") as p:
            assert await text(p) == "héllo"
    finally:
        server.close()
        await server.wait_closed()


async def test_consecutive_calls_reuse_one_connection() -> None:
    with MockOpenAI() as server:
        async with opened(server.url) as p:
            for n in range(5):
                assert await text(p, f"call {n}") == f"call {n}"
        assert len(server.requests) == 5
        assert len({r.peer for r in server.requests}) == 1, "one keep-alive connection"
