"""``sessions.list`` in SQL (reference §4.3): filters in WHERE, newest first, one page.

Order is ``updated_at DESC, key``; an index serves it for every documented filter (none,
``agentId``, ``label``, ``spawnedBy``, ``activeMinutes``), so a page reads its own rows and no
more. ``channel`` (a clawgate extension) walks that order and keeps the matching rows. Pages
go by ``offset`` (O(offset): rows before it are stepped over) or by ``cursor``,
the opaque ``nextCursor`` of the previous page (keyset: the last row's sort key, O(page) at any
depth). ``search`` is a case-insensitive substring of display name, label, subject, session id
or key, answered from the ``sessions_fts`` trigram index (migration 9) for needles of 3 or
more ASCII characters; shorter or non-ASCII needles scan (a trigram index cannot serve them,
and it folds ASCII case only), and so does every search on PostgreSQL (it has no such index
yet: a pg_trgm index is the follow-up). The total is an exact ``COUNT(*)`` of the same WHERE up to
:data:`COUNT_CAP`, beyond which it is capped (``total_capped``), read in the same transaction as
the page so the two agree.
"""

from __future__ import annotations

import base64
import binascii
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from clawgate.errors import InvalidRequest
from clawgate.sessions.keys import normalize_agent_id, row_kind
from clawgate.sessions.schema import COLUMNS, decode
from clawgate.sessions.searchindex import PENDING_TABLE

MAX_LIMIT = 1000
MAX_KEYS = 10_000  # a key filter is one SQL parameter per key
DEFAULT_LIMIT = 50
DisplayModel = Callable[[str | None, str | None], tuple[str | None, str | None]]
# Fields the search matches (case-insensitive substring), in reference order.
SEARCH_COLUMNS = ("display_name", "label", "subject", "session_id", "key")
FOLD_FUNCTION = "clawgate_fold"
FTS_TABLE = "sessions_fts"  # trigram index of SEARCH_COLUMNS (schema migration 9)
FTS_MIN_CHARS = 3  # a trigram index needs at least one trigram
# totalCount is exact up to this many matches and capped beyond (counting costs O(matches)).
COUNT_CAP = 1_000


# One ``sessions.list`` row on the wire: the listed columns in their wire names (absent values
# omitted, never null) plus ``kind`` (see ``schema.SessionEntry``, the one declaration).
SessionRow = dict[str, Any]
LISTED = tuple(c for c in COLUMNS if c.listed)
# (column name, wire name, needs decoding) of the listed columns, worked out once: a page
# decodes thousands of values.
_LISTED_PLAN = tuple((c, c.name, c.wire, c.type in ("json", "bool")) for c in LISTED)


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The parameters of ``sessions.list``. ``now_ms`` pins the clock for ``active_minutes``."""

    agent_id: str | None = None
    label: str | None = None
    spawned_by: str | None = None
    channel: str | None = None  # the session's channel, or its last one when it has none
    search: str | None = None
    active_minutes: float | None = None
    include_global: bool = False
    include_unknown: bool = False
    exclude_cron: bool = False
    exclude_subagents: bool = False
    keys: tuple[str, ...] | None = None  # only these keys (e.g. sessions with an active run)
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    cursor: str | None = None  # a previous page's next_cursor (keyset paging)
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
        if self.cursor is not None:
            if self.offset:
                raise InvalidRequest("cursor and offset cannot be combined",
                                     method="sessions.list")
            decode_cursor(self.cursor)  # refuse a bad one before any store work


@dataclass(frozen=True, slots=True)
class ListResult:
    """One page of rows, newest first, with the total that matched (at most ``COUNT_CAP``:
    ``total_capped`` says more matched). ``next_offset`` is None on a page asked for by
    cursor (its position is not counted); ``next_cursor`` continues from any page."""

    rows: tuple[SessionRow, ...]
    total: int
    offset: int
    limit: int
    has_more: bool
    next_offset: int | None
    next_cursor: str | None = None
    total_capped: bool = False


def encode_cursor(updated_at: int, key: str) -> str:
    """The opaque cursor that continues after the row with this sort key."""
    return base64.urlsafe_b64encode(orjson.dumps([updated_at, key])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(updated_at, key) of a cursor from :func:`encode_cursor`; InvalidRequest otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, key = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        updated_at = key = None
    if isinstance(updated_at, bool) or not isinstance(updated_at, int) or \
            not isinstance(key, str):
        raise InvalidRequest("cursor is not a sessions.list nextCursor", method="sessions.list")
    return updated_at, key


def fold(text: str | None) -> str | None:
    """Case folding for search; registered as a SQL function because SQLite's LIKE and lower()
    only fold ASCII, and session names are often not ASCII."""
    return None if text is None else text.casefold()


def run(
    conn: sqlite3.Connection, query: ListQuery, now_ms: int, display_model: DisplayModel | None
) -> ListResult:
    """Run ``query`` on a read connection (autocommit mode, ``fold`` registered)."""
    # The trigram index is SQLite's (FTS5); the PostgreSQL adapter is another connection type.
    where, params = _where(query, now_ms, trigram=isinstance(conn, sqlite3.Connection))
    page_where, page_params = where, params
    if query.cursor is not None:
        updated_at, key = decode_cursor(query.cursor)
        # Written so the (updated_at DESC, key) index seeks to the cursor, then steps on.
        page_where = f"{where} AND updated_at <= ? AND (updated_at < ? OR key > ?)"
        page_params = [*params, updated_at, updated_at, key]
    conn.execute("BEGIN")
    try:
        total = int(conn.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM sessions WHERE {where} LIMIT ?) AS matched",
            [*params, COUNT_CAP + 1]).fetchone()[0])
        found = conn.execute(
            f"SELECT * FROM sessions WHERE {page_where} ORDER BY updated_at DESC, key "
            "LIMIT ? OFFSET ?",
            [*page_params, query.limit + 1, query.offset],
        ).fetchall()
    finally:
        conn.execute("COMMIT")
    more = len(found) > query.limit
    found = found[:query.limit]
    rows = tuple(to_row(r, display_model) for r in found)
    capped = total > COUNT_CAP
    total = min(total, COUNT_CAP)
    end = query.offset + len(rows)
    if capped and query.cursor is None:
        total = max(total, end + more)  # a deep page past the cap still counts its own rows
    next_offset = end if more and query.cursor is None else None
    last = found[-1] if found and more else None
    next_cursor = None if last is None else encode_cursor(int(last["updated_at"]), last["key"])
    return ListResult(rows, total, query.offset, query.limit, more, next_offset, next_cursor,
                      capped)


def to_row(row: sqlite3.Row, display_model: DisplayModel | None) -> SessionRow:
    """A ``sessions`` row in wire shape; ``display_model`` maps (provider, model) for display."""
    out: SessionRow = {}
    for col, name, wire, decoded in _LISTED_PLAN:
        value = row[name]
        if value is not None:
            out[wire] = decode(col, value) if decoded else value
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


def _where(query: ListQuery, now_ms: int, *, trigram: bool = True) -> tuple[str, list[Any]]:
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
    if query.channel is not None:
        # What the row shows as its channel (clients show lastChannel when channel is absent).
        # No index of its own: the page walks the list order and keeps matching rows, so a
        # common channel costs a page; a rare one costs the rows stepped over (see docs).
        clauses.append("COALESCE(channel, last_channel) = ?")
        params.append(query.channel)
    needle = (query.search or "").strip()
    pattern = "%" + _escape_like(fold(needle) or "") + "%"
    if trigram and needle and len(needle) >= FTS_MIN_CHARS and needle.isascii():
        # The trigram index matches a quoted string as a case-insensitive substring of a
        # column (ASCII case folding: hence ASCII needles only). Sessions not indexed yet
        # (searchindex: at most a few hundred) are matched by a scan of their own.
        clauses.append(
            f"rowid IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ? UNION ALL "
            f"SELECT s.rowid FROM {PENDING_TABLE} AS p CROSS JOIN sessions AS s ON s.rowid = p.row "
            f"WHERE {_like('s.')})")
        params.append('"' + needle.replace('"', '""') + '"')
        params += [pattern] * len(SEARCH_COLUMNS)
    elif needle:
        clauses.append(f"({_like('')})")
        params += [pattern] * len(SEARCH_COLUMNS)
    if query.active_minutes is not None:
        clauses.append("updated_at >= ?")
        params.append(now_ms - int(query.active_minutes * 60_000))
    return " AND ".join(clauses), params


def _like(table: str) -> str:
    """Any search column (of ``table``, a prefix such as ``s.``) folded, LIKE a pattern."""
    return " OR ".join(f"{FOLD_FUNCTION}({table}{c}) LIKE ? ESCAPE '\\'" for c in SEARCH_COLUMNS)


def _escape_like(text: str) -> str:
    """Make ``%``, ``_`` and the escape character literal in a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
