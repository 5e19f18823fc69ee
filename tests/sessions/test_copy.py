"""``clawgate store copy`` and ``clawgate store migrate``: an SQLite installation moved to
PostgreSQL (and back) with every table, through the real CLI entry point."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from clawgate import cli
from clawgate.sessions import copy
from clawgate.sessions.channelstore import Delivery
from clawgate.sessions.listing import ListQuery
from clawgate.sessions.schema import SCHEMA_VERSION, migrate
from clawgate.sessions.store import SessionStore
from tests.support.postgres import Cluster

MAIN = "agent:main:main"
DELIVERY = Delivery("webhook", "default", {"to": "alice"})


def test_every_table_of_the_schema_is_copied_or_named_as_skipped(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        migrate(conn, path="x.db")
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
    finally:
        conn.close()
    assert tables - copy.SKIPPED == {t for t, _ in copy.TABLES}


async def _fill(path: Path) -> None:
    async with SessionStore(path) as store:
        for n in range(7):
            await store.ensure(f"agent:main:s{n}", label=f"label {n}")
        await store.admit("r1", MAIN, [{"role": "user", "content": "hello"}],
                          inbound=("webhook", "default", "m-1"), delivery=DELIVERY)
        await store.begin_run("r1", MAIN, [{"role": "user", "content": "hello"}])
        await store.complete_run("r1", MAIN, [{"role": "assistant", "content": "hi there"}],
                                 status="ok", usage={"input": 3, "output": 2, "total": 5})
        await store.channels.set_state("webhook", "default", "offset", {"n": 42})
        await store.channels.request_pairing(
            "webhook", "default", "bob", "Bob", "ABC123", ttl_ms=3_600_000, max_pending=3,
            message_id="m-2", reply=lambda code: {"target": {"to": "bob"}, "text": code})
        await store.channels.decide_pairing("webhook", "ABC123", True, notify="approved")
        await store.channels.commit_part("run-r1", 0, ["pm-1"])
        await store.channels.set_preview("r1", "pv-1")
        await store.cron.add({"id": "job-1", "name": "tick", "enabled": True,
                              "createdAtMs": 1, "updatedAtMs": 1,
                              "state": {"nextRunAtMs": 10}})
        claimed = await store.cron.claim("job-1", "cr-1", 10)
        assert claimed is not None
        await store.cron.finish("cr-1", 11, lambda doc: (doc, {
            "ts": 11, "jobId": "job-1", "action": "finished", "status": "ok"}))


async def _read(location: Path | str) -> tuple[object, ...]:
    async with SessionStore(location) as store:
        listed = await store.list_sessions(ListQuery(limit=100))
        return ([r["key"] for r in listed.rows],
                [(m.id, m.role, m.content) for m in await store.transcript(MAIN)],
                (await store.get_run("r1")).status,  # type: ignore[union-attr]
                await store.channels.seen("webhook", "default", "m-1"),
                sorted(i.text for i in await store.channels.due(channel="webhook",
                                                                account="default")),
                await store.channels.get_state("webhook", "default", "offset"),
                await store.channels.allowed("webhook", "default", "bob"),
                await store.channels.receipts("run-r1"),
                await store.channels.preview("r1"),
                await store.cron.get("job-1"),
                await store.cron.runs("job-1"),
                (await store.usage_cost(0, 2**41))["totals"]["totalTokens"])


async def test_an_sqlite_store_moves_to_postgresql_and_back(
        tmp_path: Path, pg_cluster: Cluster, capsys: pytest.CaptureFixture[str],
        anyio_backend: str) -> None:
    source = tmp_path / "state" / "clawgate.db"
    await _fill(source)
    before = await _read(source)
    assert before[2:9] == ("ok", True, ["ABC123", "approved", "hi there"], {"n": 42},
                           True, {0: ["pm-1"]}, "pv-1")  # every table has something to copy
    assert before[9] is not None and len(before[10]) == 1 and before[11] == 5  # type: ignore
    url = pg_cluster.database(empty=True)
    try:
        assert cli.main(["store", "copy", "--from", f"sqlite:{source}", "--to", url,
                         "--batch", "3"]) == 0
        out = capsys.readouterr().out
        assert "sessions" in out and "counts verified" in out
        assert await _read(url) == before
        async with SessionStore(url) as store:  # new ids continue after the copied ones
            added = await store.append(MAIN, [{"role": "user", "content": "later"}])
            assert added[0].id > max(m[0] for m in before[1])  # type: ignore[attr-defined]

        # A second copy into the same database is refused, and changes nothing.
        assert cli.main(["store", "copy", "--from", str(source), "--to", url]) == 1
        assert "the target is not empty (table sessions has rows)" in capsys.readouterr().err
        async with SessionStore(url) as store:
            assert await store.count() == 8

        back = tmp_path / "back.db"
        assert cli.main(["store", "copy", "--from", url, "--to", f"sqlite:{back}"]) == 0
        capsys.readouterr()
        again = await _read(back)
        assert again[0] == before[0] and again[2:] == before[2:]
        assert len(again[1]) == len(before[1]) + 1  # ... with the message added on PostgreSQL
    finally:
        pg_cluster.drop(url)


def test_store_migrate_creates_the_schema_and_prints_its_version(
        pg_cluster: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = pg_cluster.database(empty=True)
    try:
        assert cli.main(["store", "migrate", "--url", url]) == 0
        assert f"schema version {SCHEMA_VERSION} (postgres)" in capsys.readouterr().out
        assert cli.main(["store", "migrate", "--url", f"sqlite:{tmp_path / 'n.db'}"]) == 0
        assert f"n.db: schema version {SCHEMA_VERSION} (sqlite)" in capsys.readouterr().out
    finally:
        pg_cluster.drop(url)


def test_bad_store_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["store", "migrate", "--url", "mysql://u:hunter2@h/db"]) == 1
    err = capsys.readouterr().err
    assert "must be postgresql://... or sqlite:PATH" in err and "hunter2" not in err
    assert cli.main(["store", "copy", "--from", "a.db", "--to", "a.db"]) == 1
    assert "are the same store" in capsys.readouterr().err
    assert cli.main(["store"]) == 2
