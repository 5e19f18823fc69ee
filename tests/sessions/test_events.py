"""The events log (rows by id, pruned by age, read past a cursor that waits for ids committed
out of order) and the replica registry table, on both backends."""

from __future__ import annotations

import pytest

from clawgate.sessions.events import HOLE_S, Cursor, Row
from clawgate.sessions.store import SessionStore
from tests.sessions.conftest import Clock

pytestmark = pytest.mark.anyio


def _rows(*ids: int) -> list[Row]:
    return [Row(i, "r", "[]") for i in ids]


def test_the_cursor_reads_an_id_committed_late_once_and_gives_up_after_a_while() -> None:
    now = [0.0]
    cursor = Cursor(4, clock=lambda: now[0])
    assert [r.id for r in cursor.take(_rows(6, 7))] == [6, 7]  # 5 not committed yet
    assert cursor.after == 7 and set(cursor.holes) == {5} and cursor.floor == 4
    # The next read starts below the hole: 6 and 7 come again and are not fresh.
    assert [r.id for r in cursor.take(_rows(5, 6, 7, 8))] == [5, 8]
    assert cursor.holes == {} and cursor.floor == 8
    cursor.take(_rows(10))
    now[0] = HOLE_S + 1  # 9 never comes (a rolled-back insert)
    assert cursor.take([]) == [] and cursor.holes == {} and cursor.lost == 1


async def test_the_log_appends_reads_past_an_id_and_prunes_by_age(
        store: SessionStore, clock: Clock) -> None:
    assert await store.events.last_id() == 0
    first = await store.events.append("a", '[{"k": 1}]', ring=store.shared)
    clock.advance(10_000)
    second = await store.events.append("b", "[]", ring=store.shared)
    assert second > first and await store.events.last_id() == second
    assert [(r.id, r.replica, r.body) for r in await store.events.since(0)] == [
        (first, "a", '[{"k": 1}]'), (second, "b", "[]")]
    assert [r.id for r in await store.events.since(first)] == [second]
    assert await store.events.prune(keep_ms=5_000) == 1
    assert [r.id for r in await store.events.since(0)] == [second]


async def test_the_replica_table_keeps_one_row_per_replica(store: SessionStore,
                                                           clock: Clock) -> None:
    table = store.replicas
    await table.beat("r1", host="h", pid=1, version="0.1", started_at=5, owns=["cron"])
    clock.advance(1000)
    await table.beat("r1", host="h", pid=1, version="0.1", started_at=5,
                     owns=["channel.telegram.default", "cron"])
    await table.beat("r2", host="h2", pid=2, version="0.1", started_at=6, owns=[])
    rows = await table.rows()
    assert [(r.id, r.owns) for r in rows] == [
        ("r1", ("channel.telegram.default", "cron")), ("r2", ())]
    assert rows[0].seen_at == rows[1].seen_at and rows[0].started_at == 5
    assert rows[0].wire("r1")["self"] is True and rows[1].wire("r1")["self"] is False
    await table.remove("r1")
    assert [r.id for r in await table.rows()] == ["r2"]
