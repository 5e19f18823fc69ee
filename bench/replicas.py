"""Benchmark: several `clawgate gateway` replicas on one local PostgreSQL database.

Measured (echo provider, no delay unless said, each replica its own process, port and state
directory, a fresh database per figure):

- ``turns_per_s``: chat completions per second with 1, 2 and 3 replicas; a Python asyncio
  client keeps ``--concurrency`` requests in flight over 1,000 sessions, each request to the
  next replica in turn (one session's turns land on every replica, so claims are exercised);
- ``db``: PostgreSQL commits per turn (``pg_stat_database.xact_commit`` deltas over the run:
  the claims, takeover sweeps and liveness probes included) and, in one process with two
  replica runtimes on one database, the statements the store sends per turn (counted in the
  adapter, as bench/pgstore.py does) — the figures that carry to bigger machines;
- ``failover_s``: two replicas under load with a 200 ms echo; one is killed with SIGKILL while
  it runs turns; the time until every run it had open is answered by the other.

Budgets (issue 17): 2 replicas >= 1.6x the turns/s of one; failover < 10 s. ``sessions.list``
at 100,000 sessions on PostgreSQL is bench/pgstore.py's. On a 2-core machine the replicas,
the database and the client share the cores: turns/s cannot scale there the way it would with
a core per replica; the round trips per turn are the number to carry over.
Run: ``.venv/bin/python bench/replicas.py [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import common
from pgstore import Counter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from tests.gateway.test_process import GatewayProcess  # noqa: E402
from tests.support.postgres import Cluster  # noqa: E402

from clawgate import config  # noqa: E402
from clawgate.agents.turn import Submission  # noqa: E402
from clawgate.runtime import Runtime  # noqa: E402

SESSIONS = 1_000
SCALE_BUDGET = 1.6
FAILOVER_BUDGET_S = 10.0
CONFIG = """
[engine]
max_concurrent = 64
max_pending = 5000
[plugins.entries.echo.config]
delay_ms = {delay}
"""


def start_replicas(root: Path, url: str, count: int, delay_ms: int = 0) -> list[GatewayProcess]:
    os.environ["CLAWGATE_STORE_URL"] = url
    started: list[GatewayProcess] = []
    try:
        for n in range(count):  # one after the other: the first migrates the database
            gateway = GatewayProcess(root / f"r{n}", config=CONFIG.format(delay=delay_ms))
            started.append(gateway)
            gateway.wait_ready(120)
            drain(gateway)
    except BaseException:
        stop(started)
        raise
    return started


def drain(gateway: GatewayProcess) -> None:
    """Read the gateway's log pipe: a full pipe would block its event loop on a log line."""
    out = gateway.proc.stdout
    if out is not None:
        threading.Thread(target=lambda: all(iter(out.readline, "")), daemon=True).start()


def stop(gateways: list[GatewayProcess]) -> None:
    for gateway in gateways:
        gateway.stop()


def commits(cluster: Cluster, db: str) -> int:
    import psycopg

    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                           (db,)).fetchone()
    return int(row[0]) if row else 0


async def load(gateways: list[GatewayProcess], seconds: float, concurrency: int,
               stop_early: asyncio.Event | None = None) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight for ``seconds``; returns the turns answered."""
    sessions = itertools.cycle(range(SESSIONS))
    replica = itertools.count()
    ok = failed = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        async def worker() -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline and not (stop_early and stop_early.is_set()):
                session = next(sessions)
                alive = [g for g in gateways if g.proc.poll() is None]
                gateway = alive[next(replica) % len(alive)]
                started = time.perf_counter()
                try:
                    reply = await client.post(
                        f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                        json={"model": "clawgate", "user": f"s{session}",
                              "messages": [{"role": "user", "content": f"hi {session}"}]})
                except httpx.HTTPError:
                    failed += 1
                    continue
                if reply.status_code == 200:
                    ok += 1
                    latencies.append(time.perf_counter() - started)
                else:
                    failed += 1

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - began
    return {"turns": ok, "failed": failed, "seconds": round(elapsed, 2),
            "turns_per_s": round(ok / elapsed, 1),
            "latency_p50_ms": round(common.percentile(latencies, 50) * 1000, 1)
            if latencies else None}


async def throughput(cluster: Cluster, root: Path, count: int, seconds: float,
                     concurrency: int) -> dict[str, Any]:
    db = f"replicas{count}"
    cluster.sql(f"CREATE DATABASE {db}")
    gateways = start_replicas(root / db, cluster.url(db), count)
    try:
        await load(gateways, 2.0, concurrency)  # warm-up: sessions created, caches filled
        before = commits(cluster, db)
        result = await load(gateways, seconds, concurrency)
        result["commits_per_turn"] = round((commits(cluster, db) - before) /
                                           max(1, result["turns"]), 2)
    finally:
        stop(gateways)
    result["replicas"] = count
    return result


async def failover(cluster: Cluster, root: Path, concurrency: int) -> dict[str, Any]:
    import psycopg

    db = "failover"
    cluster.sql(f"CREATE DATABASE {db}")
    url = cluster.url(db)
    gateways = start_replicas(root / db, url, 2, delay_ms=200)
    victim = gateways[0]
    try:
        running = asyncio.ensure_future(load(gateways, 6.0, concurrency))
        await asyncio.sleep(2.0)
        with psycopg.connect(url, autocommit=True) as conn:
            victim.proc.kill()  # kill -9 while it runs turns
            killed = time.monotonic()
            victim.proc.wait(10)
            mine = f"%-{victim.proc.pid}-%"
            open_runs = [r[0] for r in conn.execute(
                "SELECT run_id FROM runs WHERE owner LIKE %s "
                "AND status IN ('queued', 'running')", (mine,))]
            while True:
                left = conn.execute(
                    "SELECT COUNT(*) FROM runs WHERE run_id = ANY(%s) "
                    "AND status IN ('queued', 'running')", (open_runs,)).fetchone()
                if left is not None and left[0] == 0:
                    break
                if time.monotonic() - killed > 60:
                    raise RuntimeError("the dead replica's runs were not taken over in 60 s")
                await asyncio.sleep(0.05)
            served = time.monotonic() - killed
            answered = conn.execute(
                "SELECT COUNT(*) FROM runs WHERE run_id = ANY(%s) AND status = 'ok'",
                (open_runs,)).fetchone()
        after = await running
    finally:
        stop(gateways)
    return {"open_runs_of_the_killed_replica": len(open_runs),
            "answered_by_the_survivor": int(answered[0]) if answered else 0,
            "failover_s": round(served, 2), "load_during": after}


async def statements_per_turn(cluster: Cluster, root: Path, turns: int) -> dict[str, Any]:
    """Two replica runtimes in this process on one database, turns alternating between them
    on 20 sessions: what the store sends per turn with the claim in place."""
    db = "statements"
    cluster.sql(f"CREATE DATABASE {db}")
    runtimes = []
    for name in ("a", "b"):
        data: dict[str, Any] = {"plugins": {"entries": {"echo": {"config": {"delay_ms": 0}}}},
                                "store": {"url": cluster.url(db)}}
        state = root / "statements" / name
        runtimes.append(Runtime(config.Settings(config.parse(data), state_dir=state,
                                                config_path=state / "clawgate.toml")))
    counter = Counter()
    try:
        for runtime in runtimes:
            await runtime.start()
        for n in range(40):  # warm-up: every session exists
            await runtimes[n % 2].engine.run(Submission("warm", session_key=f"s{n % 20}"))
        with counter.installed():
            for n in range(turns):
                result = await runtimes[n % 2].engine.run(
                    Submission(f"m{n}", session_key=f"s{n % 20}"))
                if result.status != "ok":
                    raise RuntimeError(f"turn failed: {result}")
    finally:
        for runtime in runtimes:
            await runtime.aclose()
    return {"statements_per_turn": round(counter.statements / turns, 2),
            "commits_per_turn": round(counter.transactions / turns, 2), "turns": turns}


async def main(quick: bool, concurrency: int) -> None:
    seconds = 5.0 if quick else 15.0
    root = Path(tempfile.mkdtemp(prefix="clawgate-bench-replicas-"))
    cluster = Cluster()
    cluster.start()
    try:
        rates = [await throughput(cluster, root, n, seconds, concurrency) for n in (1, 2, 3)]
        fail = await failover(cluster, root, concurrency)
        trips = await statements_per_turn(cluster, root, 100 if quick else 400)
    finally:
        cluster.stop()
    one, two = rates[0]["turns_per_s"], rates[1]["turns_per_s"]
    ratio = round(two / one, 2) if one else 0.0
    budgets = [
        common.Budget("2 replicas turns/s vs 1", f">= {SCALE_BUDGET}x", ratio,
                      ratio >= SCALE_BUDGET),
        common.Budget("failover after kill -9", f"< {FAILOVER_BUDGET_S} s", fail["failover_s"],
                      fail["failover_s"] < FAILOVER_BUDGET_S),
    ]
    common.report({"benchmark": "replicas", "quick": quick, "sessions": SESSIONS,
                   "concurrency": concurrency, "environment": common.environment(),
                   "note": f"{os.cpu_count()} cores shared by the replicas, PostgreSQL and "
                           "the client", "throughput": rates,
                   "ratio_2_vs_1": ratio,
                   "ratio_3_vs_1": round(rates[2]["turns_per_s"] / one, 2) if one else 0.0,
                   "failover": fail, "store_round_trips": trips,
                   "sessions_list_100k": "see bench/pgstore.py"}, budgets)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.concurrency))
