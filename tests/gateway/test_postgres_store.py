"""`clawgate gateway` on a PostgreSQL store: completions land in the database, survive a
kill -9 and a restart; the password never shows; a gateway on SQLite never imports psycopg."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from clawgate.client import call_remote
from clawgate.sessions.store import SessionStore
from tests.gateway.test_process import GatewayProcess
from tests.support.postgres import USER, Cluster

KEY = "agent:main:openai-user:alice"


def _chat(gateway: GatewayProcess, history: list[dict[str, Any]]) -> dict[str, Any]:
    reply = httpx.post(f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                       json={"model": "clawgate", "messages": history, "user": "Alice"},
                       timeout=30)
    assert reply.status_code == 200, reply.text
    message: dict[str, Any] = reply.json()["choices"][0]["message"]
    return message


def test_a_gateway_on_postgresql_keeps_history_over_kill_and_restart(
        pg_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_cluster.database()
    # Trust auth on the throwaway cluster: the password is accepted and must never show.
    secret_url = url.replace(f"//{USER}@", f"//{USER}:hunter2@")
    monkeypatch.setenv("CLAWGATE_STORE_URL", secret_url)
    state = tmp_path / "state"
    gateways: list[GatewayProcess] = []
    try:
        first = GatewayProcess(state)
        gateways.append(first)
        first.wait_ready()
        history = [{"role": "user", "content": "one"}]
        history.append(_chat(first, history))
        first.proc.kill()  # kill -9: the acknowledged turn is in PostgreSQL already
        first.proc.wait(10)

        second = GatewayProcess(state)
        gateways.append(second)
        second.wait_ready()
        history.append({"role": "user", "content": "two"})
        assert _chat(second, history)["content"] == "two"
        status = call_remote("status", url=f"ws://127.0.0.1:{second.port}",
                             token=second.token)
        assert "hunter2" not in str(status) and "***@" in str(status)
        config = call_remote("config.get", url=f"ws://127.0.0.1:{second.port}",
                             token=second.token)
        assert "hunter2" not in str(config)
    finally:
        for gateway in gateways:
            gateway.stop()
    assert not (state / "clawgate.db").exists()  # nothing went to SQLite

    async def stored() -> list[tuple[str, Any]]:
        async with SessionStore(url) as store:
            return [(m.role, m.content) for m in await store.transcript(KEY)]

    try:
        assert asyncio.run(stored()) == [("user", "one"), ("assistant", "one"),
                                         ("user", "two"), ("assistant", "two")]
    finally:
        pg_cluster.release(url)


def test_a_gateway_on_sqlite_does_not_import_psycopg(tmp_path: Path) -> None:
    script = f"""
import asyncio, sys
from clawgate.config import Settings, parse
from clawgate.runtime import Runtime

async def main():
    settings = Settings(config=parse({{}}), state_dir=__import__("pathlib").Path({str(tmp_path)!r}),
                        config_path=__import__("pathlib").Path({str(tmp_path / "none.toml")!r}))
    async with Runtime.open(settings, channels=True, cron=True) as runtime:
        await runtime.store.ensure("agent:main:main")
    print("psycopg" in sys.modules)

asyncio.run(main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
