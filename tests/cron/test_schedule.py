"""Schedules: the three kinds, DST in real zones, the stagger rule, durations, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from clawgate.cron.schedule import (
    DEFAULT_TOP_OF_HOUR_STAGGER_MS,
    AtSchedule,
    CronInputError,
    CronSchedule,
    EverySchedule,
    Schedule,
    cron_next,
    from_ms,
    is_top_of_hour,
    iso_ms,
    next_run,
    parse_at,
    parse_duration,
    stagger_offset,
    stagger_window,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SCHEDULE: TypeAdapter[Any] = TypeAdapter(Schedule)


def ms(iso: str) -> int:
    return parse_at(iso)


def runs(expr: str, tz: ZoneInfo, start: str, n: int) -> list[str]:
    """The next ``n`` runs after ``start``, as UTC ISO strings."""
    out: list[str] = []
    at: int | None = ms(start)
    for _ in range(n):
        assert at is not None
        at = cron_next(expr, tz, at)
        assert at is not None
        out.append(iso_ms(at))
    return out


def cron(expr: str, tz: str | None = "UTC", stagger: int | None = None) -> CronSchedule:
    doc: dict[str, Any] = {"kind": "cron", "expr": expr, "tz": tz}
    if stagger is not None:
        doc["staggerMs"] = stagger
    return CronSchedule.model_validate(doc)


# -- the kinds ------------------------------------------------------------------------------------


def test_at_is_due_once_and_normalized_to_utc() -> None:
    at = AtSchedule.model_validate({"kind": "at", "at": "2026-03-01T10:00:00+01:00"})
    assert at.at == "2026-03-01T09:00:00.000Z"
    assert next_run(at, ms("2026-03-01T08:59:59Z"), "j") == ms("2026-03-01T09:00:00Z")
    assert next_run(at, ms("2026-03-01T09:00:00Z"), "j") is None


def test_at_without_a_zone_is_utc_and_a_date_is_midnight() -> None:
    assert parse_at("2026-03-01T09:30") == ms("2026-03-01T09:30:00Z")
    assert parse_at("2026-03-01") == ms("2026-03-01T00:00:00Z")


def test_every_runs_on_its_anchor_grid_strictly_after() -> None:
    s = EverySchedule.model_validate({"kind": "every", "everyMs": 60_000, "anchorMs": 1_000})
    assert next_run(s, 0, "j") == 1_000
    assert next_run(s, 1_000, "j") == 61_000
    assert next_run(s, 60_999, "j") == 61_000
    assert next_run(s, 61_000, "j") == 121_000


def test_cron_with_seconds_first_like_croner() -> None:
    s = cron("30 0 12 * * *", stagger=0)  # 12:00:30 every day
    assert iso_ms(next_run(s, ms("2026-01-05T12:00:00Z"), "j") or 0) == "2026-01-05T12:00:30.000Z"


def test_cron_in_a_zone() -> None:
    s = cron("0 9 * * 1-5", "America/New_York")
    # Friday 2026-01-09 10:00 New York -> Monday 09:00 EST (14:00Z)
    assert next_run(s, ms("2026-01-09T15:00:00Z"), "j") == ms("2026-01-12T14:00:00Z")


# -- DST ------------------------------------------------------------------------------------------


def test_berlin_spring_forward_daily_job_in_the_gap_runs_shifted_by_the_gap() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist that day; it runs at 03:30 CEST.
    assert runs("30 2 * * *", BERLIN, "2026-03-27T12:00:00Z", 3) == [
        "2026-03-28T01:30:00.000Z", "2026-03-29T01:30:00.000Z", "2026-03-30T00:30:00.000Z"]


def test_berlin_spring_forward_hourly_job_runs_every_real_hour_once() -> None:
    assert runs("0 * * * *", BERLIN, "2026-03-28T23:30:00Z", 3) == [
        "2026-03-29T00:00:00.000Z", "2026-03-29T01:00:00.000Z", "2026-03-29T02:00:00.000Z"]


def test_berlin_spring_forward_skipped_slots_do_not_double_fire() -> None:
    # 02:15 and 02:45 map onto 03:15 and 03:45, which exist: each instant runs once.
    assert runs("15,45 2-3 * * *", BERLIN, "2026-03-28T23:00:00Z", 3) == [
        "2026-03-29T01:15:00.000Z", "2026-03-29T01:45:00.000Z", "2026-03-30T00:15:00.000Z"]


def test_berlin_fall_back_fixed_time_runs_once_at_its_first_occurrence() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice; the job runs once, at 02:30 CEST.
    assert runs("30 2 * * *", BERLIN, "2026-10-24T12:00:00Z", 2) == [
        "2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]
    # Asked from inside the second pass, it waits for the next day.
    assert runs("30 2 * * *", BERLIN, "2026-10-25T01:10:00Z", 1) == ["2026-10-26T01:30:00.000Z"]


def test_berlin_fall_back_hourly_job_runs_in_both_passes() -> None:
    assert runs("0 * * * *", BERLIN, "2026-10-24T22:30:00Z", 4) == [
        "2026-10-24T23:00:00.000Z", "2026-10-25T00:00:00.000Z",  # 01:00, 02:00 CEST
        "2026-10-25T01:00:00.000Z", "2026-10-25T02:00:00.000Z"]  # 02:00, 03:00 CET


def test_new_york_spring_forward_and_fall_back() -> None:
    # 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
    assert runs("30 2 * * *", NEW_YORK, "2026-03-07T12:00:00Z", 2) == [
        "2026-03-08T07:30:00.000Z", "2026-03-09T06:30:00.000Z"]
    assert runs("30 1 * * *", NEW_YORK, "2026-10-31T12:00:00Z", 2) == [
        "2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]
    assert runs("*/30 * * * *", NEW_YORK, "2026-11-01T05:10:00Z", 4) == [
        "2026-11-01T05:30:00.000Z", "2026-11-01T06:00:00.000Z",  # 01:30 EDT, 01:00 EST
        "2026-11-01T06:30:00.000Z", "2026-11-01T07:00:00.000Z"]


@settings(max_examples=120, deadline=None)
@given(
    start=st.integers(ms("2026-01-01T00:00:00Z"), ms("2027-01-01T00:00:00Z")),
    expr=st.sampled_from(["0 * * * *", "*/7 * * * *", "30 2 * * *", "15 1,2,3 * * 0",
                          "0 0 1 * *", "45 23 * * 1-5", "0 30 2 * * *"]),
    tz=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]),
)
def test_cron_next_is_strictly_later_and_matches_the_wall_clock(start: int, expr: str,
                                                               tz: str) -> None:
    zone = ZoneInfo(tz)
    at = cron_next(expr, zone, start)
    assert at is not None and at > start
    local = from_ms(at).astimezone(zone).replace(tzinfo=None)
    assert _match(expr, local) or _match(expr, local - (from_ms(at).astimezone(zone).dst()
                                                        or timedelta(hours=1)))  # gap shift
    # No matching instant is skipped: scan the minutes in between (when they are few).
    wildcard_hour = expr.split()[-4].startswith("*")
    probe = from_ms(start).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while probe < from_ms(at) and from_ms(at) - from_ms(start) < timedelta(hours=6):
        wall = probe.astimezone(zone).replace(tzinfo=None)
        if _match(expr, wall):
            # Only a fixed-hour time in the second pass of a fold is skipped (it already ran).
            first_pass = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            assert not wildcard_hour and first_pass < probe, f"{wall} ({probe}) was skipped"
        probe += timedelta(minutes=1)


def _match(expr: str, wall: datetime) -> bool:
    return bool(croniter.match(expr, wall, second_at_beginning=len(expr.split()) == 6))


# -- stagger --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "top"), [
    ("0 * * * *", True), ("0 */2 * * *", True), ("0 0 * * * *", True), ("0 *,12 * * *", True),
    ("0 9 * * *", False), ("5 * * * *", False), ("0 9-17 * * *", False),
    ("30 0 * * * *", False), ("*/15 * * * *", False),
])
def test_top_of_hour_rule_follows_openclaw(expr: str, top: bool) -> None:
    assert is_top_of_hour(expr) is top


def test_stagger_is_a_deterministic_offset_inside_the_window() -> None:
    window = DEFAULT_TOP_OF_HOUR_STAGGER_MS
    offsets = {f"job-{i}": stagger_offset(f"job-{i}", window) for i in range(200)}
    assert offsets == {f"job-{i}": stagger_offset(f"job-{i}", window) for i in range(200)}
    assert all(0 <= o < window for o in offsets.values())
    assert len(set(offsets.values())) > 190  # jobs with one expression spread out
    # sha256("job-a")[0:4] big endian, mod 300000: the same value OpenClaw computes.
    assert stagger_offset("job-a", window) == 0xBA724B9D % window  # printf job-a | sha256sum
    assert stagger_offset("job-a", 1) == 0


def test_top_of_hour_jobs_are_staggered_fixed_hours_are_exact() -> None:
    after = ms("2026-01-05T09:30:00Z")
    hourly = cron("0 * * * *")
    assert stagger_window(hourly) == DEFAULT_TOP_OF_HOUR_STAGGER_MS
    assert next_run(hourly, after, "job-a") == ms("2026-01-05T10:00:00Z") + stagger_offset(
        "job-a", DEFAULT_TOP_OF_HOUR_STAGGER_MS)
    assert next_run(cron("0 9 * * *"), after, "job-a") == ms("2026-01-06T09:00:00Z")
    assert next_run(cron("0 * * * *", stagger=0), after, "job-a") == ms("2026-01-05T10:00:00Z")
    assert next_run(cron("0 9 * * *", stagger=60_000), after, "job-a") == (
        ms("2026-01-06T09:00:00Z") + stagger_offset("job-a", 60_000))


def test_a_staggered_slot_still_ahead_is_not_skipped() -> None:
    offset = stagger_offset("job-a", DEFAULT_TOP_OF_HOUR_STAGGER_MS)
    after = ms("2026-01-05T10:00:00Z") + offset - 1  # the 10:00 slot fires at 10:00 + offset
    assert next_run(cron("0 * * * *"), after, "job-a") == after + 1


# -- durations and bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("20m", 1_200_000), ("1h30m", 5_400_000), ("45s", 45_000), ("2d", 172_800_000),
    ("0m", 0), ("500ms", 500), ("1.5h", 5_400_000), (" 30M ", 1_800_000), ("15", 900_000),
])
def test_durations(text: str, value: int) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "soon", "m", "1x", "-5m", "1h 30m", "h1"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(CronInputError, match=r"^heartbeat\.every: ") as err:
        parse_duration(text, "heartbeat.every")
    assert err.value.field == "heartbeat.every"


@pytest.mark.parametrize(("doc", "message"), [
    ({"kind": "cron", "expr": "0 * * * *", "tz": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
    ({"kind": "cron", "expr": "61 * * * *"}, "not a valid cron expression"),
    ({"kind": "cron", "expr": "* * *"}, "needs 5 fields"),
    ({"kind": "cron", "expr": "0 0 30 2 *"}, "never matches"),
    ({"kind": "every", "everyMs": 10}, "greater than or equal to 1000"),
    ({"kind": "at", "at": "next tuesday"}, "not an ISO 8601 time"),
])
def test_bad_schedules_are_refused(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SCHEDULE.validate_python(doc)
