"""Two `clawgate gateway` processes on one PostgreSQL store: one cron leader, no job fired twice,
and the follower takes over when the leader is killed with SIGKILL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clawgate.client import GatewayError, call_remote
from tests.gateway.test_process import GatewayProcess
from tests.support.postgres import Cluster

JOB = {"name": "tick", "schedule": {"kind": "every", "everyMs": 1000},
       "payload": {"kind": "agentTurn", "message": "tick"}}


def _call(gateway: GatewayProcess, method: str, params: dict[str, Any] | None = None) -> Any:
    return call_remote(method, params or {}, url=f"ws://127.0.0.1:{gateway.port}",
                       token=gateway.token, timeout=10)


def _poll(condition: Callable[[], Any], within: float) -> Any:
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.1)
    return value


def test_one_leader_runs_the_jobs_and_the_other_takes_over_after_kill_9(
        pg_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_cluster.database()
    monkeypatch.setenv("CLAWGATE_STORE_URL", url)
    gateways: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):  # one after the other: each binds its port before the next
            gateways.append(GatewayProcess(tmp_path / name))
            gateways[-1].wait_ready()
        leaders = [g for g in gateways if _call(g, "cron.status")["leader"]]
        assert len(leaders) == 1
        leader = leaders[0]
        follower = next(g for g in gateways if g is not leader)
        with pytest.raises(GatewayError, match="not the cron leader"):
            _call(follower, "cron.add", JOB)
        job = _call(leader, "cron.add", JOB)
        job_id = job["id"]
        _poll(lambda: len(_call(leader, "cron.runs", {"id": job_id})["entries"]) >= 2, 30)

        leader.proc.kill()  # kill -9: its lease goes with its database connection
        leader.proc.wait(10)
        _poll(lambda: _call(follower, "cron.status")["leader"], 20)
        before = len(_call(follower, "cron.runs", {"id": job_id})["entries"])

        def more() -> list[dict[str, Any]] | None:
            found: list[dict[str, Any]] = _call(follower, "cron.runs", {"id": job_id})["entries"]
            return found if len(found) >= before + 2 else None

        entries = _poll(more, 30)
    finally:
        for gateway in gateways:
            gateway.stop()
        pg_cluster.release(url)
    # Every one-second slot fired at most once, and runs never overlapped: one process ran
    # them at a time, the killed leader's open run (if any) closed as interrupted.
    slots = [e["runAtMs"] // 1000 for e in entries]
    assert len(slots) == len(set(slots))
    spans = sorted((e["runAtMs"], e["runAtMs"] + e.get("durationMs", 0)) for e in entries)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))
    assert sum(e["status"] == "ok" for e in entries) >= len(entries) - 1
