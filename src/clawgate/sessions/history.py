"""The turn context of recently active sessions, kept decoded between turns.

A turn starts by reading its session's context (the latest compaction entry and the newest
messages after its cut, :func:`clawgate.sessions.compaction.context`) inside its admission
transaction; decoding a few hundred rows into :class:`StoredMessage` made a turn on a session
with history three times the cost of one on a new session. :class:`HistoryCache` keeps what
the last turn of a session read and appended, so the next one reads nothing.

It is exact, not a guess: an entry is used only when its transcript (``session_id``) is the
session's current one and its newest ``seq`` is the transcript's newest, which the turn's own
append computes anyway; any other write to the transcript (an append, a compaction entry, a
reset) moves one of them and the entry is read again. The one write that moves neither,
archiving a run's messages, drops the entry. Entries live on the writer thread only (every
use is inside a write job), SQLite only (on PostgreSQL other replicas write the same
transcripts), and hold about :data:`MAX_BYTES` in all (each message weighed once, by its
text and a fixed overhead: a count of messages would let a few huge tool results take any
amount of memory), least recently used sessions dropped first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from clawgate.sessions.compaction import entry_of
from clawgate.sessions.transcript import StoredMessage

# About what the kept contexts may take over all sessions: 8 MiB holds 200 sessions of 50 short
# messages (a decoded message of 80 characters takes ~700 bytes).
MAX_BYTES = 8 << 20
MESSAGE_OVERHEAD = 600  # bytes of a decoded message besides its text (object, ids, key)


@dataclass(frozen=True, slots=True)
class _Entry:
    session_id: str
    limit: int  # how many messages after the cut the context holds at most
    context: tuple[StoredMessage, ...]  # [compaction entry?] + newest messages, oldest first
    newest: int  # the transcript's newest seq when the entry was made
    weights: tuple[int, ...]  # each message's weight (see _weight), aligned with context


class HistoryCache:
    """Session key → its last turn context (see the module docstring)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self._max = MAX_BYTES if max_bytes is None else max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._size = 0
        self.hits = 0  # contexts given without reading the store
        self.misses = 0  # contexts read (no entry, or the transcript moved on)

    def context(self, key: str, limit: int,
                appended: Sequence[StoredMessage]) -> list[StoredMessage] | None:
        """The context after ``appended`` (the messages this transaction just added to the
        session's current transcript) when the entry was made from that transcript as it was
        just before them; else None (read it from the store, then :meth:`put` it)."""
        entry = self._entries.get(key)
        if entry is None or entry.limit != limit or not _follows(entry, appended):
            self.misses += 1
            return None
        self.hits += 1
        return self._advance(key, entry, appended)

    def put(self, key: str, session_id: str, limit: int,
            context: Sequence[StoredMessage], newest: int) -> None:
        """Remember the context just read (``newest``: the transcript's newest seq)."""
        self._set(key, _Entry(session_id, limit, tuple(context), newest,
                              tuple(map(_weight, context))))

    def appended(self, key: str, messages: Sequence[StoredMessage]) -> None:
        """Messages just added to the session's current transcript (a run's end)."""
        entry = self._entries.get(key)
        if entry is None or not messages:
            return
        if _follows(entry, messages):
            self._advance(key, entry, messages)
        else:
            self.drop(key)

    def drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= sum(entry.weights)

    def _advance(self, key: str, entry: _Entry,
                 messages: Sequence[StoredMessage]) -> list[StoredMessage]:
        # A compaction entry heads the context and stays; the messages after it are the
        # newest ``limit`` (as compaction.context reads them).
        skip = 1 if entry.context and entry_of(entry.context[0]) else 0
        body = [*entry.context[skip:], *messages][-entry.limit:]
        weights = [*entry.weights[skip:], *map(_weight, messages)][-entry.limit:]
        context = [*entry.context[:skip], *body]
        self._set(key, _Entry(entry.session_id, entry.limit, tuple(context), messages[-1].seq,
                              (*entry.weights[:skip], *weights)))
        return context

    def _set(self, key: str, entry: _Entry) -> None:
        self.drop(key)
        weight = sum(entry.weights)
        if weight > self._max:
            return
        self._entries[key] = entry
        self._size += weight
        while self._size > self._max:
            _, oldest = self._entries.popitem(last=False)
            self._size -= sum(oldest.weights)


def _weight(message: StoredMessage) -> int:
    """About what ``message`` takes decoded: its text (parts and tool calls as JSON) and a
    fixed overhead."""
    content = message.content
    size = MESSAGE_OVERHEAD + (len(content) if isinstance(content, str)
                               else len(orjson.dumps(content)))
    if message.tool_calls:
        size += len(orjson.dumps(message.tool_calls))
    return size


def _follows(entry: _Entry, messages: Sequence[StoredMessage]) -> bool:
    """Whether ``messages`` (just appended, each carrying its transcript) come right after
    what ``entry`` was made from."""
    return bool(messages) and entry.session_id == messages[0].session_id \
        and entry.newest == messages[0].seq - 1
