"""Two gateways on one PostgreSQL store behave as one for WebSocket clients: a client on
replica A sees the turn sent to replica B (``sessions.changed``, ``chat``/``agent`` events,
``session.message``), and ``status`` shows both replicas and the cron leader. On SQLite
nothing is fanned out and ``status`` shows the one gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway_server import serve_gateway
from tests.support.poll import until
from tests.support.postgres import Cluster
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio




async def test_a_client_on_one_replica_sees_a_turn_run_on_the_other(
        pg_cluster: Cluster, tmp_path: Path) -> None:
    url = pg_cluster.database()
    config = {"store": {"url": url}}
    try:
        async with serve_gateway(tmp_path / "a", config) as a, \
                serve_gateway(tmp_path / "b", config) as b, \
                open_client(a) as watcher, open_client(b) as sender:
            assert a.gateway.runtime.fanout is not None
            await watcher.ok("sessions.subscribe")
            await watcher.ok("sessions.messages.subscribe", {"key": "agent:main:main"})
            await sender.ok("chat.send", {"sessionKey": "main", "message": "from b",
                                          "idempotencyKey": "run-b"})
            end = await watcher.event(
                "sessions.changed",
                lambda p: p.get("runId") == "run-b" and p.get("phase") == "end", within=15)
            assert end["payload"]["status"] == "done"
            phases = [f["payload"].get("reason") or f["payload"].get("phase")
                      for f in watcher.events if f["event"] == "sessions.changed"
                      and f["payload"].get("runId") == "run-b"]
            assert phases == ["send", "start", "model", "end"]
            final = await watcher.event("chat", lambda p: p["runId"] == "run-b"
                                        and p["state"] == "final", within=15)
            assert "from b" in str(final["payload"]["message"])
            await watcher.event("agent", lambda p: p["runId"] == "run-b"
                                and p["stream"] == "lifecycle", within=15)
            await watcher.event("session.message",
                                lambda p: p["message"]["role"] == "assistant", within=15)
            roles = [f["payload"]["message"]["role"] for f in watcher.events
                     if f["event"] == "session.message"]
            assert roles == ["user", "assistant"]  # each once: remote events never echo back
            # The sender on B saw its own run once, not again from A's log.
            await sender.event("chat", lambda p: p["runId"] == "run-b" and p["state"] == "final")
            await asyncio.sleep(0.5)  # time enough for an echo through the log to arrive
            finals = [f for f in sender.events if f["event"] == "chat"
                      and f["payload"]["runId"] == "run-b" and f["payload"]["state"] == "final"]
            assert len(finals) == 1

            async def both() -> dict[str, Any] | None:
                status = await watcher.ok("status")
                return status if len(status["replicas"]) == 2 else None

            status = await until(both, 15, interval=0.05)
            ids = {a.gateway.runtime.replica.id, b.gateway.runtime.replica.id}
            assert {r["id"] for r in status["replicas"]} == ids
            assert status["replicaId"] == a.gateway.runtime.replica.id
            assert [r["self"] for r in status["replicas"]
                    if r["id"] == status["replicaId"]] == [True]
            leaders = [g for g in (a, b) if g.gateway.runtime.cron is not None
                       and g.gateway.runtime.cron.leading]
            assert len(leaders) == 1
            assert status["cronLeader"] == leaders[0].gateway.runtime.replica.id
    finally:
        pg_cluster.release(url)


async def test_on_sqlite_nothing_is_fanned_out_and_status_shows_one_replica(
        tmp_path: Path) -> None:
    async with serve_gateway(tmp_path) as server, open_client(server) as client:
        runtime = server.gateway.runtime
        assert runtime.fanout is None and runtime.registry is None
        assert runtime.engine.bus.export is None
        status = await client.ok("status")
        assert [r["id"] for r in status["replicas"]] == [runtime.replica.id]
        assert status["replicas"][0]["owns"] == ["cron"]
        assert status["cronLeader"] == runtime.replica.id
