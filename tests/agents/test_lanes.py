"""Lanes: one active run per session, a global cap on concurrent runs, and per-session order."""

from __future__ import annotations

import asyncio

import pytest

from clawgate.agents.bus import RunEvent
from clawgate.agents.turn import Submission

pytestmark = pytest.mark.anyio

SESSIONS = 8
PER_SESSION = 4


async def test_concurrent_turns_respect_session_lanes_and_the_global_cap(make_engine):
    h = await make_engine(engine={"max_concurrent": 3}, echo={"delay_ms": 15})
    engine = h.engine
    keys = [f"agent:main:lane-{i}" for i in range(SESSIONS)]
    active: dict[str, str] = {}  # session -> run id between its lifecycle start and end
    violations: list[str] = []
    peak = 0
    lifecycle = 0

    def check(event: RunEvent) -> None:
        nonlocal peak, lifecycle
        if event.stream != "lifecycle" or event.data["phase"] == "model":
            return
        lifecycle += 1
        key = event.session_key
        if event.data["phase"] == "start":
            if key in active:
                violations.append(f"{event.run_id} started while {active[key]} ran on {key}")
            running = engine.lanes.active(key)
            if running is None or running.run_id != event.run_id:
                violations.append(f"lanes.active({key}) is not {event.run_id}")
            active[key] = event.run_id
            peak = max(peak, len(active))
        else:
            if active.pop(key, None) != event.run_id:
                violations.append(f"{event.run_id} ended but was not the active run of {key}")

    async def watch(sub) -> None:
        async for event in sub:
            check(event)

    with engine.bus.subscribe(maxsize=100_000) as sub:
        watcher = asyncio.get_running_loop().create_task(watch(sub))
        try:
            jobs = [engine.run(Submission(f"{key} #{n}", session_key=key))
                    for n in range(PER_SESSION) for key in keys]
            results = await asyncio.gather(*jobs)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        while (event := sub.get_nowait()) is not None:  # what the watcher had not taken yet
            check(event)
        assert not sub.overflowed

    assert lifecycle == 2 * SESSIONS * PER_SESSION

    assert [r.status for r in results] == ["ok"] * SESSIONS * PER_SESSION
    assert violations == []
    assert 1 <= peak <= 3
    assert 1 <= engine.lanes.peak_running <= 3
    assert engine.lanes.running == 0
    for key in keys:
        stored = await h.store.transcript(key)
        assert [m.role for m in stored] == ["user", "assistant"] * PER_SESSION
        for user, reply in zip(stored[::2], stored[1::2], strict=True):
            assert reply.content == user.content  # every message followed by its own reply
        assert sorted(m.content for m in stored[::2]) == [f"{key} #{n}" for n in
                                                          range(PER_SESSION)]
    assert h.leases() == 0
