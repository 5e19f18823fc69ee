"""sessions.list: filters, ordering and paging done in SQL (reference §4.3)."""

from __future__ import annotations

import sqlite3

import anyio
import pytest

from clawgate.errors import InvalidRequest
from clawgate.sessions.listing import COUNT_CAP, ListQuery
from clawgate.sessions.store import SessionStore

from .conftest import START_MS, Clock

pytestmark = pytest.mark.anyio
MINUTE = 60_000


async def _seed(store: SessionStore, clock: Clock, *specs: tuple[str, dict[str, object]]) -> None:
    """Create sessions one minute apart, in the given order (the last is the newest)."""
    for key, fields in specs:
        clock.advance(MINUTE)
        await store.ensure(key, **fields)


def _keys(rows: tuple[dict[str, object], ...] | tuple[object, ...]) -> list[str]:
    return [r["key"] for r in rows]  # type: ignore[index]


async def test_newest_first_in_wire_shape(store: SessionStore, clock: Clock) -> None:
    await _seed(
        store, clock,
        ("agent:main:main", {}),
        ("agent:main:telegram:group:-1", {"channel": "telegram", "subject": "Team",
                                          "origin": {"provider": "telegram"}}),
        ("agent:main:telegram:direct:7", {"chat_type": "direct", "label": "Bob",
                                          "display_name": "Bob B", "send_policy": "deny"}),
    )
    result = await store.list_sessions(ListQuery())
    assert _keys(result.rows) == [
        "agent:main:telegram:direct:7", "agent:main:telegram:group:-1", "agent:main:main",
    ]
    dm, group, _ = result.rows
    entry = await store.get("agent:main:telegram:direct:7")
    assert entry is not None
    assert dm == {
        "key": "agent:main:telegram:direct:7", "kind": "direct", "label": "Bob",
        "displayName": "Bob B", "chatType": "direct", "sendPolicy": "deny",
        "updatedAt": START_MS + 3 * MINUTE, "sessionId": entry.session_id,
        "inputTokens": 0, "outputTokens": 0, "totalTokens": 0, "abortedLastRun": False,
    }
    assert group["kind"] == "group" and group["subject"] == "Team"
    assert group["origin"] == {"provider": "telegram"} and group["channel"] == "telegram"
    assert "label" not in group  # None fields are omitted, not null
    assert (result.total, result.has_more, result.next_offset) == (3, False, None)


async def test_global_unknown_and_cron_runs(store: SessionStore, clock: Clock) -> None:
    await _seed(
        store, clock, ("global", {}), ("unknown", {}), ("agent:main:main", {}),
        ("cron:nightly", {}), ("cron:nightly:run:r1", {}),
        ("agent:main:cron:daily", {}), ("agent:main:cron:daily:run:r2", {}),
    )
    plain = await store.list_sessions(ListQuery())
    assert sorted(_keys(plain.rows)) == ["agent:main:cron:daily", "agent:main:main", "cron:nightly"]
    both = await store.list_sessions(ListQuery(include_global=True, include_unknown=True))
    assert {"global", "unknown"} <= set(_keys(both.rows)) and both.total == 5
    kinds = {r["key"]: r["kind"] for r in both.rows}
    assert kinds["global"] == "global" and kinds["unknown"] == "unknown"
    only_global = await store.list_sessions(ListQuery(include_global=True))
    assert "global" in _keys(only_global.rows) and "unknown" not in _keys(only_global.rows)


async def test_agent_filter(store: SessionStore, clock: Clock) -> None:
    await _seed(
        store, clock, ("agent:main:main", {}), ("agent:ops:main", {}),
        ("agent:ops:tg:direct:1", {}), ("agent:opsx:main", {}), ("global", {}),
        ("cron:x", {"agent_id": "ops"}),
    )
    rows = (await store.list_sessions(ListQuery(agent_id=" OPS ", include_global=True))).rows
    assert _keys(rows) == ["agent:ops:tg:direct:1", "agent:ops:main"]


async def test_label_and_spawned_by_are_exact(store: SessionStore, clock: Clock) -> None:
    await _seed(
        store, clock,
        ("agent:main:a", {"label": "work", "spawned_by": "agent:main:main"}),
        ("agent:main:b", {"label": "Work"}),
        ("agent:main:c", {"label": "workshop", "spawned_by": "agent:main:other"}),
    )
    assert _keys((await store.list_sessions(ListQuery(label="work"))).rows) == ["agent:main:a"]
    by = await store.list_sessions(ListQuery(spawned_by="agent:main:main"))
    assert _keys(by.rows) == ["agent:main:a"]


async def test_label_and_spawned_by_indexes_hold_only_sessions_that_have_one(
        tmp_path, clock: Clock) -> None:
    db_path = tmp_path / "sessions.db"  # the plan is SQLite's (PostgreSQL runs the same DDL)
    async with SessionStore(db_path, clock=clock) as store:
        await _seed(store, clock, ("agent:main:a", {"label": "work"}), ("agent:main:b", {}))
        assert _keys((await store.list_sessions(ListQuery(label="work"))).rows) == \
            ["agent:main:a"]
    with sqlite3.connect(db_path) as conn:
        partial = dict(conn.execute(
            "SELECT name, partial FROM pragma_index_list('sessions')").fetchall())
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT key FROM sessions WHERE label = ? "
                            "ORDER BY updated_at DESC, key", ("work",)).fetchall()
    # a turn moves updated_at; a session without a label or parent costs these indexes nothing
    assert partial["sessions_label_list"] == partial["sessions_spawned_by_list"] == 1
    assert "sessions_label_list" in str(plan)


async def test_channel_is_the_channel_or_else_the_last_one(store: SessionStore,
                                                            clock: Clock) -> None:
    await _seed(
        store, clock,
        ("agent:main:telegram:direct:1", {"channel": "telegram"}),
        ("agent:main:main", {"last_channel": "telegram"}),
        ("agent:main:slack:group:c1", {"channel": "slack", "last_channel": "telegram"}),
        ("agent:main:other", {}),
        ("agent:main:telegram:direct:2", {"channel": "telegram"}),
    )
    page = await store.list_sessions(ListQuery(channel="telegram", limit=2))
    assert _keys(page.rows) == ["agent:main:telegram:direct:2", "agent:main:main"]
    assert page.total == 3 and page.has_more and page.next_cursor is not None
    rest = await store.list_sessions(ListQuery(channel="telegram", cursor=page.next_cursor))
    assert _keys(rest.rows) == ["agent:main:telegram:direct:1"] and not rest.has_more
    slack = await store.list_sessions(ListQuery(channel="slack"))
    assert _keys(slack.rows) == ["agent:main:slack:group:c1"]
    assert (await store.list_sessions(ListQuery(channel="discord"))).rows == ()


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("display_name", "Alice Liddell", "liddell"),
        ("label", "Project X", "PROJECT"),
        ("subject", "Ünïcode Grüppe", "grüppe"),
        ("subject", "STRASSE", "straße"),  # casefold, not just lower()
    ],
)
async def test_search_each_field(
    store: SessionStore, clock: Clock, field: str, value: str, needle: str
) -> None:
    await _seed(store, clock, ("agent:main:hit", {field: value}), ("agent:main:miss", {}))
    rows = (await store.list_sessions(ListQuery(search=needle))).rows
    assert _keys(rows) == ["agent:main:hit"]


async def test_search_session_id_and_key(store: SessionStore, clock: Clock) -> None:
    await _seed(store, clock, ("agent:main:telegram:direct:4242", {}), ("agent:main:x", {}))
    target = await store.get("agent:main:x")
    assert target is not None
    by_id = await store.list_sessions(ListQuery(search=target.session_id[-13:].upper()))
    assert _keys(by_id.rows) == ["agent:main:x"]
    by_key = await store.list_sessions(ListQuery(search="TELEGRAM:DIRECT"))
    assert _keys(by_key.rows) == ["agent:main:telegram:direct:4242"]
    assert (await store.list_sessions(ListQuery(search="   "))).total == 2  # blank: no filter


async def test_search_wildcards_are_literal(store: SessionStore, clock: Clock) -> None:
    await _seed(
        store, clock, ("agent:main:a", {"label": "100% done"}), ("agent:main:b", {"label": "1000"}),
        ("agent:main:c", {"label": "a_b"}), ("agent:main:d", {"label": "axb"}),
        ("agent:main:e", {"label": "back\\slash"}),
    )
    assert _keys((await store.list_sessions(ListQuery(search="0%"))).rows) == ["agent:main:a"]
    assert _keys((await store.list_sessions(ListQuery(search="a_b"))).rows) == ["agent:main:c"]
    assert _keys((await store.list_sessions(ListQuery(search="k\\s"))).rows) == ["agent:main:e"]


async def test_active_minutes(store: SessionStore, clock: Clock) -> None:
    await _seed(store, clock, ("agent:main:old", {}), ("agent:main:mid", {}),
                ("agent:main:new", {}))
    now = START_MS + 3 * MINUTE  # "new" was updated now, "mid" 1 min ago, "old" 2 min ago
    q = ListQuery(active_minutes=1, now_ms=now)
    assert _keys((await store.list_sessions(q)).rows) == ["agent:main:new", "agent:main:mid"]
    q = ListQuery(active_minutes=0.5, now_ms=now)
    assert _keys((await store.list_sessions(q)).rows) == ["agent:main:new"]
    clock.now = now + 10 * MINUTE  # without now_ms the store's clock is used
    assert (await store.list_sessions(ListQuery(active_minutes=5))).total == 0


async def test_limit_offset_total(store: SessionStore, clock: Clock) -> None:
    await _seed(store, clock, *((f"agent:main:s{i}", {}) for i in range(7)))
    page = await store.list_sessions(ListQuery(limit=3, offset=0))
    assert _keys(page.rows) == ["agent:main:s6", "agent:main:s5", "agent:main:s4"]
    assert (page.total, page.has_more, page.next_offset, page.limit) == (7, True, 3, 3)
    last = await store.list_sessions(ListQuery(limit=3, offset=6))
    assert _keys(last.rows) == ["agent:main:s0"]
    assert (last.has_more, last.next_offset) == (False, None)
    beyond = await store.list_sessions(ListQuery(offset=50))
    assert beyond.rows == () and beyond.total == 7


async def test_display_model_once_per_row(store: SessionStore, clock: Clock) -> None:
    await _seed(
        store, clock, ("agent:main:a", {"model_provider": "oai", "model": "g4"}),
        ("agent:main:b", {}), ("agent:main:c", {"model": "x"}),
    )
    calls: list[tuple[str | None, str | None]] = []

    def display(provider: str | None, model: str | None) -> tuple[str | None, str | None]:
        calls.append((provider, model))
        return ("openai", "gpt-4") if model == "g4" else (None, None)

    rows = (await store.list_sessions(ListQuery(limit=2), display_model=display)).rows
    assert calls == [(None, "x"), (None, None)]  # only the page's rows
    assert "model" not in rows[0]
    rows = (await store.list_sessions(ListQuery(offset=2), display_model=display)).rows
    assert (rows[0]["modelProvider"], rows[0]["model"]) == ("openai", "gpt-4")


@pytest.mark.parametrize(
    "kwargs", [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"active_minutes": 0}],
)
def test_bad_query_is_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(InvalidRequest):
        ListQuery(**kwargs)  # type: ignore[arg-type]


async def test_five_thousand_sessions_page_in_sql(db_path, clock: Clock) -> None:
    clock.step = 1  # every session gets its own updated_at
    async with SessionStore(db_path, clock=clock) as store:
        async with anyio.create_task_group() as tg:
            for i in range(5000):
                tg.start_soon(
                    lambda i=i: store.ensure(
                        f"agent:{'ops' if i % 2 else 'main'}:s{i:04d}",
                        label="even" if i % 2 == 0 else None,
                        display_name=f"Chat {i:04d}",
                    )
                )
        assert await store.count() == 5000
        calls = 0

        def display(p: str | None, m: str | None) -> tuple[str | None, str | None]:
            nonlocal calls
            calls += 1
            return p, m

        # ensure() order is not creation order under concurrency; rank by updatedAt instead.
        everything = await store.list_sessions(ListQuery(limit=1000))
        updated = [r["updatedAt"] for r in everything.rows]
        assert updated == sorted(updated, reverse=True)
        assert everything.total_capped and everything.total > COUNT_CAP  # a lower bound

        page = await store.list_sessions(ListQuery(limit=25, offset=4980), display_model=display)
        assert len(page.rows) == 20 and page.total == 5000 and not page.has_more
        assert calls == 20
        ops = await store.list_sessions(ListQuery(agent_id="ops", limit=10, offset=2490))
        assert ops.total == 2500 and len(ops.rows) == 10
        assert all(r["key"].startswith("agent:ops:") for r in ops.rows)
        hits = await store.list_sessions(ListQuery(search="chat 012", label="even"))
        assert sorted(_keys(hits.rows)) == [f"agent:main:s{i:04d}" for i in range(120, 130, 2)]


async def test_cursor_pages_walk_the_same_rows_as_offset(store: SessionStore,
                                                         clock: Clock) -> None:
    specs = [(f"agent:main:s{n}", {}) for n in range(23)]
    for key, fields in specs:
        if key != "agent:main:s5":  # s4, s5 and s6 share one updated_at: the key breaks ties
            clock.advance(MINUTE)
        await store.ensure(key, **fields)
    by_offset: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = await store.list_sessions(ListQuery(limit=5, offset=offset))
        by_offset += _keys(page.rows)
        offset = page.next_offset
    by_cursor: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.list_sessions(ListQuery(limit=5, cursor=cursor))
        by_cursor += _keys(page.rows)
        pages += 1
        assert page.next_offset is None or cursor is None  # a cursor page has no offset
        if page.next_cursor is None:
            assert page.has_more is False
            break
        assert page.has_more is True
        cursor = page.next_cursor
    assert by_cursor == by_offset and len(by_cursor) == 23 and pages == 5
    clock.advance(MINUTE)
    await store.ensure("agent:main:newest")  # a write between pages: later pages unaffected
    assert _keys((await store.list_sessions(ListQuery(limit=5, cursor=cursor))).rows) == \
        by_offset[20:]


async def test_bad_cursors_are_refused(store: SessionStore) -> None:
    for cursor in ("not a cursor", "WzEsMl0", "e30"):  # junk, [1, 2], {}
        with pytest.raises(InvalidRequest, match="cursor is not a sessions.list nextCursor"):
            await store.list_sessions(ListQuery(cursor=cursor))
    first = await store.list_sessions(ListQuery())
    assert first.next_cursor is None
    with pytest.raises(InvalidRequest, match="cursor and offset cannot be combined"):
        ListQuery(cursor="WzEsImEiXQ", offset=5)


async def test_search_by_index_and_by_scan_agree(store: SessionStore, clock: Clock) -> None:
    await _seed(
        store, clock,
        ("agent:main:telegram:direct:1", {"display_name": "Zoë Ärger"}),
        ("agent:main:telegram:direct:2", {"display_name": "Max 100% Power"}),
        ("agent:main:slack:group:c1", {"subject": "Weekly_sync"}),
    )

    async def found(needle: str) -> list[str]:
        return _keys((await store.list_sessions(ListQuery(search=needle))).rows)

    assert await found("zoË") == ["agent:main:telegram:direct:1"]  # non-ASCII: scanned
    assert await found("ärg") == ["agent:main:telegram:direct:1"]
    assert await found("0%") == ["agent:main:telegram:direct:2"]  # short: scanned, % literal
    assert await found("100% p") == ["agent:main:telegram:direct:2"]  # index
    assert await found('"') == [] and await found('x"y') == []  # quotes are literal
    assert await found("weekly_SYNC") == ["agent:main:slack:group:c1"]
    assert await found("telegram:direct") == ["agent:main:telegram:direct:2",
                                              "agent:main:telegram:direct:1"]
    assert await found("nowhere at all") == []


async def test_the_total_is_capped(store: SessionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from clawgate.sessions import listing

    monkeypatch.setattr(listing, "COUNT_CAP", 4)
    for n in range(7):
        await store.ensure(f"agent:main:s{n}")
    page = await store.list_sessions(ListQuery(limit=2))
    assert (page.total, page.total_capped, page.has_more) == (4, True, True)
    deep = await store.list_sessions(ListQuery(limit=2, offset=4))
    assert (deep.total, deep.total_capped, deep.has_more) == (7, True, True)  # >= end + 1
    small = await store.list_sessions(ListQuery(limit=2, search="s3"))
    assert (small.total, small.total_capped) == (1, False)
