"""store.cron on a real SQLite file: round trips, claims, finishing, history bounds, recovery."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from clawgate.cron.jobs import CronJob, new_job
from clawgate.errors import InvalidRequest, Unavailable
from clawgate.sessions.cronstore import Claim, Doc
from clawgate.sessions.schema import SCHEMA_VERSION, migrate
from clawgate.sessions.store import SessionStore

from .conftest import MINUTE, START_MS, every

pytestmark = pytest.mark.anyio


def job_doc(job_id: str, ms: int = MINUTE, **extra: Any) -> Doc:
    return new_job(every(ms, **extra), now_ms=START_MS, job_id=job_id).wire()


def entry(job_id: str, status: str = "ok", **fields: Any) -> Doc:
    return {"ts": START_MS, "jobId": job_id, "action": "finished", "status": status, **fields}


async def test_round_trip_through_a_reopened_file(db_path: Path) -> None:
    doc = job_doc("a")
    async with SessionStore(db_path) as store:
        assert await store.cron.add(doc) == doc
    async with SessionStore(db_path) as store:
        assert await store.cron.get("a") == doc
        assert CronJob.from_doc(await store.cron.get("a") or {}).id == "a"
        assert await store.cron.list() == [doc]
        assert await store.cron.count() == 1
        assert await store.cron.get("nope") is None


async def test_duplicate_ids_and_the_job_limit_are_refused(store: SessionStore) -> None:
    await store.cron.add(job_doc("a"))
    with pytest.raises(InvalidRequest, match="already exists"):
        await store.cron.add(job_doc("a"))
    with pytest.raises(Unavailable, match="limit is 1"):
        await store.cron.add(job_doc("b"), max_jobs=1)
    assert await store.cron.count() == 1


async def test_list_orders_by_next_run_and_filters_disabled(store: SessionStore) -> None:
    await store.cron.add(job_doc("late", 5 * MINUTE))
    await store.cron.add(job_doc("soon", MINUTE))
    await store.cron.add({**job_doc("off"), "enabled": False, "state": {}})
    assert [d["id"] for d in await store.cron.list()] == ["soon", "late", "off"]
    assert [d["id"] for d in await store.cron.list(include_disabled=False)] == ["soon", "late"]
    assert [d["id"] for d in await store.cron.list(limit=1, offset=1)] == ["late"]


async def test_update_runs_the_change_in_one_transaction(store: SessionStore) -> None:
    await store.cron.add(job_doc("a"))
    new = await store.cron.update("a", lambda d: {**d, "name": "renamed"})
    assert new["name"] == "renamed" and (await store.cron.get("a") or {})["name"] == "renamed"

    def refuse(doc: Doc) -> Doc:
        raise InvalidRequest("no")

    with pytest.raises(InvalidRequest, match="no"):
        await store.cron.update("a", refuse)
    with pytest.raises(InvalidRequest, match="unknown cron job id: b"):
        await store.cron.update("b", lambda d: d)
    with pytest.raises(InvalidRequest, match="id cannot change"):
        await store.cron.update("a", lambda d: {**d, "id": "z"})
    assert (await store.cron.get("a") or {})["name"] == "renamed"


async def test_claim_is_exclusive_and_respects_due(store: SessionStore) -> None:
    await store.cron.add(job_doc("a"))
    due_at = START_MS + MINUTE
    assert await store.cron.claim("a", "r0", due_at - 1) is None  # not due yet
    claimed = await store.cron.claim("a", "r1", due_at)
    assert claimed is not None and claimed["state"]["runningAtMs"] == due_at
    assert await store.cron.claim("a", "r2", due_at, force=True) is None  # already running
    assert await store.cron.due(due_at) == []
    assert await store.cron.claim("missing", "r3", due_at, force=True) is None


async def test_force_claims_a_disabled_job(store: SessionStore) -> None:
    await store.cron.add({**job_doc("a"), "enabled": False})
    assert await store.cron.claim("a", "r1", START_MS) is None
    assert await store.cron.claim("a", "r1", START_MS, force=True) is not None


async def test_finish_records_the_run_and_releases_the_claim(store: SessionStore) -> None:
    await store.cron.add(job_doc("a"))
    await store.cron.claim("a", "r1", START_MS + MINUTE)
    seen: list[Doc | None] = []

    def apply(doc: Doc | None) -> tuple[Doc | None, Doc]:
        seen.append(doc)
        assert doc is not None
        return ({**doc, "state": {**doc["state"], "nextRunAtMs": START_MS + 2 * MINUTE,
                                  "lastStatus": "ok"}}, entry("a", summary="fine"))

    after = await store.cron.finish("r1", START_MS + MINUTE + 5, apply)
    assert seen[0] is not None and "runningAtMs" not in seen[0]["state"]
    assert after is not None and "runningAtMs" not in after["state"]
    assert after["state"]["nextRunAtMs"] == START_MS + 2 * MINUTE
    assert await store.cron.runs("a") == [entry("a", summary="fine")]
    with pytest.raises(InvalidRequest, match="already finished"):
        await store.cron.finish("r1", START_MS, apply)
    with pytest.raises(InvalidRequest, match="no cron run"):
        await store.cron.finish("r9", START_MS, apply)


async def test_finish_can_delete_the_job(store: SessionStore) -> None:
    await store.cron.add(job_doc("a"))
    await store.cron.claim("a", "r1", START_MS, force=True)
    assert await store.cron.finish("r1", START_MS, lambda d: (None, entry("a"))) is None
    assert await store.cron.get("a") is None and await store.cron.runs("a") == []


async def test_a_job_removed_while_running_finishes_quietly(store: SessionStore) -> None:
    await store.cron.add(job_doc("a"))
    await store.cron.claim("a", "r1", START_MS, force=True)
    assert await store.cron.remove("a") is True
    got: list[Doc | None] = []
    await store.cron.finish("r1", START_MS, lambda d: (got.append(d), (None, entry("a")))[1])
    assert got == [None] and await store.cron.runs("a") == []
    assert await store.cron.remove("a") is False


async def test_history_keeps_the_newest_runs(store: SessionStore) -> None:
    await store.cron.add(job_doc("a"))
    for i in range(7):
        await store.cron.claim("a", f"r{i}", START_MS, force=True)
        await store.cron.finish(f"r{i}", START_MS + i, lambda d, i=i: (d, entry("a", ts=i)),
                                keep=3)
    assert [e["ts"] for e in await store.cron.runs("a")] == [6, 5, 4]
    assert [e["ts"] for e in await store.cron.runs("a", limit=1, offset=1)] == [5]


async def test_due_and_reschedule(store: SessionStore) -> None:
    await store.cron.add(job_doc("a", MINUTE))
    await store.cron.add(job_doc("b", 2 * MINUTE))
    assert [d["id"] for d in await store.cron.due(START_MS + 2 * MINUTE)] == ["a", "b"]
    assert await store.cron.reschedule({"a": START_MS + 10 * MINUTE, "ghost": 1}) == 1
    assert [d["id"] for d in await store.cron.due(START_MS + 2 * MINUTE)] == ["b"]
    assert (await store.cron.get("a") or {})["state"]["nextRunAtMs"] == START_MS + 10 * MINUTE


async def test_recover_closes_claims_left_by_a_dead_process(db_path: Path) -> None:
    async with SessionStore(db_path) as store:
        await store.cron.add(job_doc("a"))
        await store.cron.add(job_doc("b"))
        await store.cron.claim("a", "r1", START_MS + MINUTE)
        await store.cron.delivering("r1", START_MS + MINUTE + 3)
        # the process dies here: no finish
    async with SessionStore(db_path) as store:
        claims: list[Claim] = []

        def apply(doc: Doc, claim: Claim) -> tuple[Doc | None, Doc]:
            claims.append(claim)
            return doc, entry(doc["id"], "error", error="interrupted")

        assert await store.cron.recover(START_MS + 9 * MINUTE, apply) == 1
        assert claims == [Claim("r1", "a", START_MS + MINUTE, START_MS + MINUTE + 3)]
        assert "runningAtMs" not in (await store.cron.get("a") or {})["state"]
        assert await store.cron.runs("a") == [entry("a", "error", error="interrupted")]
        assert await store.cron.recover(START_MS + 9 * MINUTE, apply) == 0
        assert await store.cron.claim("a", "r2", START_MS + 9 * MINUTE) is not None


@pytest.mark.sqlite_only  # reads the SQLite file itself
async def test_migration_to_the_cron_tables_keeps_older_data(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        migrate(conn, path=db_path, target=3)
        conn.execute("INSERT INTO sessions (key, agent_id, session_id, created_at, updated_at, "
                     "started_at) VALUES ('agent:main:main', 'main', 's', 1, 1, 1)")
    finally:
        conn.close()
    async with SessionStore(db_path) as store:
        assert await store.get("agent:main:main") is not None
        await store.cron.add(job_doc("a"))
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
    finally:
        conn.close()
