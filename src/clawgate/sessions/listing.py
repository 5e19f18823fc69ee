"""``sessions.list`` in SQL (reference §4.3): filters in WHERE, newest first, one page.

Only the requested page is decoded; the total comes from a ``COUNT(*)`` with the same WHERE,
read in the same transaction so page and total agree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clawgate.errors import InvalidRequest
from clawgate.sessions.keys import normalize_agent_id, row_kind
from clawgate.sessions.schema import COLUMNS, decode

MAX_LIMIT = 1000
MAX_KEYS = 10_000  # a key filter is one SQL parameter per key
DEFAULT_LIMIT = 50
DisplayModel = Callable[[str | None, str | None], tuple[str | None, str | None]]
# Fields the search matches (case-insensitive substring), in reference order.
SEARCH_COLUMNS = ("display_name", "label", "subject", "session_id", "key")
FOLD_FUNCTION = "clawgate_fold"


# One ``sessions.list`` row on the wire: the listed columns in their wire names (absent values
# omitted, never null) plus ``kind`` (see ``schema.SessionEntry``, the one declaration).
SessionRow = dict[str, Any]
LISTED = tuple(c for c in COLUMNS if c.listed)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The parameters of ``sessions.list``. ``now_ms`` pins the clock for ``active_minutes``."""

    agent_id: str | None = None
    label: str | None = None
    spawned_by: str | None = None
    search: str | None = None
    active_minutes: float | None = None
    include_global: bool = False
    include_unknown: bool = False
    exclude_cron: bool = False
    exclude_subagents: bool = False
    keys: tuple[str, ...] | None = None  # only these keys (e.g. sessions with an active run)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    now_ms: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not (
            1 <= self.limit <= MAX_LIMIT
        ):
            raise InvalidRequest(
                f"limit must be an integer from 1 to {MAX_LIMIT}", method="sessions.list"
            )
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise InvalidRequest("offset must be a non-negative integer", method="sessions.list")
        if self.keys is not None and len(self.keys) > MAX_KEYS:
            raise InvalidRequest(f"at most {MAX_KEYS} keys", method="sessions.list")
        if self.active_minutes is not None and not self.active_minutes > 0:
            raise InvalidRequest("activeMinutes must be positive", method="sessions.list")


@dataclass(frozen=True, slots=True)
class ListResult:
    """One page of rows, newest first, with the total that matched."""

    rows: tuple[SessionRow, ...]
    total: int
    offset: int
    limit: int
    has_more: bool
    next_offset: int | None


def fold(text: str | None) -> str | None:
    """Case folding for search; registered as a SQL function because SQLite's LIKE and lower()
    only fold ASCII, and session names are often not ASCII."""
    return None if text is None else text.casefold()


def run(
    conn: sqlite3.Connection, query: ListQuery, now_ms: int, display_model: DisplayModel | None
) -> ListResult:
    """Run ``query`` on a read connection (autocommit mode, ``fold`` registered)."""
    where, params = _where(query, now_ms)
    conn.execute("BEGIN")
    try:
        total = int(conn.execute(f"SELECT COUNT(*) FROM sessions WHERE {where}", params)
                    .fetchone()[0])
        found = conn.execute(
            f"SELECT * FROM sessions WHERE {where} ORDER BY updated_at DESC, key LIMIT ? OFFSET ?",
            [*params, query.limit, query.offset],
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    rows = tuple(to_row(r, display_model) for r in found)
    end = query.offset + len(rows)
    more = end < total
    return ListResult(rows, total, query.offset, query.limit, more, end if more else None)


def to_row(row: sqlite3.Row, display_model: DisplayModel | None) -> SessionRow:
    """A ``sessions`` row in wire shape; ``display_model`` maps (provider, model) for display."""
    out: SessionRow = {}
    for col in LISTED:
        value = decode(col, row[col.name])
        if value is not None:
            out[col.wire] = value
    out["kind"] = row_kind(row["key"], row["chat_type"])
    if display_model is not None:
        out.pop("modelProvider", None)
        out.pop("model", None)
        provider, model = display_model(row["model_provider"], row["model"])
        if provider is not None:
            out["modelProvider"] = provider
        if model is not None:
            out["model"] = model
    return out


def _where(query: ListQuery, now_ms: int) -> tuple[str, list[Any]]:
    """The WHERE clause; only constant SQL fragments, every value is a parameter."""
    clauses = [
        # cron *run* keys (cron:<job>:run:<id>, agent:<a>:cron:<job>:run:<id>) are per-run
        # scratch sessions; counting the ':' pins the glob to exactly those segment layouts.
        "NOT (key GLOB 'agent:*:cron:*:run:*' AND length(key) - length(replace(key, ':', '')) = 5)",
        "NOT (key GLOB 'cron:*:run:*' AND length(key) - length(replace(key, ':', '')) = 3)",
    ]
    params: list[Any] = []
    if not query.include_global:
        clauses.append("key <> 'global'")
    if not query.include_unknown:
        clauses.append("key <> 'unknown'")
    if query.agent_id is not None and query.agent_id.strip():
        prefix = f"agent:{normalize_agent_id(query.agent_id)}:"
        clauses.append("agent_id = ? AND substr(key, 1, ?) = ?")
        params += [normalize_agent_id(query.agent_id), len(prefix), prefix]
    if query.exclude_cron:
        clauses.append("NOT (key GLOB 'cron:*' OR key GLOB 'agent:*:cron:*')")
    if query.exclude_subagents:
        clauses.append("NOT key GLOB 'agent:*:subagent:*'")
    if query.keys is not None:
        if not query.keys:
            clauses.append("1 = 0")
        else:
            clauses.append(f"key IN ({', '.join('?' for _ in query.keys)})")
            params += list(query.keys)
    if query.spawned_by is not None:
        clauses.append("spawned_by = ?")
        params.append(query.spawned_by)
    if query.label is not None:
        clauses.append("label = ?")
        params.append(query.label)
    needle = (query.search or "").strip()
    if needle:
        pattern = "%" + _escape_like(fold(needle) or "") + "%"
        clauses.append(
            "(" + " OR ".join(f"{FOLD_FUNCTION}({c}) LIKE ? ESCAPE '\\'" for c in SEARCH_COLUMNS)
            + ")"
        )
        params += [pattern] * len(SEARCH_COLUMNS)
    if query.active_minutes is not None:
        clauses.append("updated_at >= ?")
        params.append(now_ms - int(query.active_minutes * 60_000))
    return " AND ".join(clauses), params


def _escape_like(text: str) -> str:
    """Make ``%``, ``_`` and the escape character literal in a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
