"""Heartbeats, the pure parts: who gets one, when a tick may run, and what of its reply is sent.

A heartbeat is a periodic agent turn on an agent's main session (OpenClaw's
``agents.defaults.heartbeat``; here ``[heartbeat]`` and ``agents[].heartbeat``, see
``docs/configuration.md``). The turn itself goes through the engine like every other; this
module decides, without I/O:

- :func:`plan`: which agents have one. With no ``agents[].heartbeat`` table only the default
  agent does; once any agent has one, only those agents do (their keys over ``[heartbeat]``).
  ``every = "0m"`` disables; a disabled heartbeat is not in the plan, so it cannot run.
- :func:`gate`: whether a tick runs: not outside ``active_hours``, not when ``HEARTBEAT.md``
  exists but is effectively empty (no model call), not while the session is busy (retry in
  :data:`BUSY_RETRY_MS`). A missing ``HEARTBEAT.md`` still runs: the model decides.
- :func:`suppress`: the one place that decides what a *final* reply may deliver. ``HEARTBEAT_OK``
  at the start or the end is stripped; what remains is dropped when it is at most
  ``ack_max_chars`` long. A token in the middle does not make the reply an acknowledgement
  (OpenClaw's rule), but a heartbeat's delivered text never carries it: it is cut out there too
  (OpenClaw would send it — its users' most reported heartbeat leak). Everything that sends or
  shows a heartbeat reply — channels, the UI, previews — uses this decision (or :func:`preview`
  while the reply streams), so the token never reaches anyone.

The stripping follows OpenClaw's ``stripHeartbeatToken`` (``oc:src/auto-reply/heartbeat.ts``):
markup around the token (``**HEARTBEAT_OK**``, ``<b>HEARTBEAT_OK</b>``) is seen through, and up
to four non-word characters after a trailing token go with it. One difference: the delivered
text keeps its line breaks (OpenClaw collapses all whitespace); the length test uses the
collapsed text, so the decision is the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo
from typing import Literal
from zoneinfo import ZoneInfo

from clawgate.config import ActiveHoursConfig, HeartbeatConfig, Settings
from clawgate.cron.schedule import from_ms, host_zone, parse_duration

HEARTBEAT_TOKEN = "HEARTBEAT_OK"
HEARTBEAT_FILE = "HEARTBEAT.md"
HEARTBEAT_PROMPT = (
    "Read HEARTBEAT.md in your workspace if it exists and follow it strictly. Do not pick up or "
    f"repeat old tasks from earlier chats. If nothing needs attention, reply {HEARTBEAT_TOKEN}."
)
BUSY_RETRY_MS = 1_000
Skip = Literal["outside-active-hours", "empty-heartbeat-file", "busy"]

_HEADING = re.compile(r"#+(\s|$)")
_EMPTY_ITEM = re.compile(r"[-*+]\s*(\[[\sXx]?\]\s*)?")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TRAILING_TOKEN = re.compile(re.escape(HEARTBEAT_TOKEN) + r"[^\w]{0,4}$", re.A)
_TAG = re.compile(r"<[^>]*>")
_NBSP = re.compile(r"&nbsp;", re.I)
_EDGE_MARKS = (re.compile(r"^[*`~_]+"), re.compile(r"[*`~_]+$"))
_INNER_TOKEN = re.compile(r"(?:<[^>]*>|[*`~_])*" + re.escape(HEARTBEAT_TOKEN) +
                          r"(?:</[^>]*>|[*`~_])*")
_SPACES = re.compile(r"[ \t]{2,}")


@dataclass(frozen=True, slots=True)
class ActiveHours:
    """A daily window in a zone, in minutes after local midnight; ``end`` exclusive (1440 for
    24:00); an ``end`` before ``start`` wraps past midnight; equal means never."""

    start: int
    end: int
    zone: tzinfo

    @classmethod
    def from_config(cls, hours: ActiveHoursConfig) -> ActiveHours:
        """The window of an ``active_hours`` table (validated by the config)."""
        return cls(_minutes(hours.start), _minutes(hours.end),
                   host_zone() if hours.tz is None else ZoneInfo(hours.tz))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One agent's resolved heartbeat."""

    agent_id: str
    every_ms: int
    active_hours: ActiveHours | None
    target: str  # "last", "none" or a channel id
    to: str | None
    prompt: str
    ack_max_chars: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What a final reply may deliver: ``deliver`` False drops it; ``text`` is what to send;
    ``stripped`` says the token was found and removed."""

    deliver: bool
    text: str
    stripped: bool


def plan(settings: Settings) -> dict[str, Heartbeat]:
    """The agents that have a running heartbeat, by agent id."""
    agents = settings.agents()
    defaults = settings.config.heartbeat
    chosen = [(a.id, a.heartbeat) for a in agents if a.heartbeat is not None]
    if chosen:
        tables = [(agent_id, _merge(defaults, own)) for agent_id, own in chosen]
    else:
        default = next((a for a in agents if a.default), agents[0])
        tables = [(default.id, defaults)]
    out: dict[str, Heartbeat] = {}
    for agent_id, table in tables:
        every = parse_duration(table.every, "heartbeat.every")
        if every <= 0:
            continue
        out[agent_id] = Heartbeat(
            agent_id=agent_id, every_ms=every,
            active_hours=None if table.active_hours is None
            else ActiveHours.from_config(table.active_hours),
            target=table.target, to=table.to,
            prompt=(table.prompt or "").strip() or HEARTBEAT_PROMPT,
            ack_max_chars=table.ack_max_chars,
        )
    return out


def _merge(defaults: HeartbeatConfig, own: HeartbeatConfig) -> HeartbeatConfig:
    return defaults.model_copy(update={k: getattr(own, k) for k in own.model_fields_set})


def in_active_hours(now_ms: int, hours: ActiveHours | None) -> bool:
    """Whether ``now_ms`` falls inside the window (no window: always)."""
    if hours is None:
        return True
    if hours.start == hours.end:
        return False
    local = from_ms(now_ms).astimezone(hours.zone)
    minute = local.hour * 60 + local.minute
    if hours.end > hours.start:
        return hours.start <= minute < hours.end
    return minute >= hours.start or minute < hours.end


def is_effectively_empty(text: str | None) -> bool:
    """Whether ``HEARTBEAT.md`` holds nothing to do: only blank lines, headings (``#`` then a
    space or the line end), empty list items (``-``, ``- [ ]``, ``* [x]``) and HTML comments.
    A missing file (None) is not empty: the heartbeat still runs."""
    if text is None:
        return False
    for line in _COMMENT.sub("", text).split("\n"):
        trimmed = line.strip()
        if trimmed and not _HEADING.match(trimmed) and not _EMPTY_ITEM.fullmatch(trimmed):
            return False
    return True


def gate(heartbeat: Heartbeat, *, now_ms: int, heartbeat_md: str | None,
         busy: bool) -> Skip | None:
    """Why this tick must not call the model, or None when it runs. ``heartbeat_md`` is the
    file's text (None if missing); ``busy``: the main session has a run or a queue."""
    if not in_active_hours(now_ms, heartbeat.active_hours):
        return "outside-active-hours"
    if is_effectively_empty(heartbeat_md):
        return "empty-heartbeat-file"
    if busy:
        return "busy"
    return None


def suppress(reply: str | None, ack_max_chars: int = 300,
             mode: Literal["heartbeat", "message"] = "heartbeat") -> Decision:
    """Decide what a final reply delivers (see the module docstring). In ``message`` mode (a
    stray token outside a heartbeat) the token is stripped and only a token-only reply is
    dropped; a token in the middle stays."""
    trimmed = (reply or "").strip()
    if not trimmed:
        return Decision(False, "", False)
    normalized = _unmark(trimmed)
    if HEARTBEAT_TOKEN not in trimmed and HEARTBEAT_TOKEN not in normalized:
        return Decision(True, trimmed, False)
    text, did = _strip_edges(trimmed)
    if not (did and text):
        text, did = _strip_edges(normalized)
    if not did:
        if mode == "message":
            return Decision(True, trimmed, False)
        inner = _strip_inner(trimmed)
        return Decision(bool(inner), inner, True)
    if mode == "heartbeat":
        text = _strip_inner(text)
    if not text:
        return Decision(False, "", True)
    if mode == "heartbeat" and len(" ".join(text.split())) <= max(0, ack_max_chars):
        return Decision(False, "", True)
    return Decision(True, text, True)


def preview(partial: str, ack_max_chars: int = 300) -> str:
    """What of a heartbeat reply still streaming may be shown now: nothing while it could still
    turn out to be an ack, and never a token or the start of one (a token in the middle is held
    back until the final reply, which :func:`suppress` decides)."""
    text = partial.strip()
    while text.startswith(HEARTBEAT_TOKEN):
        text = text[len(HEARTBEAT_TOKEN):].lstrip()
    at = text.find(HEARTBEAT_TOKEN)
    if at >= 0:
        text = text[:at]
    shown = text[:_token_tail_start(text)].rstrip()
    if len(" ".join(shown.split())) <= max(0, ack_max_chars):
        return ""
    return shown


def _token_tail_start(text: str) -> int:
    """Where a possible (partial) trailing token starts: the earliest index from which the rest
    could still grow into ``HEARTBEAT_OK`` plus up to 4 non-word characters."""
    for i in range(max(0, len(text) - len(HEARTBEAT_TOKEN) - 4), len(text)):
        rest = text[i:]
        head = rest[:len(HEARTBEAT_TOKEN)]
        if HEARTBEAT_TOKEN.startswith(head) and (
                len(rest) <= len(HEARTBEAT_TOKEN)
                or re.fullmatch(r"[^\w]{0,4}", rest[len(HEARTBEAT_TOKEN):], re.A)):
            return i
    return len(text)


def _strip_edges(raw: str) -> tuple[str, bool]:
    text = raw.strip()
    if HEARTBEAT_TOKEN not in text:
        return text, False
    did, changed = False, True
    while changed:
        changed = False
        current = text.strip()
        if current.startswith(HEARTBEAT_TOKEN):
            text = current[len(HEARTBEAT_TOKEN):].lstrip()
            did = changed = True
            continue
        if _TRAILING_TOKEN.search(current):
            at = current.rfind(HEARTBEAT_TOKEN)
            text = (current[:at].rstrip() + current[at + len(HEARTBEAT_TOKEN):]).rstrip()
            did = changed = True
    return text.strip(), did


def _strip_inner(text: str) -> str:
    """``text`` without any token left inside it (and the markup around one)."""
    if HEARTBEAT_TOKEN not in text:
        return text
    lines = [_SPACES.sub(" ", _INNER_TOKEN.sub("", line)).strip()
             if HEARTBEAT_TOKEN in line else line for line in text.split("\n")]
    return "\n".join(lines).strip()


def _unmark(text: str) -> str:
    text = _NBSP.sub(" ", _TAG.sub(" ", text))
    for pattern in _EDGE_MARKS:
        text = pattern.sub("", text)
    return text


def _minutes(hh_mm: str) -> int:
    hours, minutes = hh_mm.split(":")
    return int(hours) * 60 + int(minutes)
