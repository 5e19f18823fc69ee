"""Gateway benchmark: the process as users run it (`clawgate gateway`), measured from outside.

Figures:
- start to `/health` 200 (8 bundled plugins' worth of start-up is the budget's scale), on a
  restart with unchanged state (the start users do every day: token, store, schema checks and
  probe verdicts exist) and on the first start in a fresh state dir, reported beside it;
- first chat completion after start (echo provider) and its time since process start;
- gateway overhead per completion over the provider's own time: the same request sent to a
  local mock OpenAI-compatible provider directly and through the gateway (p50/p99 of the
  difference of medians per round);
- 4 turns on 4 new sessions at once with a provider taking 500 ms (wall time, median of 5
  rounds, beside the same 4 requests straight to the provider);
- `sessions.list` over WebSocket with 1,000 sessions, idle vs while 32 streamed completions
  run (ratio of medians);
- resident memory of the gateway process idle and under load (zero-config: on a restart, and on
  the first start, which also checks every manifest with jsonschema); plugin counters from
  /metrics.

A gateway users run starts from .pyc files; this machine sets PYTHONDONTWRITEBYTECODE=1, so
without a compile step every start would compile clawgate's sources again (~0.4 s). The
benchmark compiles the clawgate package it runs first (``compiled`` in the JSON), and runs
its gateways without that variable, so that the first one saves the compiled dataclass
methods (clawgate/codecache.py) that every later start loads, as a user's gateway does.

Prints one JSON document, then a `verdict:` line. `--quick` uses fewer rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import clawgate
import common
from clawgate.client import GatewayClient
from clawgate.sessions.store import SessionStore

ROOT = Path(__file__).resolve().parent.parent

CLAWGATE = str(Path(sys.executable).with_name("clawgate"))
FOUR_ROUNDS = 5  # rounds of 4 turns at once (their median is the figure)


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def config_text(mock_url: str) -> str:
    return f"""
[[agents]]
id = "main"
default = true

[[agents]]
id = "mock"
model = "openai/mock-model"

[plugins.entries.openai]
enabled = true
config = {{ base_url = "{mock_url}", api_key_env = "BENCH_NO_KEY", max_retries = 0 }}

[engine]
max_concurrent = 64
"""


async def seed_sessions(state: Path, count: int) -> None:
    store = SessionStore(state / "clawgate.db")
    await store.open()
    try:
        await asyncio.gather(*(
            store.ensure(f"agent:main:bench-{i}", agent_id="main", label=f"bench {i % 10}")
            for i in range(count)
        ))
    finally:
        await store.close()


def completion(model: str, text: str, *, user: str | None = None,
               stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if user:
        body["user"] = user
    if stream:
        body["stream"] = True
    return body


async def timed_post(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                     headers: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    response = await client.post(url, json=body, headers=headers)
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000


async def streamed(client: httpx.AsyncClient, url: str, body: dict[str, Any],
                   headers: dict[str, str]) -> None:
    async with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        async for _ in response.aiter_lines():
            pass


async def list_times(ws: GatewayClient, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        result = await ws.call("sessions.list", {"limit": 50})
        times.append((time.perf_counter() - started) * 1000)
        assert len(result["sessions"]) == 50
    return times


def gateway_env(state: Path, port: int) -> dict[str, str]:
    """The environment of a gateway the benchmark starts: as users run it, so it may write its
    caches (bytecode, compiled dataclass methods) even where this machine forbids that."""
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(state), "CLAWGATE_GATEWAY_PORT": str(port)}
    for name in ("CLAWGATE_CONFIG", "CLAWGATE_CODE_CACHE", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return env


def compile_package() -> dict[str, Any]:
    """Byte-compile the clawgate package the benchmark runs, as an installed package is."""
    package = Path(clawgate.__file__).resolve().parent
    started = time.perf_counter()
    ok = compileall.compile_dir(package, quiet=1)
    return {"path": str(package), "ok": bool(ok),
            "ms": round((time.perf_counter() - started) * 1000, 1)}


async def first_start(state: Path) -> float:
    """Start a gateway on ``state`` until /health answers, stop it: the first start (token,
    store, schema checks, probes). Its start to /health in ms."""
    port = free_port()
    env = gateway_env(state, port)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        CLAWGATE, "gateway", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        return (time.perf_counter() - started) * 1000
                except httpx.TransportError:
                    pass
                if proc.returncode is not None:
                    raise RuntimeError("gateway exited during its first start")
                await asyncio.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


async def zero_config_idle_rss(workdir: Path, *, restart: bool) -> int:
    """Resident memory (kB) of a zero-config gateway after one completion: the default set-up
    (echo provider, no OpenAI plugin, so no HTTP client library loaded); ``restart``: its state
    dir was started once before."""
    state = workdir / ("zero-restart" if restart else "zero")
    if restart:
        await first_start(state)
    port = free_port()
    env = gateway_env(state, port)
    proc = await asyncio.create_subprocess_exec(
        CLAWGATE, "gateway", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            base = f"http://127.0.0.1:{port}"
            while True:
                try:
                    if (await client.get(f"{base}/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.01)
            token = (state / "gateway.token").read_text().strip()
            await timed_post(client, f"{base}/v1/chat/completions",
                             completion("clawgate", "one"), {"Authorization": f"Bearer {token}"})
        await asyncio.sleep(1.0)
        return rss_kb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


async def measure(quick: bool, workdir: Path) -> dict[str, Any]:
    zero_first_rss = await zero_config_idle_rss(workdir, restart=False)
    zero_rss = await zero_config_idle_rss(workdir, restart=True)
    sys.path.insert(0, str(ROOT))  # the tests' mock OpenAI-compatible server is the provider
    from tests.support.mock_openai import MockOpenAI

    rounds = 40 if quick else 200
    state = workdir / "state"
    state.mkdir()
    mock = MockOpenAI(latency=0.05)
    mock.start()
    try:
        (state / "clawgate.toml").write_text(config_text(mock.url))
        await seed_sessions(state, 1000)
        first_ms = await first_start(state)
        port = free_port()
        env = gateway_env(state, port)
        base = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            CLAWGATE, "gateway", env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            measured = await drive(proc, base, state, started, mock, rounds, quick)
            measured["rss_kb"]["idle_zero_config"] = zero_rss
            measured["rss_kb"]["idle_zero_config_first_start"] = zero_first_rss
            measured["first_start_to_health_ms"] = round(first_ms, 1)
            return measured
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    finally:
        mock.stop()


async def drive(proc: asyncio.subprocess.Process, base: str, state: Path, started: float,
                mock: Any, rounds: int, quick: bool) -> dict[str, Any]:
    from tests.support.mock_openai import Reply

    async with httpx.AsyncClient(timeout=60) as client:
        while True:
            try:
                if (await client.get(f"{base}/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.returncode is not None:
                raise RuntimeError("gateway exited during start-up")
            await asyncio.sleep(0.002)
        health_ms = (time.perf_counter() - started) * 1000
        token = (state / "gateway.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        url = f"{base}/v1/chat/completions"
        first_ms = await timed_post(client, url, completion("clawgate", "first"), auth)
        first_since_start_ms = (time.perf_counter() - started) * 1000
        rss_idle = rss_kb(proc.pid)
        # CPU at idle: the process alone (ticks, timers) over a quiet window.
        window = 3.0 if quick else 10.0
        cpu_before, wall_before = cpu_seconds(proc.pid), time.perf_counter()
        await asyncio.sleep(window)
        idle_cpu_pct = 100 * (cpu_seconds(proc.pid) - cpu_before) / (
            time.perf_counter() - wall_before)

        # Overhead: the same request direct to the mock (streamed, as the gateway asks it) and
        # through the gateway, interleaved; overhead quantiles pair the sorted samples.
        direct, through = [], []
        for i in range(rounds):
            t0 = time.perf_counter()
            await streamed(client, f"{mock.url}/chat/completions",
                           completion("mock-model", f"d{i}", stream=True), {})
            direct.append((time.perf_counter() - t0) * 1000)
            through.append(await timed_post(client, url, completion(
                "clawgate/mock", f"t{i}", user=f"overhead{i % 8}"), auth))
        overhead = [t - d for t, d in zip(sorted(through), sorted(direct), strict=True)]

        # 4 turns on 4 new sessions at once, provider taking 500 ms (0.45 s planned delay on
        # top of the mock's 0.05 s base latency); the median of FOUR_ROUNDS (one sample swung
        # by 15 ms run to run), the same 4 at once straight to the provider beside it.
        four_walls, four_direct = [], []
        for r in range(FOUR_ROUNDS):
            mock.plan(*(Reply("slow", delay=0.45) for _ in range(4)))
            wall_started = time.perf_counter()
            await asyncio.gather(*(timed_post(client, url, completion(
                "clawgate/mock", "four", user=f"four{r}-{i}"), auth) for i in range(4)))
            four_walls.append(time.perf_counter() - wall_started)
            mock.plan(*(Reply("slow", delay=0.45) for _ in range(4)))
            wall_started = time.perf_counter()
            await asyncio.gather(*(timed_post(client, f"{mock.url}/chat/completions", completion(
                "mock-model", "four"), {}) for _ in range(4)))
            four_direct.append(time.perf_counter() - wall_started)
        four_wall_s = common.median(four_walls)

        async with GatewayClient(base.replace("http", "ws"), token) as ws:
            idle = await list_times(ws, rounds)
            # 32 streamed turns: 0.3 s to the first token, then 20 chunks 10 ms apart. The
            # listing is sampled for as long as they run (waiting and streaming phases).
            mock.plan(*(Reply("streamed reply " * 20, chunks=20, interval=0.01, delay=0.25)
                        for _ in range(32)))
            load = asyncio.gather(*(streamed(client, url, completion(
                "clawgate/mock", "load", user=f"load{i}", stream=True), auth)
                for i in range(32)))
            busy: list[float] = []
            rss_load = 0
            while not load.done():
                busy.extend(await list_times(ws, 1))
                rss_load = max(rss_load, rss_kb(proc.pid))
            await load
        metrics = (await client.get(f"{base}/metrics", headers=auth)).text
    counters = {
        line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
        if line.startswith("plugin_") and " " in line
    }
    return {
        "start_to_health_ms": round(health_ms, 1),
        "first_completion_ms": round(first_ms, 2),
        "first_completion_since_start_ms": round(first_since_start_ms, 1),
        "overhead_ms": {"p50": round(common.percentile(overhead, 50), 3),
                        "p99": round(common.percentile(overhead, 99), 3)},
        "direct_ms": common.summarize(direct),
        "through_gateway_ms": common.summarize(through),
        "four_sessions_500ms_wall_s": round(four_wall_s, 3),
        "four_sessions_rounds_s": [round(w, 3) for w in four_walls],
        "four_sessions_direct_median_s": round(common.median(four_direct), 3),
        "sessions_list_ms": {"idle": common.summarize(idle), "under_32_streams":
                             common.summarize(busy)},
        "sessions_list_ratio": round(common.median(busy) / common.median(idle), 3),
        "rss_kb": {"idle": rss_idle, "under_load": rss_load},
        "idle_cpu_percent": round(idle_cpu_pct, 3),
        "counters": counters,
        "rounds": rounds,
    }


def budgets(m: dict[str, Any]) -> list[common.Budget]:
    c = m["counters"]
    return [
        common.Budget("start to /health 200, restart (ms)", "< 300", m["start_to_health_ms"],
                      m["start_to_health_ms"] < 300),
        common.Budget("first completion after start (ms)", "< 30", m["first_completion_ms"],
                      m["first_completion_ms"] < 30),
        common.Budget("gateway overhead per completion p50 (ms)", "< 3",
                      m["overhead_ms"]["p50"], m["overhead_ms"]["p50"] < 3),
        common.Budget("4 turns on 4 sessions at 500 ms (s)", "< 0.52",
                      m["four_sessions_500ms_wall_s"], m["four_sessions_500ms_wall_s"] < 0.52),
        common.Budget("sessions.list under 32 streams vs idle", "< 1.3x",
                      m["sessions_list_ratio"], m["sessions_list_ratio"] < 1.3),
        common.Budget("resident memory idle, zero-config restart (MiB)", "< 50",
                      round(m["rss_kb"]["idle_zero_config"] / 1024, 1),
                      m["rss_kb"]["idle_zero_config"] < 50 * 1024),
        common.Budget("resident memory idle, OpenAI plugin loaded (MiB)", "< 50",
                      round(m["rss_kb"]["idle"] / 1024, 1), m["rss_kb"]["idle"] < 50 * 1024),
        common.Budget("resident memory under load (MiB)", "< 80",
                      round(m["rss_kb"]["under_load"] / 1024, 1),
                      m["rss_kb"]["under_load"] < 80 * 1024),
        common.Budget("CPU at idle (%)", "< 0.5", m["idle_cpu_percent"],
                      m["idle_cpu_percent"] < 0.5),
        common.Budget("plugin loads on the request path", "0",
                      c.get("plugin_loads_on_request_total", -1),
                      c.get("plugin_loads_on_request_total") == 0),
        common.Budget("plugin builds during start-up", "1",
                      c.get("plugin_generation_builds_total", -1),
                      c.get("plugin_generation_builds_total") == 1),
        common.Budget("metadata scans (start-up only)", "1",
                      c.get("plugin_metadata_scans_total", -1),
                      c.get("plugin_metadata_scans_total") == 1),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args(argv)
    compiled = compile_package()
    workdir = Path(tempfile.mkdtemp(prefix="clawgate-bench-"))
    try:
        measured = asyncio.run(measure(args.quick, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    common.report({"benchmark": "gateway", "environment": common.environment(),
                   "compiled": compiled, "load_average": [round(x, 2) for x in os.getloadavg()],
                   **measured}, budgets(measured))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
