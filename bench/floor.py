"""Floor benchmark: clawgate's `/v1/chat/completions` against the bare framework it runs on.

The floor is a minimal Starlette app under uvicorn (same event loop and HTTP parser as the
gateway, access log off) whose one POST route answers fixed OpenAI-shaped JSON, or 20 SSE
chunks when the body asks for a stream. The gateway runs as users run it (`clawgate gateway`,
embedded defaults, the echo provider: a new session per request, 20 chunks per stream). Both
are driven by the same load client: keep-alive HTTP/1.1 connections, pre-built requests, raw
socket reads (so the client's own cost is small and equal for both), at concurrency 1, 4, 16
and 64. Reported per pair: p50/p99 latency, requests/s, the server's CPU time per request (all
its threads, from /proc: steadier than latency on a shared machine), and the ratio to the
floor, with the load average seen. The server runs in a child process; the client in this one.
Then, on the gateway only, a turn on a session with history: 40 sessions (200 without
``--quick``) are filled with 25 turns each (50 messages), then one more turn on each is timed,
one at a time; its p50 against the new-session p50 at concurrency 1.

Prints one JSON document, then a `verdict:` line. `--quick` sends fewer requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import orjson

import common

CLAWGATE = str(Path(sys.executable).with_name("clawgate"))
CONCURRENCY = (1, 4, 16, 64)
CHUNKS = 20
CHUNK_CHARS = 4
HISTORY_TURNS = 25  # a session "with history" holds 50 messages when its turn is timed
PROMPT = "x" * (CHUNKS * CHUNK_CHARS)  # the echo provider streams it back in 20 chunks

FLOOR_APP = textwrap.dedent('''
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    ANSWER = orjson.dumps({
        "id": "chatcmpl-floor", "object": "chat.completion", "created": 0, "model": "floor",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "%(text)s"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    CHUNK = b"data: " + orjson.dumps({
        "id": "chatcmpl-floor", "object": "chat.completion.chunk", "created": 0,
        "model": "floor", "choices": [{"index": 0, "delta": {"content": "xxxx"},
                                       "finish_reason": None}]}) + b"\\n\\n"

    async def complete(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if body.get("stream"):
            async def chunks():
                for _ in range(%(chunks)d):
                    yield CHUNK
                yield b"data: [DONE]\\n\\n"
            return StreamingResponse(chunks(), media_type="text/event-stream")
        return Response(ANSWER, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", complete, methods=["POST"])])
''') % {"text": PROMPT, "chunks": CHUNKS}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_bytes(port: int, token: str | None, *, stream: bool,
                  user: str | None = None) -> bytes:
    """One completion request; ``user`` names a session (else each request starts one)."""
    fields: dict[str, Any] = {"model": "clawgate", "stream": stream,
                              "messages": [{"role": "user", "content": PROMPT}]}
    if user is not None:
        fields["user"] = user
    body = orjson.dumps(fields)
    head = ["POST /v1/chat/completions HTTP/1.1", f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response (Content-Length or chunked); return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status
    start = lower.find(b"content-length:")
    length = int(lower[start + 15:lower.find(b"\r\n", start)]) if start >= 0 else 0
    await reader.readexactly(length)
    return status


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(port: int, payload: bytes, *, concurrency: int, total: int,
               pid: int | None = None) -> dict[str, Any]:
    """``total`` requests over ``concurrency`` keep-alive connections; with ``pid``, also the
    server's CPU time per request (steadier than latency on a shared machine)."""
    samples: list[float] = []
    per_connection = max(1, total // concurrency)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for _ in range(per_connection):
                started = time.perf_counter()
                writer.write(payload)
                status = await read_response(reader)
                samples.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))  # warm the connections
    samples.clear()
    cpu = cpu_seconds(pid) if pid is not None else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    ms = [s * 1000 for s in samples]
    row = {"p50_ms": round(common.percentile(ms, 50), 3),
           "p99_ms": round(common.percentile(ms, 99), 3),
           "rps": round(len(samples) / wall, 1), "n": len(samples)}
    if pid is not None:
        row["cpu_ms_per_request"] = round((cpu_seconds(pid) - cpu) * 1000 / len(samples), 3)
    return row


async def existing_sessions(port: int, token: str, *, sessions: int) -> dict[str, Any]:
    """Fill ``sessions`` sessions with HISTORY_TURNS turns each (16 at a time), then time one
    more turn on each, one at a time: the p50 of a turn on a session with history."""
    gate = asyncio.Semaphore(16)

    async def fill(user: str) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                payload = request_bytes(port, token, stream=False, user=user)
                for _ in range(HISTORY_TURNS):
                    writer.write(payload)
                    if await read_response(reader) != 200:
                        raise RuntimeError(f"HTTP error filling {user}")
            finally:
                writer.close()

    users = [f"bench-history-{n}" for n in range(sessions)]
    await asyncio.gather(*(fill(u) for u in users))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.get_extra_info("socket").setsockopt(
        socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    samples: list[float] = []
    try:
        for user in users:
            payload = request_bytes(port, token, stream=False, user=user)
            started = time.perf_counter()
            writer.write(payload)
            if await read_response(reader) != 200:
                raise RuntimeError(f"HTTP error on {user}")
            samples.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    return {"p50_ms": round(common.percentile(samples, 50), 3),
            "p99_ms": round(common.percentile(samples, 99), 3), "n": len(samples),
            "messages_before": 2 * HISTORY_TURNS}


async def wait_ready(port: int, path: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status = await read_response(reader)
            writer.close()
            if status in (200, 405):
                return
        except (OSError, asyncio.IncompleteReadError):
            pass
        await asyncio.sleep(0.02)
    raise RuntimeError("the server did not become ready")


async def stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def serve_floor(workdir: Path) -> tuple[asyncio.subprocess.Process, int]:
    (workdir / "floor_app.py").write_text(FLOOR_APP)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(port), "--host",
        "127.0.0.1", "--no-access-log", "--log-level", "warning", cwd=workdir,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await wait_ready(port, "/v1/chat/completions", proc)
    return proc, port


async def serve_gateway(workdir: Path) -> tuple[asyncio.subprocess.Process, int, str]:
    state = workdir / "state"
    state.mkdir()
    (state / "clawgate.toml").write_text(
        f"[plugins.entries.echo.config]\nchunk_chars = {CHUNK_CHARS}\n")
    port = free_port()
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(state), "CLAWGATE_GATEWAY_PORT": str(port),
           "CLAWGATE_LOG_LEVEL": "WARNING"}
    env.pop("CLAWGATE_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        CLAWGATE, "gateway", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    await wait_ready(port, "/ready", proc)
    token = (state / "gateway.token").read_text().strip()
    return proc, port, token


async def measure(quick: bool) -> dict[str, Any]:
    total = 400 if quick else 2000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="clawgate-bench-floor-") as tmp:
        for name in ("floor", "gateway"):
            workdir = Path(tmp) / name
            workdir.mkdir()
            if name == "floor":
                proc, port = await serve_floor(workdir)
                token = None
            else:
                proc, port, token = await serve_gateway(workdir)
            try:
                rows: dict[str, Any] = {}
                for stream in (False, True):
                    payload = request_bytes(port, token, stream=stream)
                    for c in CONCURRENCY:
                        rows[f"{'stream' if stream else 'json'}@{c}"] = await load(
                            port, payload, concurrency=c, total=max(total, c * 8),
                            pid=proc.pid)
                if token is not None:
                    rows["json@1 existing"] = await existing_sessions(
                        port, token, sessions=40 if quick else 200)
                results[name] = rows
            finally:
                await stop(proc)
    ratios = {key: {"p50": round(results["gateway"][key]["p50_ms"]
                                 / results["floor"][key]["p50_ms"], 2),
                    "rps": round(results["gateway"][key]["rps"] / results["floor"][key]["rps"],
                                 3)}
              for key in results["floor"]}
    existing = results["gateway"]["json@1 existing"]["p50_ms"]
    ratios["existing vs new"] = {"p50": round(existing / results["gateway"]["json@1"]["p50_ms"],
                                              2)}
    return {**results, "ratio": ratios}


def budgets(m: dict[str, Any]) -> list[common.Budget]:
    r, g = m["ratio"], m["gateway"]
    return [
        common.Budget("non-stream p50 at concurrency 1 / floor", "<= 8x", r["json@1"]["p50"],
                      r["json@1"]["p50"] <= 8),
        common.Budget("non-stream turns/s at concurrency 16", ">= 2500", g["json@16"]["rps"],
                      g["json@16"]["rps"] >= 2500),
        common.Budget("20-chunk stream p50 at concurrency 1 / floor", "<= 3x",
                      r["stream@1"]["p50"], r["stream@1"]["p50"] <= 3),
        common.Budget("non-stream p50 at concurrency 64 (ms)", "<= 30", g["json@64"]["p50_ms"],
                      g["json@64"]["p50_ms"] <= 30),
        common.Budget("turn on a 50-message session / on a new one, p50", "<= 1.3x",
                      r["existing vs new"]["p50"], r["existing vs new"]["p50"] <= 1.3),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    measured = asyncio.run(measure(args.quick))
    common.report({"benchmark": "floor", "mode": "quick" if args.quick else "full",
                   "environment": common.environment(), "load_before": load_before,
                   "load_after": os.getloadavg(), **measured}, budgets(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main())
