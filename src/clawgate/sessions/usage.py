"""Token usage from the store: what ended runs used, bucketed in time, for usage reports.

The runs table records each finished run's token usage (``runs.usage``), its model, provider,
end time and status. Reports aggregate it in SQL into 15-minute buckets per (session, provider,
model) — small enough that any UTC offset, including half- and quarter-hour ones, falls on a
bucket edge, so the caller can assign buckets to calendar days in the time zone it was asked
for without reading every run. Merged runs (collect, steer) are skipped: their tokens are
counted on the run they joined.

Cost is not stored yet; reports carry tokens and leave cost to the price catalogue.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Read = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
BUCKET_MS = 15 * 60_000
FAILED = ("error", "timeout", "aborted", "interrupted")


@dataclass(frozen=True, slots=True)
class Bucket:
    """Runs of one session with one provider/model that ended in one 15-minute bucket."""

    start_ms: int  # the bucket's start, epoch ms
    key: str
    provider: str | None
    model: str | None
    runs: int
    input: int
    output: int
    errors: int
    first_ms: int  # earliest run start in the bucket
    last_ms: int  # latest run end in the bucket


@dataclass(frozen=True, slots=True)
class MessageCounts:
    """Transcript messages of one session in a time window, by kind."""

    user: int = 0
    assistant: int = 0
    tool_calls: int = 0
    tool_results: int = 0
    errors: int = 0

    @property
    def total(self) -> int:
        return self.user + self.assistant + self.tool_results

    def wire(self) -> dict[str, int]:
        return {"total": self.total, "user": self.user, "assistant": self.assistant,
                "toolCalls": self.tool_calls, "toolResults": self.tool_results,
                "errors": self.errors}


class UsageStore:
    """Usage queries of one :class:`~clawgate.sessions.store.SessionStore` (``store.usage``),
    on its reader pool."""

    def __init__(self, read: Read[Any]) -> None:
        self._read = read

    async def buckets(self, start_ms: int, end_ms: int, *, agent_id: str | None = None,
                      key: str | None = None) -> list[Bucket]:
        """Usage of the runs that ended in [start_ms, end_ms], optionally of one agent's
        sessions or one session, in 15-minute buckets."""
        where = ["ended_at BETWEEN ? AND ?", "merged_into IS NULL", "status NOT IN "
                 "('queued', 'running')"]
        params: list[Any] = [start_ms, end_ms]
        if key is not None:
            where.append("key = ?")
            params.append(key)
        elif agent_id is not None:
            prefix = f"agent:{agent_id}:"
            where.append("substr(key, 1, ?) = ?")
            params += [len(prefix), prefix]
        marks = ", ".join("?" for _ in FAILED)
        sql = (
            f"SELECT (ended_at / {BUCKET_MS}) * {BUCKET_MS} AS bucket, key, provider, model, "
            "COUNT(*), "
            "COALESCE(SUM(CAST(json_extract(usage, '$.input') AS INTEGER)), 0), "
            "COALESCE(SUM(CAST(json_extract(usage, '$.output') AS INTEGER)), 0), "
            f"SUM(status IN ({marks})), MIN(started_at), MAX(ended_at) "
            f"FROM runs WHERE {' AND '.join(where)} "
            "GROUP BY bucket, key, provider, model ORDER BY bucket")

        def read(c: sqlite3.Connection) -> list[Bucket]:
            rows = c.execute(sql, [*FAILED, *params]).fetchall()
            return [Bucket(int(r[0]), r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]),
                           int(r[7] or 0), int(r[8]), int(r[9])) for r in rows]

        found: list[Bucket] = await self._read(read)
        return found

    async def messages(self, keys: Sequence[str], start_ms: int,
                       end_ms: int) -> dict[str, MessageCounts]:
        """Message counts per session (current and archived transcripts) in the window."""
        if not keys:
            return {}
        marks = ", ".join("?" for _ in keys)
        sql = ("SELECT key, role, COUNT(*), SUM(tool_calls IS NOT NULL), "
               "SUM(stop_reason IN ('error', 'timeout', 'aborted')) FROM messages "
               f"WHERE key IN ({marks}) AND created_at BETWEEN ? AND ? GROUP BY key, role")

        def read(c: sqlite3.Connection) -> dict[str, MessageCounts]:
            found: dict[str, dict[str, int]] = {}
            for key, role, count, calls, errors in c.execute(sql, [*keys, start_ms, end_ms]):
                counts = found.setdefault(key, {})
                if role == "user":
                    counts["user"] = int(count)
                elif role == "assistant":
                    counts["assistant"] = int(count)
                    counts["tool_calls"] = int(calls or 0)
                    counts["errors"] = int(errors or 0)
                elif role == "tool":
                    counts["tool_results"] = int(count)
            return {k: MessageCounts(**v) for k, v in found.items()}

        counts: dict[str, MessageCounts] = await self._read(read)
        return counts
