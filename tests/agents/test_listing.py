"""sessions.list while turns run: no metadata scans, no plugin loads, models shown normalized."""

from __future__ import annotations

import asyncio

import pytest

from clawgate.agents.turn import Submission
from clawgate.sessions.listing import ListQuery

pytestmark = pytest.mark.anyio
WATCHED = ("plugin_metadata_scans_total", "plugin_loads_on_request_total",
           "plugin_generation_builds_total")


async def test_listing_during_32_turns_scans_and_loads_nothing(make_engine):
    h = await make_engine(echo={"delay_ms": 5}, engine={"max_concurrent": 8})
    before = {name: h.host.metrics.counters()[name] for name in WATCHED}
    keys = [f"agent:main:chat-{i}" for i in range(32)]
    turns = asyncio.gather(*(h.engine.run(Submission(f"hello {k}", session_key=k)) for k in keys))
    listings = 0
    totals = []
    while not turns.done():
        page = await h.engine.list_sessions(ListQuery(limit=50))
        totals.append(page.total)
        listings += 1
    results = await turns

    assert [r.status for r in results] == ["ok"] * 32
    assert listings > 0
    assert totals == sorted(totals)  # sessions only ever appear
    after = {name: h.host.metrics.counters()[name] for name in WATCHED}
    assert after == before
    final = await h.engine.list_sessions(ListQuery(limit=50))
    assert final.total == 32
    assert {row["key"] for row in final.rows} == set(keys)
    assert {(row.get("modelProvider"), row.get("model")) for row in final.rows} == {
        ("echo", "echo")}


async def test_rows_show_models_through_the_snapshot_policy(make_engine):
    h = await make_engine()
    await h.store.ensure("agent:main:legacy", model_provider="echo", model="echo/echo-large")
    await h.store.ensure("agent:main:other", model_provider="unknown-co", model="echo/x")

    page = await h.engine.list_sessions(ListQuery(limit=50))

    rows = {row["key"]: row for row in page.rows}
    # the echo plugin's stripPrefixes ["echo/"] applies to provider echo only
    assert (rows["agent:main:legacy"]["modelProvider"],
            rows["agent:main:legacy"]["model"]) == ("echo", "echo-large")
    assert rows["agent:main:other"]["model"] == "echo/x"
    stored = await h.store.get("agent:main:legacy")
    assert stored is not None and stored.model == "echo/echo-large"  # display only
