"""Jobs: cron.add and cron.update validation and merge rules, the next run of a job, and what a
finished run does to it (backoff, auto-disable, one-shot deletion)."""

from __future__ import annotations

from typing import Any

import pytest

from clawgate.cron.jobs import (
    CronJob,
    RunOutcome,
    apply_outcome,
    backoff_ms,
    interrupted,
    job_id_of,
    new_job,
    next_run_at,
    patch_job,
    run_entry,
    session_key,
)
from clawgate.cron.schedule import CronInputError, parse_at

from .conftest import MINUTE, START_MS, every

NOW = START_MS


def isolated(schedule: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "report", "schedule": schedule,
            "payload": {"kind": "agentTurn", "message": "write the report"}, **extra}


def main_job(schedule: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "remind", "schedule": schedule, "sessionTarget": "main",
            "payload": {"kind": "systemEvent", "text": "stand up"}, **extra}


HOURLY = {"kind": "cron", "expr": "0 * * * *", "tz": "UTC"}


def test_new_job_has_openclaw_wire_shape() -> None:
    job = new_job(isolated({"kind": "cron", "expr": "0 9 * * 1-5", "tz": "Europe/Berlin"}),
                  now_ms=NOW, job_id="j1")
    assert job.wire() == {
        "id": "j1", "name": "report", "enabled": True, "createdAtMs": NOW, "updatedAtMs": NOW,
        "schedule": {"kind": "cron", "expr": "0 9 * * 1-5", "tz": "Europe/Berlin"},
        "sessionTarget": "isolated", "wakeMode": "now",
        "payload": {"kind": "agentTurn", "message": "write the report"},
        "state": {"nextRunAtMs": parse_at("2026-01-05T08:00:00Z"), "consecutiveErrors": 0},
    }
    assert CronJob.from_doc(job.wire()) == job


def test_defaults_follow_openclaw() -> None:
    at = new_job(main_job({"kind": "at", "at": "2026-02-01T09:00:00Z"}), now_ms=NOW)
    assert at.delete_after_run is True and at.session_target == "main"
    ev = new_job(every(MINUTE), now_ms=NOW)
    assert ev.schedule.anchor_ms == NOW  # type: ignore[union-attr]
    assert ev.state.next_run_at_ms == NOW + MINUTE
    assert new_job(isolated(HOURLY), now_ms=NOW).schedule.stagger_ms == 300_000  # type: ignore[union-attr]
    assert new_job(isolated({"kind": "cron", "expr": "0 9 * * *"}),
                   now_ms=NOW).schedule.stagger_ms is None  # type: ignore[union-attr]
    assert new_job(isolated({**HOURLY, "staggerMs": 0}),
                   now_ms=NOW).schedule.stagger_ms == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(("params", "field"), [
    (isolated({"kind": "cron", "expr": "0 * * * *", "tz": "Mars/Base"}), "schedule.tz"),
    (isolated({"kind": "cron", "expr": "every day"}), "schedule.expr"),
    (isolated({"kind": "every", "everyMs": 0}), "schedule.everyMs"),
    (isolated({"kind": "every", "everyMs": 1.5}), "schedule.everyMs"),
    (isolated({"kind": "at", "at": 1767571200000}), "schedule.at"),
    (isolated({"kind": "hourly"}), "schedule"),
    (isolated(HOURLY, sessionTarget="main"), "payload.kind"),
    (main_job(HOURLY, sessionTarget="isolated"), "payload.kind"),
    (main_job(HOURLY, delivery={"mode": "announce", "channel": "telegram"}), "delivery.mode"),
    (isolated(HOURLY, delivery={"mode": "webhook"}), "delivery.to"),
    (isolated(HOURLY, delivery={"mode": "webhook", "to": "ftp://x"}), "delivery.to"),
    (isolated(HOURLY, delivery={"mode": "email"}), "delivery.mode"),
    (isolated(HOURLY, wakeMode="later"), "wakeMode"),
    (isolated(HOURLY, enabled="yes"), "enabled"),
    (isolated(HOURLY, name="   "), "name"),
    (isolated(HOURLY, colour="red"), "colour"),
    ({"schedule": HOURLY, "payload": {"kind": "agentTurn", "message": "x"}}, "name"),
    (isolated(HOURLY, payload={"kind": "agentTurn", "message": ""}), "payload.message"),
    (isolated(HOURLY, payload={"kind": "agentTurn", "message": "x", "timeoutSeconds": -1}),
     "payload.timeoutSeconds"),
    (isolated(HOURLY, agentId="ghost"), "agentId"),
])
def test_bad_add_params_are_refused_naming_the_field(params: dict[str, Any], field: str) -> None:
    with pytest.raises(CronInputError) as err:
        new_job(params, now_ms=NOW, agents={"main", "work"})
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")
    assert err.value.method == "cron.add"


def test_tz_error_message() -> None:
    with pytest.raises(CronInputError, match="^schedule.tz: unknown time zone 'Mars/Base'$"):
        new_job(isolated({"kind": "cron", "expr": "0 * * * *", "tz": "Mars/Base"}), now_ms=NOW)


def test_patch_merges_like_openclaw() -> None:
    job = new_job(isolated(HOURLY, delivery={"mode": "announce", "channel": "telegram",
                                             "to": "42"}, agentId="work"), now_ms=NOW)
    later = NOW + 5 * MINUTE
    patched = patch_job(job, {"name": "renamed", "payload": {"kind": "agentTurn", "model": "m"},
                              "delivery": {"to": "43"}, "agentId": None}, now_ms=later)
    assert patched.name == "renamed" and patched.updated_at_ms == later
    assert patched.payload.wire() == {"kind": "agentTurn", "message": "write the report",
                                      "model": "m"}
    assert patched.delivery is not None and patched.delivery.wire() == {
        "mode": "announce", "channel": "telegram", "to": "43"}
    assert patched.agent_id is None
    assert patched.state.next_run_at_ms == job.state.next_run_at_ms  # schedule untouched
    # A new cron expression without staggerMs keeps the previous one's.
    moved = patch_job(job, {"schedule": {"kind": "cron", "expr": "0 */2 * * *"}}, now_ms=later)
    assert moved.schedule.stagger_ms == 300_000  # type: ignore[union-attr]
    # Switching to main drops channel delivery.
    switched = patch_job(job, {"sessionTarget": "main",
                               "payload": {"kind": "systemEvent", "text": "hi"}}, now_ms=later)
    assert switched.delivery is None and switched.session_target == "main"


@pytest.mark.parametrize(("patch", "field"), [
    ({"schedule": {"kind": "cron", "expr": "0 * * * *", "tz": "Mars/Base"}},
     "patch.schedule.tz"),
    ({"payload": {"kind": "systemEvent"}}, "patch.payload.text"),
    ({"sessionTarget": "main"}, "payload.kind"),
    ({"delivery": {"mode": "webhook"}}, "patch.delivery.to"),
    ({"state": {"consecutiveErrors": 0}}, "patch.state"),
    ({"enabled": 1}, "patch.enabled"),
])
def test_bad_patches_are_refused_and_change_nothing(patch: dict[str, Any], field: str) -> None:
    job = new_job(isolated(HOURLY), now_ms=NOW)
    before = job.wire()
    with pytest.raises(CronInputError) as err:
        patch_job(job, patch, now_ms=NOW + 1)
    assert err.value.field == field
    assert job.wire() == before


def test_disable_and_reenable() -> None:
    job = new_job(every(MINUTE), now_ms=NOW)
    off = patch_job(job, {"enabled": False}, now_ms=NOW + 1)
    assert off.state.next_run_at_ms is None and next_run_at(off, NOW) is None
    failed = off.model_copy(update={"state": off.state.model_copy(
        update={"consecutive_errors": 7})})
    on = patch_job(failed, {"enabled": True}, now_ms=NOW + 10 * MINUTE + 1)
    assert on.state.consecutive_errors == 0
    assert on.state.next_run_at_ms == NOW + 11 * MINUTE


def test_every_runs_every_ms_after_the_last_start() -> None:
    job = new_job(every(10 * MINUTE), now_ms=NOW)
    t = apply_outcome(job, RunOutcome("ok"), started_ms=NOW + 10 * MINUTE + 5_000,
                      ended_ms=NOW + 10 * MINUTE + 9_000, failure_threshold=5)
    assert t.job is not None
    assert t.job.state.next_run_at_ms == NOW + 20 * MINUTE + 5_000
    assert t.job.state.last_status == "ok" and t.job.state.last_duration_ms == 4_000


def test_errors_back_off_and_disable_at_the_threshold() -> None:
    job = new_job(every(MINUTE), now_ms=NOW)
    assert [backoff_ms(n) for n in range(7)] == [0, 30_000, 60_000, 300_000, 900_000,
                                                 3_600_000, 3_600_000]
    now = NOW
    for n in range(1, 4):
        now = job.state.next_run_at_ms or now
        t = apply_outcome(job, RunOutcome("error", error="boom"), started_ms=now,
                          ended_ms=now + 1_000, failure_threshold=3)
        assert t.job is not None
        job = t.job
        assert job.state.consecutive_errors == n and job.state.last_error == "boom"
        if n < 3:
            assert not t.auto_disabled
            assert job.state.next_run_at_ms == max(now + MINUTE, now + 1_000 + backoff_ms(n))
    assert t.auto_disabled and not job.enabled and job.state.next_run_at_ms is None
    assert job.state.auto_disabled is not None
    assert job.state.auto_disabled.consecutive_errors == 3
    # Success resets the count.
    fresh = new_job(every(MINUTE), now_ms=NOW)
    t1 = apply_outcome(fresh, RunOutcome("error"), started_ms=NOW, ended_ms=NOW,
                       failure_threshold=3)
    assert t1.job is not None
    t2 = apply_outcome(t1.job, RunOutcome("ok"), started_ms=NOW, ended_ms=NOW,
                       failure_threshold=3)
    assert t2.job is not None and t2.job.state.consecutive_errors == 0


def test_threshold_zero_never_disables() -> None:
    job = new_job(every(MINUTE), now_ms=NOW)
    for _ in range(50):
        t = apply_outcome(job, RunOutcome("error"), started_ms=NOW, ended_ms=NOW,
                          failure_threshold=0)
        assert t.job is not None and t.job.enabled and not t.auto_disabled
        job = t.job


@pytest.mark.parametrize(("status", "delivery", "deleted"), [
    ("ok", "not-requested", True), ("ok", "delivered", True),
    ("ok", "not-delivered", False), ("ok", "unknown", False), ("skipped", "not-requested", False),
])
def test_one_shot_is_deleted_only_after_confirmed_delivery(status: Any, delivery: Any,
                                                           deleted: bool) -> None:
    job = new_job(isolated({"kind": "at", "at": "2026-01-05T09:00:00Z"}), now_ms=NOW)
    t = apply_outcome(job, RunOutcome(status, delivery_status=delivery), started_ms=NOW,
                      ended_ms=NOW + 1, failure_threshold=5)
    if deleted:
        assert t.job is None
    else:
        assert t.job is not None and not t.job.enabled and t.job.state.next_run_at_ms is None
        assert t.job.state.last_delivery_status == delivery


def test_a_failed_one_shot_retries_after_the_backoff() -> None:
    job = new_job(isolated({"kind": "at", "at": "2026-01-05T09:00:00Z"}), now_ms=NOW)
    at = parse_at("2026-01-05T09:00:00Z")
    t = apply_outcome(job, RunOutcome("error"), started_ms=at, ended_ms=at + 2_000,
                      failure_threshold=5)
    assert t.job is not None and t.job.enabled
    assert t.job.state.next_run_at_ms == at + 2_000 + 30_000


def test_an_interrupted_one_shot_that_was_delivering_is_not_replayed() -> None:
    job = new_job(isolated({"kind": "at", "at": "2026-01-05T09:00:00Z"}), now_ms=NOW)
    t, outcome = interrupted(job, started_ms=NOW, now_ms=NOW + 5, delivery_attempted=True,
                             failure_threshold=5)
    assert t.job is not None and not t.job.enabled
    assert t.job.state.last_delivery_status == "unknown" and outcome.status == "error"
    t2, _ = interrupted(job, started_ms=NOW, now_ms=NOW + 5, delivery_attempted=False,
                        failure_threshold=5)
    assert t2.job is not None and t2.job.enabled  # it runs again


def test_run_entry_and_session_keys() -> None:
    job = new_job(isolated(HOURLY), now_ms=NOW, job_id="0b7a")
    entry = run_entry(job, RunOutcome("error", error="x", summary="s",
                                      delivery_status="delivered", usage={"input_tokens": 3}),
                      started_ms=NOW, ended_ms=NOW + 50, next_run_at_ms=NOW + 3_600_000)
    assert entry == {"ts": NOW + 50, "jobId": "0b7a", "action": "finished", "status": "error",
                     "error": "x", "summary": "s", "delivered": True,
                     "deliveryStatus": "delivered", "runAtMs": NOW, "durationMs": 50,
                     "nextRunAtMs": NOW + 3_600_000, "usage": {"input_tokens": 3},
                     "jobName": "report"}
    assert session_key(job, "main") == "agent:main:cron:0b7a"
    assert session_key(job, "main", "r1") == "agent:main:cron:0b7a:run:r1"
    assert job_id_of({"jobId": " 0b7a "}, "cron.run") == "0b7a"
    with pytest.raises(CronInputError, match="^id: "):
        job_id_of({}, "cron.run")
