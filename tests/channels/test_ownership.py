"""One owner per channel account across replicas: two `clawgate gateway` processes on one
PostgreSQL store with the same Telegram account (against the loopback Bot API fake) — exactly
one polls; after a kill -9 of the owner the other takes the account over, and every inbound
message is answered exactly once (those sent while nobody owned it too)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from clawgate.channels.runtime import lease_name
from clawgate.client import call_remote
from tests.gateway.test_process import GatewayProcess
from tests.support.fakes.telegram import TelegramFake
from tests.support.poll import until
from tests.support.postgres import Cluster

pytestmark = [pytest.mark.anyio,
              pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")]


def _config(fake: TelegramFake) -> str:
    return f"""
[channels.telegram]
bot_token = "{fake.token}"
api_base_url = "{fake.url}"
poll_timeout_s = 1
poll_stall_s = 2
dm_policy = "open"
allow_from = ["*"]

[delivery]
backoff_base_ms = 20
backoff_max_ms = 200
"""


async def _call(gateway: GatewayProcess, method: str) -> Any:
    # The fake serves on this loop: blocking calls go to a thread.
    return await asyncio.to_thread(call_remote, method, {},
                                   url=f"ws://127.0.0.1:{gateway.port}", token=gateway.token,
                                   timeout=10)


async def _account(gateway: GatewayProcess) -> dict[str, Any]:
    status = await _call(gateway, "channels.status")
    row: dict[str, Any] = status["channelAccounts"]["telegram"][0]
    return row




async def test_one_replica_polls_and_the_other_takes_over_after_kill_9(
        pg_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = pg_cluster.database()
    monkeypatch.setenv("CLAWGATE_STORE_URL", url)
    gateways: list[GatewayProcess] = []
    try:
        async with TelegramFake() as fake:
            tg = fake.bot
            ada = tg.user("Ada")
            chat = tg.private_chat(ada)

            def replies(text: str) -> int:
                return sum(m.get("text") == text for m in tg.sent(chat))

            for name in ("a", "b"):
                gateways.append(GatewayProcess(tmp_path / name, config=_config(fake)))
                await asyncio.to_thread(gateways[-1].wait_ready, 30)

            async def one_owner() -> list[GatewayProcess] | None:
                rows = [await _account(g) for g in gateways]
                owners = [g for g, r in zip(gateways, rows, strict=True) if r["owner"]]
                return owners if owners and all(r["ownerReplica"] for r in rows) else None

            owners = await until(one_owner, 20, interval=0.1)
            assert len(owners) == 1
            owner = owners[0]
            follower = next(g for g in gateways if g is not owner)
            await asyncio.sleep(4)  # past a follower's retry: it still does not poll
            rows = {g.port: await _account(g) for g in gateways}
            assert rows[owner.port]["owner"] and rows[owner.port]["running"]
            assert not rows[follower.port]["owner"] and not rows[follower.port]["running"]
            assert rows[follower.port]["ownerReplica"] == rows[owner.port]["ownerReplica"]
            assert len(fake.calls_of("getMe")) == 1  # one monitor ever started
            status = await _call(follower, "status")
            assert len(status["replicas"]) == 2
            owned = {r["id"]: r["owns"] for r in status["replicas"]}
            assert lease_name("telegram", "default") in owned[rows[owner.port]["ownerReplica"]]

            tg.inject_text(chat, ada, "before the kill")
            await until(lambda: replies("before the kill"), 30, interval=0.1)

            owner.proc.kill()  # kill -9: its leases go with its database connections
            await asyncio.to_thread(owner.proc.wait, 10)
            tg.inject_text(chat, ada, "while nobody owns it")
            await until(lambda: _owner(follower), 20, interval=0.1)
            tg.inject_text(chat, ada, "after the takeover")
            await until(lambda: replies("while nobody owns it") and
                        replies("after the takeover"), 30, interval=0.1)
            await asyncio.sleep(2)  # a duplicate would have arrived by now
            assert [replies(t) for t in ("before the kill", "while nobody owns it",
                                         "after the takeover")] == [1, 1, 1]
            assert len(fake.calls_of("getMe")) == 2  # the new owner's monitor
    finally:
        for gateway in gateways:
            gateway.stop()
        pg_cluster.release(url)


async def _owner(gateway: GatewayProcess) -> bool:
    return bool((await _account(gateway))["owner"])


def test_lease_names_fit_the_lease_grammar_and_never_collide() -> None:
    assert lease_name("telegram", "default") == "channel.telegram.default"
    odd = {lease_name("slack", a) for a in ("Team A", "team-a", "team a", "x" * 80)}
    assert len(odd) == 4
    assert all(len(n) <= 64 and n == n.lower() for n in odd)
