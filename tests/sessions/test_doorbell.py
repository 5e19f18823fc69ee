"""The doorbell: rings between processes on PostgreSQL (sent at commit, heard by every
listener), the in-process doorbell of SQLite, bounded subscriptions, clear errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clawgate.sessions import doorbell
from clawgate.sessions.doorbell import LocalDoorbell, PgDoorbell
from clawgate.sessions.store import SessionStore
from tests.support.postgres import Cluster

pytestmark = pytest.mark.anyio


async def _listening(bell: PgDoorbell) -> None:
    for _ in range(200):
        if bell.listening.is_set():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the doorbell never listened")


async def test_a_ring_reaches_every_process_listening_and_only_its_topic(
        pg_cluster: Cluster) -> None:
    url = pg_cluster.database()
    try:
        async with SessionStore(url) as a, SessionStore(url) as b:
            bell_a, bell_b = a.doorbell, b.doorbell
            assert isinstance(bell_a, PgDoorbell) and isinstance(bell_b, PgDoorbell)
            await bell_a.start()
            await bell_b.start()
            try:
                await _listening(bell_a)
                await _listening(bell_b)
                events_b = bell_b.subscribe(doorbell.EVENTS)
                free_b = bell_b.subscribe(doorbell.SESSION_FREE)
                events_a = bell_a.subscribe(doorbell.EVENTS)
                await bell_a.ring(doorbell.EVENTS, "42")
                assert await events_b.wait(5) == ["42"]
                assert await events_a.wait(5) == ["42"]  # the ringer hears itself too
                assert await free_b.wait(0.2) == []  # another topic: nothing, after the wait
                await bell_b.ring(doorbell.SESSION_FREE, "agent:main:main")
                assert await free_b.wait(5) == ["agent:main:main"]
            finally:
                await bell_a.stop()
                await bell_b.stop()
    finally:
        pg_cluster.release(url)


async def test_a_ring_in_a_write_job_goes_out_at_commit_not_before(pg_cluster: Cluster) -> None:
    url = pg_cluster.database()
    try:
        async with SessionStore(url) as store:
            bell = store.doorbell
            assert isinstance(bell, PgDoorbell)
            await bell.start()
            try:
                await _listening(bell)
                sub = bell.subscribe(doorbell.EVENTS)
                text = doorbell.check(doorbell.EVENTS, "7")

                def fails(c: object) -> None:
                    c.execute(doorbell.notify_sql(), (text,))  # type: ignore[attr-defined]
                    raise RuntimeError("rolled back")

                with pytest.raises(RuntimeError):
                    await store._write(fails)
                assert await sub.wait(0.5) == []  # rolled back: never rung
                await store._write(lambda c: c.execute(doorbell.notify_sql(), (text,)))
                assert await sub.wait(5) == ["7"]
            finally:
                await bell.stop()
    finally:
        pg_cluster.release(url)


async def test_sqlite_has_the_in_process_doorbell(tmp_path: Path) -> None:
    async with SessionStore(tmp_path / "c.db") as store:
        bell = store.doorbell
        assert isinstance(bell, LocalDoorbell)
        assert store.shared is False
        sub = bell.subscribe(doorbell.SESSION_FREE)
        await bell.ring(doorbell.SESSION_FREE, "k")
        assert await sub.wait(1) == ["k"]
        sub.close()
        await bell.ring(doorbell.SESSION_FREE, "k")
        assert await sub.wait(0.05) == []


async def test_a_full_subscription_drops_the_oldest_and_says_so() -> None:
    bell = LocalDoorbell()
    sub = bell.subscribe(doorbell.EVENTS, maxsize=3)
    for i in range(5):
        await bell.ring(doorbell.EVENTS, str(i))
    assert sub.missed is True
    assert await sub.wait(1) == ["2", "3", "4"]


def test_bad_topics_and_long_payloads_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="topic 'nope'"):
        doorbell.check("nope", "1")
    with pytest.raises(ValueError, match="at most 512 bytes"):
        doorbell.check(doorbell.EVENTS, "x" * 600)
    with pytest.raises(ValueError, match="topic 'nope'"):
        LocalDoorbell().subscribe("nope")
