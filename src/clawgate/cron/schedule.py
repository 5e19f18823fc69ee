"""Cron schedules: the three kinds, their validation, durations and the next run time.

A schedule is OpenClaw's wire shape (``oc:src/gateway/protocol/schema/cron.ts``)::

    {"kind": "at", "at": "<ISO 8601>"}              one shot; no zone means UTC
    {"kind": "every", "everyMs": n, "anchorMs"?: t} every n ms on a grid anchored at t
    {"kind": "cron", "expr": "...", "tz"?: "...", "staggerMs"?: n}

Cron expressions have 5 fields, or 6 with seconds first (croner's order, which OpenClaw uses),
and are evaluated in an IANA zone through ``zoneinfo`` (the host's zone when ``tz`` is unset).

DST. Expressions are matched against wall-clock time. A wall time the clock skips (spring
forward) runs at the instant it maps to with the offset before the jump, i.e. shifted forward
by the gap (02:30 becomes 03:30), as java.time and JS Temporal do. A wall time that occurs twice
(fall back) runs once, at its first occurrence — except when the hour field is a wildcard
(``*``, ``*/n``): then the job runs in both passes, so an hourly job keeps running every real
hour (Vixie cron's rule). Either way every returned instant is strictly after the one asked.

Stagger (OpenClaw's rule, ``oc:src/cron/stagger.ts``): a recurring top-of-hour expression
(minute ``0`` and a wildcard hour, seconds ``0`` for 6 fields) gets a default window of 5
minutes; ``staggerMs`` overrides it (0 = exact). Each job fires ``sha256(jobId)[0:4] % window``
ms after its slot, so jobs that share an expression spread out, deterministically.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from clawgate.errors import InvalidRequest

if TYPE_CHECKING:  # croniter is imported when the first expression is evaluated (gateway memory)
    from croniter import croniter

DEFAULT_TOP_OF_HOUR_STAGGER_MS = 5 * 60 * 1000
MIN_EVERY_MS = 1_000  # a shorter interval would keep the scheduler busy doing nothing else
MAX_TEXT = 100_000
# Feb 29 expressions can wait 8 years (2096 -> 2104); anything rarer is refused as "never".
_MAX_YEARS_BETWEEN_MATCHES = 10
# The largest change of UTC offset any zone makes at once is 2 h; 3 h bounds every DST fold.
_MAX_FOLD = timedelta(hours=3)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_HOUR_PART = re.compile(r"^(?:\d+|\d+-\d+)(?:/\d+)?$|^\*(?:/\d+)?$")
_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                      "@hourly"})


class CronInputError(InvalidRequest):
    """A cron job or schedule field is invalid; ``field`` is its dotted wire path."""

    def __init__(self, field: str, message: str, *, method: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message, method=method)


class Wire(BaseModel):
    """Base of the cron wire models: camelCase on the wire, strict types, unknown keys refused,
    immutable. Python code builds them with snake_case names."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, alias_generator=to_camel,
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True,
        defer_build=True,  # built on first use: a gateway without cron jobs never pays
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready wire form (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class AtSchedule(Wire):
    """A one-shot at an absolute time; ``at`` is kept as a normalized UTC ISO string."""

    kind: Literal["at"]
    at: str

    @field_validator("at")
    @classmethod
    def _iso(cls, value: str) -> str:
        return iso_ms(parse_at(value))

    @property
    def at_ms(self) -> int:
        """The time, epoch milliseconds."""
        return parse_at(self.at)


class EverySchedule(Wire):
    """Every ``every_ms`` on a grid anchored at ``anchor_ms`` (job creation when unset)."""

    kind: Literal["every"]
    every_ms: int = Field(ge=MIN_EVERY_MS)
    anchor_ms: int | None = Field(default=None, ge=0)


class CronSchedule(Wire):
    """A cron expression in a zone, with an optional explicit stagger window."""

    kind: Literal["cron"]
    expr: str
    tz: str | None = None
    stagger_ms: int | None = Field(default=None, ge=0, le=24 * 3_600_000)

    @field_validator("expr")
    @classmethod
    def _expr(cls, value: str, info: ValidationInfo) -> str:
        if info.context is not None and info.context.get("stored"):
            return value  # checked when it was stored; re-parsing 10,000 of them is slow
        return check_expr(value)

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        zone(value.strip())
        return value.strip()

    def zone(self) -> tzinfo:
        """The zone the expression is evaluated in."""
        return host_zone() if self.tz is None else zone(self.tz)


Schedule = Annotated[AtSchedule | EverySchedule | CronSchedule, Field(discriminator="kind")]


# -- values ---------------------------------------------------------------------------------------


def parse_at(text: str) -> int:
    """An ISO 8601 date or date-time as epoch milliseconds; no zone means UTC."""
    raw = text.strip()
    if not raw:
        raise ValueError("must be an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_ms(moment)


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as ``2026-03-01T09:00:00.000Z``."""
    moment = from_ms(ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_ms(moment: datetime) -> int:
    """An aware datetime as epoch milliseconds (exact, no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return _EPOCH + timedelta(milliseconds=ms)


def parse_duration(text: str, field: str = "duration") -> int:
    """``"20m"``, ``"1h30m"``, ``"45s"``, ``"2d"``, ``"500ms"``, ``"0m"`` as milliseconds. A bare
    number means minutes (OpenClaw's default unit for durations). Anything else is refused with
    :class:`CronInputError` naming ``field``."""
    raw = text.strip().lower() if isinstance(text, str) else ""
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        raw += "m"
    parts = _DURATION.findall(raw)
    if not raw or "".join(n + u for n, u in parts) != raw:
        raise CronInputError(field, f"{text!r} is not a duration such as 30m, 1h30m or 45s")
    return round(sum(float(n) * _UNIT_MS[u] for n, u in parts))


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError("unknown time zone ...") when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}") from None


@functools.cache
def host_zone() -> tzinfo:
    """The host's zone: ``TZ`` if it names an IANA zone, else ``/etc/localtime``, else UTC.
    Read once per process (the zone files are immutable for its lifetime)."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        with open("/etc/localtime", "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        return UTC


def check_expr(value: str) -> str:
    """A cron expression, whitespace collapsed; ValueError when croniter refuses it or it never
    matches."""
    expr = " ".join(value.split())
    fields = expr.split(" ")
    if not expr:
        raise ValueError("must be a cron expression")
    if not (len(fields) in (5, 6) or (len(fields) == 1 and expr.lower() in _ALIASES)):
        raise ValueError(f"{value!r} needs 5 fields (6 with seconds first)")
    from croniter import CroniterBadDateError, CroniterError

    try:
        _iterator(expr, datetime(2026, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ValueError(f"{value!r} never matches") from None
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"{value!r} is not a valid cron expression ({exc})") from None
    return expr


# -- stagger --------------------------------------------------------------------------------------


def is_top_of_hour(expr: str) -> bool:
    """OpenClaw's test for a recurring top-of-hour expression (minute 0, wildcard hour)."""
    fields = expr.split()
    if len(fields) == 5:
        return fields[0] == "0" and _wildcard_hour(fields[1])
    if len(fields) == 6:
        return fields[0] == "0" and fields[1] == "0" and _wildcard_hour(fields[2])
    return False


def _wildcard_hour(field: str) -> bool:
    parts = field.split(",")
    return all(_HOUR_PART.match(p) for p in parts) and any(p.startswith("*") for p in parts)


def default_stagger(expr: str) -> int | None:
    """The default stagger window of ``expr``: 5 minutes for top-of-hour expressions."""
    return DEFAULT_TOP_OF_HOUR_STAGGER_MS if is_top_of_hour(expr) else None


def stagger_window(schedule: CronSchedule) -> int:
    """The effective window: the explicit ``staggerMs``, else the default, else 0."""
    if schedule.stagger_ms is not None:
        return schedule.stagger_ms
    return default_stagger(schedule.expr) or 0


def stagger_offset(job_id: str, window_ms: int) -> int:
    """The job's fixed offset inside ``window_ms``: the first 4 bytes of sha256(job id), big
    endian, modulo the window (OpenClaw's ``resolveStableCronOffsetMs``)."""
    if window_ms <= 1:
        return 0
    digest = hashlib.sha256(job_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") % window_ms


# -- next run -------------------------------------------------------------------------------------


def next_run(schedule: AtSchedule | EverySchedule | CronSchedule, after_ms: int,
             job_id: str) -> int | None:
    """The first run strictly after ``after_ms`` (epoch ms), or None when there is none.

    ``every`` without an anchor is anchored at 0; a job always has one (its creation time).
    """
    if isinstance(schedule, AtSchedule):
        at = schedule.at_ms
        return at if at > after_ms else None
    if isinstance(schedule, EverySchedule):
        anchor = schedule.anchor_ms or 0
        if after_ms < anchor:
            return anchor
        return anchor + ((after_ms - anchor) // schedule.every_ms + 1) * schedule.every_ms
    offset = stagger_offset(job_id, stagger_window(schedule))
    # Look for the slot after (after - offset): shifted by the offset it is after ``after``.
    base = cron_next(schedule.expr, schedule.zone(), after_ms - offset)
    return None if base is None else base + offset


def cron_next(expr: str, tz: tzinfo, after_ms: int) -> int | None:
    """The first instant strictly after ``after_ms`` whose wall time in ``tz`` matches ``expr``,
    with the DST rules in the module docstring. None when it never matches again."""
    from croniter import CroniterBadDateError

    both = _hour_field(expr).startswith("*")
    after = from_ms(after_ms)
    local = after.astimezone(tz)
    wall = local.replace(tzinfo=None)
    try:
        best = _forward(expr, tz, wall, after_ms, both)
        if both and local.fold == 0 and _ambiguous(wall, tz):
            # First pass of a fold: wall times already passed recur in the second pass.
            second = _second_pass(expr, tz, after_ms)
            if second is not None and (best is None or second < best):
                best = second
    except CroniterBadDateError:
        return None
    return best


def _forward(expr: str, tz: tzinfo, wall: datetime, after_ms: int, both: bool) -> int | None:
    it = _iterator(expr, wall)
    while True:
        candidate: datetime = it.get_next(datetime)
        found = [ms for ms in _instants(candidate, tz, both) if ms > after_ms]
        if not found:
            continue  # a first-pass slot of a fold we are already past
        best = min(found)
        if _gap(candidate, tz):
            # Shifted out of a gap: a later wall time just after the gap can map earlier.
            limit = candidate + _MAX_FOLD
            while (later := it.get_next(datetime)) < limit:
                best = min([best, *(ms for ms in _instants(later, tz, both) if ms > after_ms)])
        return best


def _second_pass(expr: str, tz: tzinfo, after_ms: int) -> int | None:
    """The first second-pass instant of the fold that ``after_ms`` is in the first pass of."""
    low, high = after_ms, after_ms + int(_MAX_FOLD.total_seconds() * 1000)
    offset = from_ms(low).astimezone(tz).utcoffset()
    while high - low > 1:  # the transition: the first instant with the new offset
        mid = (low + high) // 2
        if from_ms(mid).astimezone(tz).utcoffset() == offset:
            low = mid
        else:
            high = mid
    start = from_ms(high).astimezone(tz).replace(tzinfo=None)  # first wall time of pass two
    candidate: datetime = _iterator(expr, start - timedelta(microseconds=1)).get_next(datetime)
    if not _ambiguous(candidate, tz):
        return None
    return to_ms(candidate.replace(tzinfo=tz, fold=1))


def _instants(wall: datetime, tz: tzinfo, both: bool) -> tuple[int, ...]:
    """The instants a matching wall time runs at: one, or two in a fold when ``both``."""
    first = to_ms(wall.replace(tzinfo=tz, fold=0))  # in a gap: the offset before the jump
    if both and _ambiguous(wall, tz):
        return (first, to_ms(wall.replace(tzinfo=tz, fold=1)))
    return (first,)


def _offsets(wall: datetime, tz: tzinfo) -> tuple[timedelta | None, timedelta | None]:
    return wall.replace(tzinfo=tz, fold=0).utcoffset(), wall.replace(tzinfo=tz, fold=1).utcoffset()


def _ambiguous(wall: datetime, tz: tzinfo) -> bool:
    """The wall time occurs twice (a fold: the offset drops)."""
    before, after = _offsets(wall, tz)
    return before is not None and after is not None and before > after


def _gap(wall: datetime, tz: tzinfo) -> bool:
    """The wall time never occurs (a gap: the offset rises)."""
    before, after = _offsets(wall, tz)
    return before is not None and after is not None and before < after


def _hour_field(expr: str) -> str:
    fields = expr.split()
    if len(fields) == 5:
        return fields[1]
    if len(fields) == 6:
        return fields[2]
    return "*" if expr.lower() == "@hourly" else "0"


def _iterator(expr: str, start: datetime) -> croniter:
    from croniter import croniter

    return croniter(expr, start, second_at_beginning=True,
                    max_years_between_matches=_MAX_YEARS_BETWEEN_MATCHES)
