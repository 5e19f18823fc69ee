"""WebSocket memory benchmark: a real `clawgate gateway` process holding many connections.

Figures (resident memory of the gateway process, from /proc):
- idle with no connection; with 1,000 and with 5,000 idle authenticated connections, and the
  cost per connection;
- after every client has left (memory should return near the idle figure);
- 1,000 connections of which 100 never read while 64 KiB broadcasts flow (``demo.flood``): the
  peak growth over idle, how many non-readers were cut (1008 slow consumer) and how many
  readers were (none should be).

Clients connect as client mode ``cli`` (not presence entries, like OpenClaw's CLI), so the
figures are the cost of a connection, not of presence fan-out. Non-readers have a 4 KiB
receive buffer and stop reading after the handshake; ``slow_consumers_cut`` is the gateway's
own count (``ws_slow_consumers_total``). Prints one JSON document, then a
`verdict:` line. `--quick` uses 500/2,000 connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import common

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.ws_client import write_demo_plugin  # noqa: E402

CLAWGATE = str(Path(sys.executable).with_name("clawgate"))
TOKEN = "bench-ws-token"
FRAME = 64 * 1024
KB = 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def settle(pid: int, *, seconds: float = 1.5) -> int:
    """RSS once it has stopped moving (two samples 0.5 s apart within 1%)."""
    await asyncio.sleep(seconds)
    last = rss_kb(pid)
    for _ in range(20):
        await asyncio.sleep(0.5)
        now = rss_kb(pid)
        if abs(now - last) <= last * 0.01:
            return now
        last = now
    return last


class Client:
    """One authenticated control-plane connection; ``reading`` ones drain what they get."""

    def __init__(self, ws: ClientConnection, reading: bool) -> None:
        self.ws = ws
        self.reading = reading
        self.received = 0
        self.close_code: int | None = None
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, port: int, *, reading: bool = True) -> Client:
        sock = None
        if not reading:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        ws = await connect(f"ws://127.0.0.1:{port}/", sock=sock, max_size=None,
                           max_queue=1 if not reading else 16, compression=None,
                           ping_interval=None, open_timeout=60, close_timeout=1)
        await ws.recv()  # connect.challenge
        req = uuid.uuid4().hex
        await ws.send(orjson.dumps({"type": "req", "id": req, "method": "connect", "params": {
            "minProtocol": 3, "maxProtocol": 4, "role": "operator",
            "client": {"id": "bench", "version": "1", "platform": "linux", "mode": "cli"},
            "scopes": ["operator.read"], "auth": {"token": TOKEN}}}).decode())
        while True:
            frame = orjson.loads(await ws.recv())
            if frame.get("type") == "res" and frame.get("id") == req:
                break
        if not frame.get("ok"):
            raise RuntimeError(f"connect refused: {frame.get('error')}")
        client = cls(ws, reading)
        if reading:
            client.task = asyncio.get_running_loop().create_task(client._drain())
        return client

    async def _drain(self) -> None:
        try:
            async for message in self.ws:
                self.received += len(message)
        except ConnectionClosed:
            pass
        self.close_code = self.ws.close_code

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 2)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.close_code is None:
            self.close_code = self.ws.close_code


async def open_many(port: int, count: int, *, reading: bool = True) -> list[Client]:
    clients: list[Client] = []
    for start in range(0, count, 100):
        clients += await asyncio.gather(*(Client.open(port, reading=reading)
                                          for _ in range(min(100, count - start))))
    return clients


async def close_all(clients: list[Client]) -> None:
    for start in range(0, len(clients), 200):
        await asyncio.gather(*(c.close() for c in clients[start:start + 200]))


async def measure(quick: bool, workdir: Path) -> dict[str, Any]:
    raise_fd_limit()
    small, large = (500, 2000) if quick else (1000, 5000)
    state = workdir / "state"
    state.mkdir(mode=0o700)
    demo = write_demo_plugin(workdir / "plugins")
    (state / "clawgate.toml").write_text(f'[plugins]\nload_paths = ["{demo}"]\n')
    port = free_port()
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(state), "CLAWGATE_GATEWAY_TOKEN": TOKEN,
           "CLAWGATE_LOG_LEVEL": "WARNING"}
    env.pop("CLAWGATE_CONFIG", None)
    proc = await asyncio.create_subprocess_exec(
        CLAWGATE, "gateway", "--port", str(port), env=env, preexec_fn=raise_fd_limit,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    out: dict[str, Any] = {"connections": {"small": small, "large": large}}
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway did not become ready")
                await asyncio.sleep(0.05)
        warm = await open_many(port, 50)  # first connections warm up imports and caches
        await close_all(warm)
        idle = await settle(proc.pid)

        clients = await open_many(port, small)
        at_small = await settle(proc.pid)
        clients += await open_many(port, large - small)
        at_large = await settle(proc.pid)
        await close_all(clients)
        after = await settle(proc.pid, seconds=3)
        again = await open_many(port, large)  # the memory left behind is reused, not added to
        second = await settle(proc.pid)
        await close_all(again)
        out["rss_kb"] = {"idle": idle, f"idle_{small}": at_small, f"idle_{large}": at_large,
                         "after_clients_left": after, f"second_round_{large}": second}
        out["per_connection_kb"] = {
            str(small): round((at_small - idle) / small, 2),
            str(large): round((at_large - idle) / large, 2)}

        out["slow_consumers"] = await slow_consumers(proc.pid, port, small, small // 10)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    return out


async def slow_consumers(pid: int, port: int, total: int, stalled: int) -> dict[str, Any]:
    readers = await open_many(port, total - stalled)
    sleepers = await open_many(port, stalled, reading=False)
    base = await settle(pid)
    peak = base
    flooder = await Client.open(port)
    rounds = 0
    try:
        for rounds in range(1, 41):  # 64 KiB per round to everyone: 2.5 MiB in all
            req = uuid.uuid4().hex
            await flooder.ws.send(orjson.dumps({"type": "req", "id": req, "method": "demo.flood",
                                                "params": {"count": 1, "size": FRAME}}).decode())
            want = rounds * FRAME
            deadline = time.monotonic() + 30
            while any(r.received < want for r in readers if r.close_code is None):
                peak = max(peak, rss_kb(pid))
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
        closed = await settle(pid)
        for sleeper in sleepers:
            with contextlib.suppress(Exception):
                sleeper.ws.transport.resume_reading()
        async def ending(sleeper: Client) -> int | None:  # read the rest: how did it end?
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    async for _ in sleeper.ws:
                        pass
            return sleeper.ws.close_code

        codes = await asyncio.gather(*(ending(s) for s in sleepers))
        cut_readers = sum(r.close_code is not None for r in readers)
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(f"http://127.0.0.1:{port}/metrics",
                                   headers={"Authorization": f"Bearer {TOKEN}"})).text
        slow_total = next(int(float(line.split()[1])) for line in text.splitlines()
                          if line.startswith("ws_slow_consumers_total "))
    finally:
        await close_all([*readers, *sleepers, flooder])
    return {"readers": len(readers), "non_readers": stalled, "rounds": rounds,
            "frame_bytes": FRAME, "rss_kb_before": base, "rss_kb_peak": peak,
            "rss_kb_after_cut": closed, "peak_growth_kb": peak - base,
            # The gateway's own count of connections it cut as slow consumers (1008), and how
            # many non-readers found their connection closed when they finally read (a client
            # that does not read never receives the close frame: its side says 1006).
            "slow_consumers_cut": slow_total,
            "non_readers_closed": sum(c is not None for c in codes),
            "readers_cut": cut_readers}


def budgets(m: dict[str, Any]) -> list[common.Budget]:
    small, large = m["connections"]["small"], m["connections"]["large"]
    rss = m["rss_kb"]
    per = m["per_connection_kb"][str(large)]
    slow = m["slow_consumers"]
    # Each non-reader may hold its 512 KiB budget plus uvicorn's 64 KiB write buffer.
    allowance = slow["non_readers"] * (512 + 64) + 16 * KB
    grown = rss[f"idle_{large}"] - rss["idle"]
    return [
        common.Budget(f"resident memory per idle connection ({large})", "< 25 KB",
                      per, per < 25),
        common.Budget(f"whole process with {large} connections", "< 300 MB",
                      f"{rss[f'idle_{large}'] / KB:.1f} MB", rss[f"idle_{large}"] < 300 * KB),
        common.Budget(f"peak growth with {slow['non_readers']} non-readers of {small}",
                      f"<= {allowance / KB:.0f} MB (their budgets)",
                      f"{slow['peak_growth_kb'] / KB:.1f} MB",
                      slow["peak_growth_kb"] <= allowance),
        common.Budget("non-readers cut as slow consumers (1008)",
                      f"{slow['non_readers']}", slow["slow_consumers_cut"],
                      slow["slow_consumers_cut"] == slow["non_readers"]
                      == slow["non_readers_closed"]),
        common.Budget("readers cut", "0", slow["readers_cut"], slow["readers_cut"] == 0),
        common.Budget(f"second round of {large} connections, over the first",
                      "<= 5% of the first round's growth",
                      f"{(rss[f'second_round_{large}'] - rss[f'idle_{large}']) / KB:.1f} MB",
                      rss[f"second_round_{large}"] - rss[f"idle_{large}"] <= grown * 0.05),
        common.Budget("memory after clients left, over idle",
                      f"<= max(10 MB, 25% of the {large}-connection growth)",
                      f"{(rss['after_clients_left'] - rss['idle']) / KB:.1f} MB",
                      rss["after_clients_left"] - rss["idle"] <= max(10 * KB, grown // 4)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500/2,000 connections")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="clawgate-bench-ws-"))
    try:
        measured = asyncio.run(measure(args.quick, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    common.report({"benchmark": "ws", "environment": common.environment(), **measured},
                  budgets(measured))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
