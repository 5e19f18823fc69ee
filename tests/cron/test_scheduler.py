"""The scheduler with a fake clock: due runs, wake-ups, concurrency, the watchdog, failures and
auto-disable, manual runs, missed runs at start-up and no double run across a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from clawgate.cron.jobs import CronJob, RunOutcome
from clawgate.cron.schedule import CronInputError, iso_ms, parse_at
from clawgate.cron.scheduler import RunContext, Scheduler
from clawgate.errors import Unavailable
from clawgate.sessions.store import SessionStore
from tests.support.poll import until

from .conftest import MINUTE, START_MS, FakeClock, Recorder, SchedulerFactory, every

pytestmark = pytest.mark.anyio


async def runs_of(store: SessionStore, job_id: str) -> list[dict[str, Any]]:
    return await store.cron.runs(job_id)


async def test_a_due_job_runs_and_is_rescheduled(make_scheduler: SchedulerFactory,
                                                 clock: FakeClock, recorder: Recorder,
                                                 store: SessionStore) -> None:
    events: list[dict[str, Any]] = []
    scheduler = make_scheduler(on_event=events.append)
    await scheduler.start()
    job = await scheduler.add(every(MINUTE))
    await until(lambda: clock.sleeping_until() == [START_MS + MINUTE])
    assert recorder.calls == []
    clock.advance(MINUTE)
    await until(lambda: any(e["action"] == "finished" for e in events))
    assert recorder.ids() == [job.id]
    assert recorder.calls[0][1].started_ms == START_MS + MINUTE
    [entry] = await runs_of(store, job.id)
    assert entry["status"] == "ok" and entry["summary"] == "done"
    assert entry["nextRunAtMs"] == START_MS + 2 * MINUTE
    stored = await scheduler.get(job.id)
    assert stored is not None and stored.state.last_status == "ok"
    assert stored.state.next_run_at_ms == START_MS + 2 * MINUTE
    assert [e["action"] for e in events] == ["added", "started", "finished"]
    clock.advance(MINUTE)
    await until(lambda: len(recorder.calls) == 2)


async def test_a_cron_job_in_a_zone_fires_at_its_wall_time(make_scheduler: SchedulerFactory,
                                                          clock: FakeClock,
                                                          recorder: Recorder) -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    job = await scheduler.add({"name": "standup", "schedule": {
        "kind": "cron", "expr": "30 9 * * 1-5", "tz": "America/New_York"},
        "payload": {"kind": "agentTurn", "message": "standup"}})
    at = parse_at("2026-01-05T14:30:00Z")  # 09:30 EST
    assert job.state.next_run_at_ms == at
    clock.advance(at - clock.now - 1)
    await until(lambda: clock.sleeping_until() == [at])
    assert recorder.calls == []
    clock.advance(1)
    await until(lambda: len(recorder.calls) == 1)


async def test_add_update_and_remove_wake_the_scheduler(make_scheduler: SchedulerFactory,
                                                        clock: FakeClock,
                                                        recorder: Recorder) -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    a = await scheduler.add(every(10 * MINUTE, name="a"))
    b = await scheduler.add(every(10 * MINUTE, name="b"))
    await scheduler.update(a.id, {"schedule": {"kind": "every", "everyMs": MINUTE,
                                               "anchorMs": START_MS}})
    assert await scheduler.remove(b.id) is True
    await until(lambda: clock.sleeping_until() == [START_MS + MINUTE])
    clock.advance(10 * MINUTE)
    await until(lambda: len(recorder.calls) == 1)
    assert recorder.ids() == [a.id]
    assert await scheduler.remove(b.id) is False


async def test_bad_input_is_refused_and_nothing_is_stored(make_scheduler: SchedulerFactory,
                                                          store: SessionStore) -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    with pytest.raises(CronInputError, match="^schedule.tz: unknown time zone 'Mars/Base'"):
        await scheduler.add({"name": "x", "schedule": {"kind": "cron", "expr": "0 * * * *",
                                                       "tz": "Mars/Base"},
                             "payload": {"kind": "agentTurn", "message": "m"}})
    assert await store.cron.count() == 0
    job = await scheduler.add(every(MINUTE))
    with pytest.raises(CronInputError, match="^patch.schedule.expr: "):
        await scheduler.update(job.id, {"schedule": {"kind": "cron", "expr": "bogus"}})
    assert (await store.cron.get(job.id)) == job.wire()
    assert scheduler.status()["jobs"] == 1


async def test_at_most_max_concurrent_runs_at_once(make_scheduler: SchedulerFactory,
                                                   clock: FakeClock,
                                                   recorder: Recorder) -> None:
    recorder.gate = asyncio.Event()
    scheduler = make_scheduler(config={"max_concurrent_runs": 2})
    await scheduler.start()
    for i in range(5):
        await scheduler.add(every(MINUTE, name=f"j{i}"))
    clock.advance(MINUTE)
    await until(lambda: recorder.active == 2)
    assert scheduler.status()["running"] == 2
    recorder.gate.set()
    await until(lambda: len(recorder.calls) == 5 and recorder.active == 0)
    assert recorder.peak == 2


async def test_the_default_is_one_run_at_a_time(make_scheduler: SchedulerFactory,
                                               clock: FakeClock, recorder: Recorder) -> None:
    recorder.gate = asyncio.Event()
    scheduler = make_scheduler()
    await scheduler.start()
    for i in range(4):
        await scheduler.add(every(MINUTE, name=f"j{i}"))
    clock.advance(MINUTE)
    await until(lambda: recorder.active == 1)
    assert scheduler.status()["running"] == 1  # the others were not even launched
    recorder.gate.set()
    await until(lambda: len(recorder.calls) == 4 and recorder.active == 0)
    assert recorder.peak == 1


async def test_the_watchdog_cancels_a_run_past_its_timeout(make_scheduler: SchedulerFactory,
                                                           clock: FakeClock, recorder: Recorder,
                                                           store: SessionStore) -> None:
    recorder.gate = asyncio.Event()  # never set: the run hangs
    scheduler = make_scheduler()
    await scheduler.start()
    job = await scheduler.add(every(10 * MINUTE, payload={"timeoutSeconds": 90}))
    clock.advance(10 * MINUTE)
    await until(lambda: recorder.active == 1)
    clock.advance(89_000)
    await until(lambda: clock.sleeping_until() == [START_MS + 10 * MINUTE + 90_000])
    assert recorder.cancelled == 0
    clock.advance(1_000)
    await until(lambda: recorder.cancelled == 1)
    await until(lambda: scheduler.status()["running"] == 0)
    [entry] = await runs_of(store, job.id)
    assert entry["status"] == "error" and entry["error"] == "timed out after 90 s (watchdog)"


async def test_the_default_watchdog_is_run_timeout_s(make_scheduler: SchedulerFactory,
                                                     clock: FakeClock, recorder: Recorder,
                                                     store: SessionStore) -> None:
    recorder.gate = asyncio.Event()
    scheduler = make_scheduler(config={"run_timeout_s": 5})
    await scheduler.start()
    job = await scheduler.add(every(MINUTE))
    clock.advance(MINUTE)
    await until(lambda: recorder.active == 1)
    clock.advance(5_000)
    await until(lambda: recorder.cancelled == 1)
    await until(lambda: scheduler.status()["running"] == 0)
    assert (await runs_of(store, job.id))[0]["error"] == "timed out after 5 s (watchdog)"


async def test_repeated_failures_disable_the_job_and_tell_the_owner(
        make_scheduler: SchedulerFactory, clock: FakeClock, recorder: Recorder,
        store: SessionStore) -> None:
    told: list[CronJob] = []

    async def notify(job: CronJob) -> None:
        told.append(job)

    def fail(job: CronJob) -> RunOutcome:
        raise RuntimeError("provider down")

    recorder.reply = fail
    scheduler = make_scheduler(config={"failure_threshold": 3}, notify=notify)
    await scheduler.start()
    job = await scheduler.add(every(MINUTE))
    for n in range(1, 4):
        current = await scheduler.get(job.id)
        assert current is not None and current.enabled
        due = current.state.next_run_at_ms
        assert due is not None
        clock.advance(due - clock.now)
        await until(lambda n=n: len(recorder.calls) == n and scheduler.status()["running"] == 0)
    entries = await runs_of(store, job.id)
    assert [e["error"] for e in entries] == ["RuntimeError: provider down"] * 3
    disabled = await scheduler.get(job.id)
    assert disabled is not None and not disabled.enabled
    assert disabled.state.consecutive_errors == 3
    assert disabled.state.auto_disabled is not None
    assert [t.id for t in told] == [job.id] and not told[0].enabled
    clock.advance(10 * 3_600_000)
    await until(lambda: clock.sleeping_until() == [])
    assert len(recorder.calls) == 3
    # Re-enabling starts afresh.
    again = await scheduler.update(job.id, {"enabled": True})
    assert again.enabled and again.state.consecutive_errors == 0
    assert again.state.auto_disabled is None


async def test_errors_back_off_before_the_next_run(make_scheduler: SchedulerFactory,
                                                  clock: FakeClock, recorder: Recorder) -> None:
    recorder.reply = lambda job: RunOutcome("error", error="flaky")
    scheduler = make_scheduler()
    await scheduler.start()
    job = await scheduler.add(every(10_000))
    clock.advance(10_000)
    await until(lambda: len(recorder.calls) == 1 and scheduler.status()["running"] == 0)
    current = await scheduler.get(job.id)
    assert current is not None
    assert current.state.next_run_at_ms == START_MS + 10_000 + 30_000  # not +10 s


async def test_run_now_due_and_force(make_scheduler: SchedulerFactory, clock: FakeClock,
                                     recorder: Recorder) -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    job = await scheduler.add(every(10 * MINUTE))
    assert (await scheduler.run_now(job.id, "due")).reason == "not-due"
    forced = await scheduler.run_now(job.id, "force")
    assert forced.ran and forced.entry is not None and forced.entry["status"] == "ok"
    assert (await scheduler.run_now("nope", "force")).reason == "not-found"
    with pytest.raises(CronInputError, match="^mode: "):
        await scheduler.run_now(job.id, "later")  # type: ignore[arg-type]
    # After a forced run the job's schedule goes on: 10 minutes after the forced start.
    current = await scheduler.get(job.id)
    assert current is not None and current.state.next_run_at_ms == START_MS + 10 * MINUTE
    clock.advance(10 * MINUTE)
    await until(lambda: len(recorder.calls) == 2)


async def test_run_now_on_a_running_job_is_refused(make_scheduler: SchedulerFactory,
                                                   clock: FakeClock, recorder: Recorder) -> None:
    recorder.gate = asyncio.Event()
    scheduler = make_scheduler(config={"max_concurrent_runs": 4})
    await scheduler.start()
    job = await scheduler.add(every(MINUTE))
    clock.advance(MINUTE)
    await until(lambda: recorder.active == 1)
    assert (await scheduler.run_now(job.id, "force")).reason == "already-running"
    recorder.gate.set()
    await until(lambda: scheduler.status()["running"] == 0)
    assert len(recorder.calls) == 1


async def test_a_job_edited_while_it_runs_keeps_the_edit(make_scheduler: SchedulerFactory,
                                                         clock: FakeClock, recorder: Recorder,
                                                         store: SessionStore) -> None:
    recorder.gate = asyncio.Event()
    scheduler = make_scheduler()
    await scheduler.start()
    job = await scheduler.add(every(MINUTE))
    clock.advance(MINUTE)
    await until(lambda: recorder.active == 1)
    await scheduler.update(job.id, {"name": "renamed",
                                    "schedule": {"kind": "every", "everyMs": 5 * MINUTE}})
    recorder.gate.set()
    await until(lambda: scheduler.status()["running"] == 0)
    current = await scheduler.get(job.id)
    assert current is not None and current.name == "renamed"
    assert current.state.last_status == "ok"
    assert current.state.next_run_at_ms == START_MS + MINUTE + 5 * MINUTE


async def test_a_past_one_shot_runs_once_and_is_deleted(make_scheduler: SchedulerFactory,
                                                        clock: FakeClock, recorder: Recorder,
                                                        store: SessionStore) -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    job = await scheduler.add({"name": "once", "schedule": {"kind": "at",
                                                            "at": iso_ms(START_MS - MINUTE)},
                               "payload": {"kind": "agentTurn", "message": "now"}})
    await until(lambda: len(recorder.calls) == 1)
    await until(lambda: scheduler.status()["running"] == 0)
    assert await store.cron.get(job.id) is None
    clock.advance(24 * 3_600_000)
    await until(lambda: clock.sleeping_until() == [])
    assert len(recorder.calls) == 1


async def test_an_undelivered_one_shot_stays_disabled(make_scheduler: SchedulerFactory,
                                                      recorder: Recorder) -> None:
    recorder.reply = lambda job: RunOutcome("ok", delivery_status="not-delivered",
                                            delivery_error="no target")
    scheduler = make_scheduler()
    await scheduler.start()
    job = await scheduler.add({"name": "once", "schedule": {"kind": "at",
                                                            "at": iso_ms(START_MS)},
                               "payload": {"kind": "agentTurn", "message": "now"},
                               "delivery": {"mode": "announce", "channel": "telegram"}})
    await until(lambda: len(recorder.calls) == 1 and scheduler.status()["running"] == 0)
    kept = await scheduler.get(job.id)
    assert kept is not None and not kept.enabled
    assert kept.state.last_delivery_status == "not-delivered"
    assert kept.state.last_delivery_error == "no target"


async def test_missed_runs_at_start_up_are_rescheduled_not_replayed(
        make_scheduler: SchedulerFactory, clock: FakeClock, recorder: Recorder) -> None:
    first = make_scheduler()
    await first.start()
    hourly = await first.add({"name": "h", "schedule": {"kind": "cron", "expr": "0 * * * *",
                                                        "tz": "UTC", "staggerMs": 0},
                              "payload": {"kind": "agentTurn", "message": "m"}})
    ev = await first.add(every(10 * MINUTE))
    once = await first.add({"name": "o", "schedule": {"kind": "at",
                                                      "at": iso_ms(START_MS + 30 * MINUTE)},
                            "payload": {"kind": "agentTurn", "message": "m"}})
    await first.stop()
    clock.advance(10 * 3_600_000 + 5 * MINUTE)  # the gateway was down for 10 hours
    second = make_scheduler()
    await second.start()
    await until(lambda: len(recorder.calls) == 1 and second.status()["running"] == 0)
    assert recorder.ids() == [once.id]  # the one-shot runs once; nothing else replays
    h = await second.get(hourly.id)
    e = await second.get(ev.id)
    assert h is not None and h.state.next_run_at_ms == START_MS + 11 * 3_600_000
    assert e is not None and e.state.next_run_at_ms == START_MS + 10 * 3_600_000 + 10 * MINUTE


async def test_no_double_run_across_a_restart(db_path: Path, clock: FakeClock,
                                              recorder: Recorder) -> None:
    async with SessionStore(db_path) as store:
        first = Scheduler(store, recorder, clock=clock)
        await first.start()
        job = await first.add(every(MINUTE))
        await first.stop()
        # A process claims the run and dies before it ends (nothing tells the store).
        assert await store.cron.claim(job.id, "dead-run", START_MS + MINUTE) is not None
    clock.advance(3 * MINUTE + 30_000)
    async with SessionStore(db_path) as store:  # the restart
        live = Scheduler(store, recorder, clock=clock)
        await live.start()
        try:
            [entry] = await store.cron.runs(job.id)
            assert entry["status"] == "error"
            assert entry["error"] == "interrupted: the gateway stopped during the run"
            current = await live.get(job.id)
            assert current is not None and current.state.running_at_ms is None
            assert current.state.consecutive_errors == 1
            assert recorder.calls == []  # neither replayed nor run twice
            due = current.state.next_run_at_ms
            assert due is not None and due > clock.now
            clock.advance(due - clock.now)
            await until(lambda: len(recorder.calls) == 1 and live.status()["running"] == 0)
        finally:
            await live.stop()


async def test_a_claimed_job_does_not_run_twice(store: SessionStore, clock: FakeClock,
                                                recorder: Recorder) -> None:
    scheduler = Scheduler(store, recorder, clock=clock)
    await scheduler.start()
    try:
        job = await scheduler.add(every(MINUTE))
        # Another holder (say a second gateway on the same file) claims it first.
        assert await store.cron.claim(job.id, "elsewhere", START_MS + MINUTE) is not None
        clock.advance(MINUTE)
        await until(lambda: clock.sleeping_until() == [])
        assert (await scheduler.run_now(job.id, "force")).reason == "already-running"
        assert recorder.calls == []
    finally:
        await scheduler.stop()


async def test_stop_interrupts_runs_and_records_them(store: SessionStore, clock: FakeClock,
                                                     recorder: Recorder) -> None:
    recorder.gate = asyncio.Event()
    scheduler = Scheduler(store, recorder, clock=clock)
    await scheduler.start()
    job = await scheduler.add(every(MINUTE))
    clock.advance(MINUTE)
    await until(lambda: recorder.active == 1)
    await scheduler.stop()
    assert recorder.cancelled == 1
    [entry] = await store.cron.runs(job.id)
    assert entry["error"] == "interrupted: the gateway stopped during the run"
    current = await store.cron.get(job.id)
    assert current is not None and "runningAtMs" not in current["state"]
    with pytest.raises(Unavailable):
        await scheduler.run_now(job.id)


async def test_delivering_is_recorded_for_one_shots(db_path: Path, clock: FakeClock) -> None:
    started = asyncio.Event()

    async def deliver_then_hang(job: CronJob, ctx: RunContext) -> RunOutcome:
        await ctx.delivering()
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with SessionStore(db_path) as store:
        scheduler = Scheduler(store, deliver_then_hang, clock=clock)
        await scheduler.start()
        job = await scheduler.add({"name": "o", "schedule": {"kind": "at",
                                                             "at": iso_ms(START_MS)},
                                   "payload": {"kind": "agentTurn", "message": "m"}})
        await started.wait()
        await scheduler.stop()
        kept = await store.cron.get(job.id)
        assert kept is not None and kept["enabled"] is False  # not replayed
        assert kept["state"]["lastDeliveryStatus"] == "unknown"


async def test_disabled_cron_runs_nothing_on_its_own(make_scheduler: SchedulerFactory,
                                                     recorder: Recorder,
                                                     store: SessionStore) -> None:
    scheduler = make_scheduler(config={"enabled": False, "max_concurrent_runs": 2})
    await scheduler.start()
    due = await scheduler.add({"name": "due", "schedule": {"kind": "at", "at": iso_ms(START_MS)},
                               "payload": {"kind": "agentTurn", "message": "m"}})
    other = await scheduler.add(every(MINUTE))
    # A manual run goes through the same pass that would have launched the due job.
    assert (await scheduler.run_now(other.id, "force")).ran
    assert recorder.ids() == [other.id] and scheduler.status()["enabled"] is False
    assert (await store.cron.get(due.id) or {})["state"]["nextRunAtMs"] == START_MS
