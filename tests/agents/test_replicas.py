"""Several engines (replicas) on one PostgreSQL store, in one process: one active run per
session across them, FIFO by the session's sequence, and a dead replica's runs taken over.

Each harness is a full runtime (its own store threads, replica id and liveness lease) on the
same real database; the kill -9 versions with `clawgate gateway` processes are in
tests/gateway/test_replicas.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from clawgate import config
from clawgate.agents.turn import Submission
from clawgate.runtime import Runtime
from clawgate.sessions.store import SessionStore
from tests.agents.conftest import Harness, build_config, texts
from tests.support.postgres import Cluster

pytestmark = pytest.mark.anyio
KEY = "agent:main:replicas"


async def _replica(tmp_path: Path, url: str, name: str, **engine: Any) -> Harness:
    data = build_config(echo={"delay_ms": 50}, engine=engine)
    data["store"] = {"url": url}
    state = tmp_path / name
    settings = config.Settings(config.parse(data), state_dir=state,
                               config_path=state / "clawgate.toml")
    runtime = Runtime(settings, drain_deadline_s=5.0)
    await runtime.start()
    return Harness(runtime)


@pytest.fixture
def pg_url(pg_cluster: Cluster) -> Any:
    url = pg_cluster.database()
    yield url
    pg_cluster.release(url)


async def test_turns_of_one_session_on_two_replicas_never_overlap_and_keep_fifo(
        tmp_path: Path, pg_url: str) -> None:
    a = await _replica(tmp_path, pg_url, "a")
    b = await _replica(tmp_path, pg_url, "b")
    try:
        assert a.engine.replica is not None and b.engine.replica is not None
        assert a.store.owner != b.store.owner
        turns = []
        for i in range(8):  # admitted alternately on the two replicas, one after the other
            harness = (a, b)[i % 2]
            turns.append(await harness.engine.submit(Submission(f"m{i}", session_key=KEY)))
        results = await asyncio.wait_for(asyncio.gather(*(t.result() for t in turns)), 30)
        assert [r.status for r in results] == ["ok"] * 8
        stored = texts(await a.store.transcript(KEY))
        # user, assistant, user, assistant ...: no turn started while another was running,
        # and in the order the messages were admitted.
        expected = [p for i in range(8) for p in (("user", f"m{i}"), ("assistant", f"m{i}"))]
        assert stored == expected
        both = {r.owner for r in await _runs(pg_url)}
        assert both == {a.store.owner, b.store.owner}  # each replica ran its own turns
    finally:
        await a.close()
        await b.close()


async def test_a_dead_replicas_queued_and_running_runs_are_taken_over_once(
        tmp_path: Path, pg_url: str) -> None:
    a = await _replica(tmp_path, pg_url, "a", takeover_interval_s=0.2)
    try:
        # A replica that died mid-turn: its run is running (input in the transcript) and a
        # second one is queued behind it, both owned by a replica whose lease nobody holds.
        async with SessionStore(pg_url) as dead:
            dead.owner = "dead-replica-1"
            await dead.admit_and_begin("r1", KEY, [{"role": "user", "content": "one"}],
                                       starts=lambda _row: 10)
            await dead.admit("r2", KEY, [{"role": "user", "content": "two"}])
        b = await _replica(tmp_path, pg_url, "b", takeover_interval_s=0.2)
        try:
            async def answered() -> list[tuple[str, Any]]:
                while True:
                    stored = texts(await a.store.transcript(KEY))
                    if len(stored) >= 4:
                        return stored
                    await asyncio.sleep(0.05)

            stored = await asyncio.wait_for(answered(), 15)
            await asyncio.sleep(0.5)  # time for a second (wrong) answer to show up
            stored = texts(await a.store.transcript(KEY))
            assert stored == [("user", "one"), ("assistant", "one"), ("user", "two"),
                              ("assistant", "two")]
            runs = {r.run_id: r for r in await _runs(pg_url)}
            assert runs["r1"].status == runs["r2"].status == "ok"
            owners = {runs["r1"].owner, runs["r2"].owner}
            assert len(owners) == 1 and owners <= {a.store.owner, b.store.owner}
        finally:
            await b.close()
    finally:
        await a.close()


async def test_a_run_taken_over_behind_one_waiting_for_it_does_not_deadlock(
        tmp_path: Path, pg_url: str) -> None:
    """The live replica's own run waits for its claim while a dead replica's run of the session
    is running; the sweeper then gives it the dead run, which queues behind the waiting one in
    the same lane. The claim does not wait for its own replica's runs, so both are answered."""
    b = await _replica(tmp_path, pg_url, "b", takeover_interval_s=0.5)
    try:
        async with SessionStore(pg_url) as dead:
            dead.owner = "dead-replica-2"
            await dead.admit_and_begin("r1", KEY, [{"role": "user", "content": "one"}],
                                       starts=lambda _row: 10)
        turn = await b.engine.submit(Submission("two", session_key=KEY))
        result = await asyncio.wait_for(turn.result(), 15)
        assert result.status == "ok"

        async def both() -> list[Any]:
            while True:
                runs = await _runs(pg_url)
                if all(r.status == "ok" for r in runs):
                    return runs
                await asyncio.sleep(0.05)

        runs = await asyncio.wait_for(both(), 15)
        assert {r.owner for r in runs} == {b.store.owner}
        stored = texts(await b.store.transcript(KEY))
        assert stored == [("user", "one"), ("assistant", "one"), ("user", "two"),
                          ("assistant", "two")]
    finally:
        await b.close()


async def test_a_run_taken_over_from_a_live_replica_is_not_recorded_twice(
        tmp_path: Path, pg_url: str) -> None:
    """The guard behind "answered once": a replica that was taken for dead (cut off from the
    database) may finish its turn, but the run is no longer its own to record."""
    async with SessionStore(pg_url) as one, SessionStore(pg_url) as two:
        one.owner, two.owner = "one", "two"
        await one.admit_and_begin("r1", KEY, [{"role": "user", "content": "hi"}],
                                  starts=lambda _row: 10)
        assert await two.take_over_runs(["one"]) == [
            ("r1", KEY, [{"role": "user", "content": "hi"}], None, True)]
        with pytest.raises(Exception, match="taken over by replica 'two'"):
            await one.complete_run("r1", KEY, [{"role": "assistant", "content": "late"}],
                                   status="ok")
        assert await two.take_over_runs(["one"]) == []  # moved once
        assert await two.claim_run("r1", KEY, [{"role": "user", "content": "hi"}],
                                   history=10) is not None  # running, its own: its context
        await two.complete_run("r1", KEY, [{"role": "assistant", "content": "hi"}],
                               status="ok")
        assert texts(await two.transcript(KEY)) == [("user", "hi"), ("assistant", "hi")]


async def test_a_claim_waits_while_another_replica_runs_the_session(
        tmp_path: Path, pg_url: str) -> None:
    async with SessionStore(pg_url) as one, SessionStore(pg_url) as two:
        one.owner, two.owner = "one", "two"
        await one.admit_and_begin("r1", KEY, [{"role": "user", "content": "a"}],
                                  starts=lambda _row: 10)
        _entry, _created, begun = await two.admit_and_begin(
            "r2", KEY, [{"role": "user", "content": "b"}], starts=lambda _row: 10)
        assert begun is None  # r1 runs on replica one: r2 waits, queued
        assert await two.claim_run("r2", KEY, [{"role": "user", "content": "b"}]) is None
        await one.admit("r3", KEY, [{"role": "user", "content": "c"}])
        await one.complete_run("r1", KEY, [{"role": "assistant", "content": "a"}], status="ok")
        # r3 (replica one) is behind r2 (replica two) in the session's order: it waits.
        assert await one.claim_run("r3", KEY, [{"role": "user", "content": "c"}]) is None
        assert await two.claim_run("r2", KEY, [{"role": "user", "content": "b"}]) == []
        assert texts(await one.transcript(KEY)) == [("user", "a"), ("assistant", "a"),
                                                    ("user", "b")]


async def _runs(url: str) -> list[Any]:
    import psycopg
    from psycopg.rows import namedtuple_row

    with psycopg.connect(url, row_factory=namedtuple_row) as conn:
        return list(conn.execute("SELECT run_id, status, owner, seq FROM runs ORDER BY seq"))


async def test_a_runs_end_rings_session_free_for_another_replicas_queued_run(
        pg_url: str) -> None:
    async with SessionStore(pg_url) as a, SessionStore(pg_url) as b:
        a.owner, b.owner = "replica-a", "replica-b"
        await b.doorbell.start()
        bell = b.doorbell.subscribe("session.free")
        listening = b.doorbell.listening  # type: ignore[attr-defined]
        assert await asyncio.to_thread(listening.wait, 10)
        try:
            reply = [{"role": "assistant", "content": "done"}]
            # Nobody else waits: the end of a run rings nothing.
            await a.admit_and_begin("r0", KEY, [{"role": "user", "content": "zero"}],
                                    starts=lambda _row: 10)
            await a.complete_run("r0", KEY, reply, status="ok")
            assert await bell.wait(1.0) == []
            # B's run queued behind A's: A's end rings the session free at its commit.
            await a.admit_and_begin("r1", KEY, [{"role": "user", "content": "one"}],
                                    starts=lambda _row: 10)
            await b.admit("r2", KEY, [{"role": "user", "content": "two"}])
            await a.complete_run("r1", KEY, reply, status="ok")
            assert await asyncio.wait_for(bell.wait(None), 10) == [KEY]
        finally:
            bell.close()
            await b.doorbell.stop()
