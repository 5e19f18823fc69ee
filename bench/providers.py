"""Benchmark: the gateway's own time per turn over the Anthropic provider vs the OpenAI one.

Two engines run in this process, each on the bundled plugins and a real SQLite store: one with
the ``anthropic`` plugin (the official SDK) pointed at the loopback Messages API fake, one with
the ``openai`` plugin (httpx) pointed at the loopback chat-completions fake. The fakes run in a
child process (so their work does not compete with the engine for this interpreter's GIL) and
wait ``--latency-ms`` before answering; both echo the user's text in one chunk. Turns alternate
between the engines session by session (10 turns; the history grows to 20 messages), so both
see the same load of a shared machine.

Measured per turn: the wall time of ``engine.run``; the fake's own time answering it (timed
inside the fake, from the request's arrival to its last byte, ``--latency-ms`` included); and
their difference, the gateway's time (admission, store, prompt, provider client and SDK,
stream parsing, completion, loopback transfer). p50 and p99 per provider, and their ratio.
Budget (the task's): Anthropic's gateway time within 10% of OpenAI's at p50 and p99.
Also reported: the time to import the ``anthropic`` SDK (paid once, when the plugin loads).

Run: ``.venv/bin/python bench/providers.py [--quick] [--latency-ms 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fakes live in tests/support

import httpx  # noqa: E402

import common  # noqa: E402
from clawgate import config  # noqa: E402
from clawgate.agents.engine import Engine  # noqa: E402
from clawgate.agents.turn import Submission  # noqa: E402
from clawgate.plugins.host import PluginHost  # noqa: E402
from clawgate.sessions.store import SessionStore  # noqa: E402

RATIO_BUDGET = 1.10
SESSION_TURNS = 10
MESSAGE = ("Summarise the quarterly report in three sentences, and mention the two figures "
           "that changed the most since last quarter. ") * 2


class Timed:
    """ASGI middleware of a fake: records how long it took to answer each request (from its
    start to the last body byte handed to the server), served and cleared at ``/__timings``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.durations: list[float] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/__timings":
            body = json.dumps(self.durations).encode()
            self.durations = []
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        started = time.perf_counter()

        async def timed(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.durations.append(time.perf_counter() - started)

        await self.app(scope, receive, timed)


def serve(latency_ms: float) -> None:
    """Child process: run both fakes (timed), print their URLs, stop when stdin closes."""
    from tests.support.mock_anthropic import MockAnthropic
    from tests.support.mock_openai import MockOpenAI

    class TimedAnthropic(MockAnthropic):
        def app(self) -> Any:
            return Timed(super().app())

    class TimedOpenAI(MockOpenAI):
        def _app(self) -> Any:
            return Timed(super()._app())

    with TimedAnthropic(latency=latency_ms / 1000) as anthropic, \
            TimedOpenAI(latency=latency_ms / 1000) as openai:
        sys.stdout.write(json.dumps({"anthropic": anthropic.url, "openai": openai.url}) + "\n")
        sys.stdout.flush()
        sys.stdin.read()


@asynccontextmanager
async def engine_at(state: Path, plugin: str, url: str) -> AsyncIterator[Engine]:
    entry: dict[str, Any] = {"base_url": url, "api_key_env": "BENCH_KEY", "max_retries": 0,
                             "models": [{"id": "bench-model",
                                         "cost": {"input": 3, "output": 15}}]}
    data = {"plugins": {"entries": {plugin: {"enabled": True, "config": entry}}},
            "agents": [{"id": "main", "default": True, "model": f"{plugin}/bench-model"}]}
    settings = config.Settings(config.parse(data), state_dir=state,
                               config_path=state / "clawgate.toml")
    host = PluginHost(settings)
    store = SessionStore(state / "clawgate.db")
    await store.open()
    try:
        await host.start()
        engine = Engine(settings, host, store)
        await engine.start()
        try:
            yield engine
        finally:
            await engine.aclose()
    finally:
        await host.aclose()
        await store.close()


async def turn(engine: Engine, n: int) -> float:
    session = f"agent:main:bench-{n // SESSION_TURNS}"
    started = time.perf_counter()
    result = await engine.run(Submission(f"{MESSAGE} ({n})", session_key=session))
    elapsed = time.perf_counter() - started
    if result.status != "ok":
        raise RuntimeError(f"turn failed: {result}")
    return elapsed


async def timings(client: httpx.AsyncClient, url: str) -> list[float]:
    """The fake's answer times since the last call (and clears them)."""
    origin = url.removesuffix("/v1")
    return list((await client.get(f"{origin}/__timings")).json())


def stats(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(common.percentile(samples, 50) * 1000, 3),
            "p99_ms": round(common.percentile(samples, 99) * 1000, 3),
            "mean_ms": round(statistics.fmean(samples) * 1000, 3),
            "min_ms": round(min(samples) * 1000, 3), "n": len(samples)}


def import_time() -> float:
    code = "import time; t = time.perf_counter(); import anthropic; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return round(float(out.stdout) * 1000, 1)


async def measure(urls: dict[str, str], turns: int,
                  rounds: int) -> dict[str, dict[str, list[float]]]:
    walls: dict[str, list[float]] = {"openai": [], "anthropic": []}
    answered: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="clawgate-bench-providers-") as tmp:
        root = Path(tmp)
        async with engine_at(root / "openai", "openai", urls["openai"]) as oa, \
                engine_at(root / "anthropic", "anthropic", urls["anthropic"]) as an, \
                httpx.AsyncClient() as client:
            engines = {"openai": oa, "anthropic": an}
            for engine in engines.values():  # warm-up: connections, first-use costs
                for n in range(20):
                    await turn(engine, 10_000 + n)
            for url in urls.values():
                await timings(client, url)
            per_round = turns // rounds
            for r in range(rounds):
                order = ("openai", "anthropic") if r % 2 == 0 else ("anthropic", "openai")
                for name in order:
                    for n in range(per_round):
                        walls[name].append(await turn(engines[name], r * per_round + n))
            for name, url in urls.items():
                answered[name] = await timings(client, url)
    for name in walls:  # one request per turn, in order
        if len(answered[name]) != len(walls[name]):
            raise RuntimeError(f"{name}: {len(walls[name])} turns but "
                               f"{len(answered[name])} requests")
    return {name: {"wall": walls[name], "provider": answered[name],
                   "gateway": [w - a for w, a in zip(walls[name], answered[name],
                                                     strict=True)]}
            for name in walls}


def main(quick: bool, latency_ms: float) -> None:
    os.environ["BENCH_KEY"] = "bench-key"
    turns = 200 if quick else 1000
    rounds = turns // SESSION_TURNS  # alternate every session: both see the same machine load
    child = subprocess.Popen([sys.executable, __file__, "--serve", "--latency-ms",
                              str(latency_ms)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=ROOT)
    try:
        assert child.stdout is not None
        urls = json.loads(child.stdout.readline())
        samples = asyncio.run(measure(urls, turns, rounds))
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(timeout=30)
    figures = {name: {kind: stats(values) for kind, values in parts.items()}
               for name, parts in samples.items()}
    ratio = {q: round(figures["anthropic"]["gateway"][q] / figures["openai"]["gateway"][q], 3)
             for q in ("p50_ms", "p99_ms")}
    budgets = [
        common.Budget("anthropic/openai gateway time p50", f"<= {RATIO_BUDGET}",
                      ratio["p50_ms"], ratio["p50_ms"] <= RATIO_BUDGET),
        common.Budget("anthropic/openai gateway time p99", f"<= {RATIO_BUDGET}",
                      ratio["p99_ms"], ratio["p99_ms"] <= RATIO_BUDGET),
    ]
    common.report({"benchmark": "providers", "mode": "quick" if quick else "full",
                   "environment": common.environment(), "fake_latency_ms": latency_ms,
                   "session_turns": SESSION_TURNS, "per_turn": figures, "ratio": ratio,
                   "anthropic_sdk_import_ms": import_time()}, budgets)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="200 turns per provider")
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency_ms)
    else:
        main(args.quick, args.latency_ms)
