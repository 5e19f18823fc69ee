"""Compaction in the transcript: the compaction entries, the context a turn starts from, and the
record of the memory flush (the SQL of session compaction; the policy is in
:mod:`clawgate.agents.compaction`).

Nothing is deleted. A compaction appends one *compaction entry* to the transcript: a
``role: "system"`` message whose content is the summary and whose ``compaction`` key (kept in
the ``extra`` column) says where the verbatim part starts::

    {"role": "system", "content": "<summary>",
     "compaction": {"firstKeptId": 41, "firstKeptSeq": 17, "tokensBefore": 183000,
                    "tokensAfter": 21000, "trigger": "threshold", ...}}

The context of the next turn is then the latest entry (as the summary) and the messages from
``firstKeptSeq`` on, as in OpenClaw's pi transcripts (``firstKeptEntryId``). The memory flush
turn's messages carry ``"silent": "memory_flush"``: they are in the transcript (what the agent
wrote, and when) but never in a prompt, in ``chat.history`` or in a channel; the flush prompt
stored after the latest compaction entry is the "flushed in this cycle" record, so a restart
does not flush twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clawgate.errors import SessionError
from clawgate.sessions.transcript import StoredMessage

COMPACTION = "compaction"  # the extra key of a compaction entry
SILENT = "silent"  # the extra key of a message no prompt, history or channel shows
MEMORY_FLUSH = "memory_flush"  # SILENT's value on the memory flush turn's messages


def entry_of(message: StoredMessage) -> dict[str, Any] | None:
    """The ``compaction`` record of a compaction entry, else None."""
    if message.role != "system" or not message.extra:
        return None
    record = message.extra.get(COMPACTION)
    return record if isinstance(record, dict) else None


def silent(message: StoredMessage) -> bool:
    """True for a message kept out of prompts, chat history and channels (the flush turn)."""
    return bool(message.extra and message.extra.get(SILENT))


@dataclass(frozen=True, slots=True)
class View:
    """What a turn's context is built from: the latest compaction entry (None before the
    first compaction) and the stored messages after its cut, oldest first (silent ones and
    older compaction entries included; :attr:`messages` leaves them out). ``complete`` is False
    when more messages lie after the cut than were read."""

    session_id: str
    entry: StoredMessage | None
    rows: tuple[StoredMessage, ...]
    complete: bool = True

    @classmethod
    def of(cls, session_id: str, read: Sequence[StoredMessage], limit: int) -> View:
        """The view of what :func:`context` returned when asked for ``limit + 1`` rows."""
        entry = read[0] if read and entry_of(read[0]) is not None else None
        rows = list(read[1:] if entry is not None else read)
        complete = len(rows) <= limit
        return cls(session_id, entry, tuple(rows[-limit:] if limit > 0 else ()), complete)

    @property
    def messages(self) -> list[StoredMessage]:
        """The messages a prompt shows verbatim: no silent message, no compaction entry."""
        return [m for m in self.rows if not silent(m) and entry_of(m) is None]

    @property
    def summary(self) -> str | None:
        if self.entry is None:
            return None
        return self.entry.content if isinstance(self.entry.content, str) else ""

    @property
    def count(self) -> int:
        """How many compactions this session's transcript holds up to its latest entry."""
        record = entry_of(self.entry) if self.entry is not None else None
        return int(record.get("count", 1)) if record else 0


def latest(c: sqlite3.Connection, session_id: str) -> StoredMessage | None:
    """The newest compaction entry of a transcript (through the partial index on system
    messages, so it costs no scan of the transcript)."""
    rows = c.execute("SELECT * FROM messages WHERE session_id = ? AND role = 'system' "
                     "AND archived = 0 ORDER BY seq DESC", (session_id,))
    for row in rows:
        message = StoredMessage.from_row(row)
        if entry_of(message) is not None:
            return message
    return None


def context(c: sqlite3.Connection, session_id: str, limit: int) -> list[StoredMessage]:
    """The latest compaction entry (if any) followed by the newest ``limit`` messages from its
    cut on (all messages of the transcript before any compaction), oldest first."""
    entry = latest(c, session_id)
    start = int((entry_of(entry) or {}).get("firstKeptSeq", 1)) if entry is not None else 1
    rows = c.execute("SELECT * FROM messages WHERE session_id = ? AND archived = 0 AND seq >= ? "
                     "ORDER BY seq DESC LIMIT ?", (session_id, start, limit)).fetchall()
    found = [StoredMessage.from_row(r) for r in reversed(rows)]
    return [entry, *found] if entry is not None else found


def flushed(c: sqlite3.Connection, session_id: str, after_seq: int) -> bool:
    """True when a memory flush prompt was stored after ``after_seq`` (the latest compaction
    entry's seq, 0 before any): the flush of this compaction cycle has run."""
    rows = c.execute("SELECT * FROM messages WHERE session_id = ? AND archived = 0 AND seq > ? "
                     "AND role = 'user' AND extra IS NOT NULL", (session_id, after_seq))
    for row in rows:
        extra = StoredMessage.from_row(row).extra or {}
        if extra.get(SILENT) == MEMORY_FLUSH:
            return True
    return False


def check_cut(c: sqlite3.Connection, key: str, session_id: str,
              record: dict[str, Any]) -> None:
    """Refuse a compaction entry (SessionError) when the session moved on to another
    transcript (reset) or the entry's cut points at no message of this one."""
    row = c.execute("SELECT session_id FROM sessions WHERE key = ?", (key,)).fetchone()
    if row is None or row[0] != session_id:
        raise SessionError(f"session {key!r} was reset before its compaction completed",
                           session_key=key)
    kept = c.execute("SELECT id FROM messages WHERE session_id = ? AND seq = ?",
                     (session_id, record.get("firstKeptSeq"))).fetchone()
    if kept is None or kept[0] != record.get("firstKeptId"):
        raise SessionError(f"session {key!r}: the compaction cut points at no message",
                           session_key=key)
