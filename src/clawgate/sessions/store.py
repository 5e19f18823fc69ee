"""The session store: sessions, transcripts and runs in one SQLite file (``<state>/clawgate.db``).

Threading model. SQLite never runs on the event loop thread:

- one *writer* thread owns the only write connection; write jobs reach it through a queue, and
  each caller awaits a future that resolves after its job has been **committed**. The writer
  commits whatever is queued in one transaction (group commit) with a SAVEPOINT per job, so one
  failing job rolls back alone, raises to its own caller, and the writer carries on;
- reads run on a small pool of reader threads, each with its own ``query_only`` connection.
  WAL lets them read while the writer writes; a read started after a write returned sees it.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``. A commit is in the WAL file (the OS
page cache) before the caller hears of it, so killing the process — even with SIGKILL — loses
nothing committed; only an OS crash or power cut can lose the last few commits (FULL would fsync
every commit to close that window, at a large cost per write).

Backends. Where the data lives is a :class:`Backend`: :class:`SqliteBackend` (the default, the
file above) or :class:`~clawgate.sessions.postgres.PostgresBackend` (``postgresql://...``, for
several gateways on one database). Both run the same jobs on the same threads; a backend only
opens connections (creating and migrating the database), names its transaction start and
classifies storage failures. A lost PostgreSQL connection fails the jobs in flight with
``store_unavailable`` and is opened again for the next ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from clawgate.errors import InvalidRequest, SessionError, SessionNotFound, Unavailable
from clawgate.ids import new_id
from clawgate.providers.base import Message
from clawgate.sessions import compaction, keys, listing, postgres, runs, searchindex, usage
from clawgate.sessions.backend import SqliteBackend, backend_for
from clawgate.sessions.channelstore import ChannelStore, Delivery
from clawgate.sessions.compaction import View
from clawgate.sessions.cronstore import CronStore
from clawgate.sessions.doorbell import Doorbell, LocalDoorbell, PgDoorbell
from clawgate.sessions.events import EventLog, SideWriter
from clawgate.sessions.history import HistoryCache
from clawgate.sessions.leases import Lease, lease_for
from clawgate.sessions.listing import DisplayModel, ListQuery, ListResult
from clawgate.sessions.replica import ReplicaTable
from clawgate.sessions.schema import Run, SessionEntry, check_fields
from clawgate.sessions.transcript import StoredMessage, check_messages, export_jsonl
from clawgate.sessions.writer import Writer
from clawgate.types import RunStatus, now_ms

log = logging.getLogger("clawgate.store")
T = TypeVar("T")
COMPLETE_RETRY_S = 60.0  # how long a replica retries recording a run's end


class SessionStore:
    """Sessions, transcripts and runs of one gateway, in the SQLite file at ``path`` — or in
    the PostgreSQL database when ``path`` is a ``postgresql://`` URL (:func:`backend_for`).

    Use ``async with SessionStore(path) as store`` (or ``open()``/``close()``). ``clock`` returns
    epoch milliseconds (tests pass a fake one). Session keys are canonicalized with
    :func:`keys.canonical`, so a key that breaks the grammar raises ``SessionKeyError``.
    """

    def __init__(
        self, path: Path | str, *, clock: Callable[[], int] = now_ms, readers: int = 4
    ) -> None:
        self.backend = backend_for(path)
        # What ``status`` and errors show: the file, or the URL without its password.
        self.path: Path | str = self.backend.path if isinstance(
            self.backend, SqliteBackend) else self.backend.where
        self._clock = clock
        self._reader_count = readers
        self._writer: Writer | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # The replica whose runs this store records (several gateways on one PostgreSQL
        # database: runs name their owner and start through a claim, see sessions/runs.py);
        # None on SQLite, where one process owns every run.
        self.owner: str | None = None
        self._side: SideWriter | None = None  # the events log's writer (PostgreSQL)
        # Fills SQLite's search index in batches (sessions/searchindex.py); None on PostgreSQL.
        self._indexer: searchindex.Indexer | None = None
        # Turn contexts kept between turns (sessions/history.py; only the writer thread uses
        # it). SQLite only: on PostgreSQL other replicas write the same transcripts.
        self._history = HistoryCache() if isinstance(self.backend, SqliteBackend) else None

    async def open(self) -> None:
        """Create or migrate the database and start the writer and reader threads."""
        if self._writer is not None:
            raise Unavailable("session store is already open")
        writer = Writer(self.backend)
        await writer.start()
        self._writer = writer
        self._readers = concurrent.futures.ThreadPoolExecutor(
            self._reader_count, "clawgate-db-read"
        )
        if isinstance(self.backend, SqliteBackend):
            await writer.submit(searchindex.flush)  # rows left pending by the last process
            self._indexer = searchindex.Indexer(writer.submit)

    async def close(self) -> None:
        """Commit the queued writes, then stop every thread and close every connection."""
        writer, readers, side = self._writer, self._readers, self._side
        indexer, self._indexer = self._indexer, None
        if indexer is not None:
            await indexer.close()  # before the writer stops: a flush in flight uses it
        self._writer = None
        self._readers = None
        self._side = None
        if side is not None:
            await side.close()
        if readers is not None:
            await asyncio.to_thread(self._stop_readers, readers)
        if writer is not None:
            await writer.stop()

    async def __aenter__(self) -> SessionStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- health -------------------------------------------------------------------------------

    def now(self) -> int:
        """The store's clock (epoch milliseconds): the times it records."""
        return self._clock()

    @property
    def failure(self) -> str | None:
        """Why the store cannot write (disk full, database corrupt, I/O error), or None."""
        return None if self._writer is None else self._writer.failure

    @property
    def context_reads(self) -> tuple[int, int]:
        """(hits, misses) of the turn contexts kept between turns (sessions/history.py):
        contexts given without reading the transcript, and contexts read; (0, 0) on
        PostgreSQL."""
        cache = self._history
        return (0, 0) if cache is None else (cache.hits, cache.misses)

    async def probe_write(self) -> str | None:
        """Try one write the size of a large message (64 KiB, into a scratch table, deleted in
        the same transaction) and return why the store cannot write, or None when it can
        (which clears an earlier failure)."""
        def job(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO store_probe (data) VALUES (?)", (bytes(65536),))
            c.execute("DELETE FROM store_probe")

        with contextlib.suppress(Unavailable):
            await self._write(job)
        return self.failure

    # -- sessions -----------------------------------------------------------------------------

    async def get(self, key: str) -> SessionEntry | None:
        """The session under ``key``, or None."""
        k = keys.canonical(key)
        return await self._read(lambda c: _entry(c, k))

    async def count(self) -> int:
        """How many sessions exist."""
        return await self._read(lambda c: int(c.execute("SELECT COUNT(*) FROM sessions")
                                              .fetchone()[0]))

    async def ensure(self, key: str, *, agent_id: str | None = None, **fields: Any) -> SessionEntry:
        """The session under ``key``, created with ``fields`` if missing (existing sessions are
        returned unchanged). ``agent_id`` defaults to the key's agent (or ``main``); it must
        match the key's agent."""
        k = keys.canonical(key)
        agent = _agent_for(k, agent_id)
        values = check_fields(fields, "sessions.ensure")
        now, sid = self._clock(), new_id()
        row = {"key": k, "agent_id": agent, "session_id": sid, "created_at": now,
               "updated_at": now, "started_at": now, **values}

        def job(c: sqlite3.Connection) -> tuple[SessionEntry, bool]:
            names = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            created = c.execute(
                f"INSERT INTO sessions ({names}) VALUES ({marks}) ON CONFLICT (key) DO NOTHING",
                list(row.values()),
            ).rowcount > 0
            return _must(c, k), created

        entry, created = await self._write(job)
        if created:
            self._created()
        return entry

    async def patch(self, key: str, **fields: Any) -> SessionEntry:
        """Set fields of an existing session (None clears one) and touch ``updated_at``. An unknown
        or read-only field name raises ``InvalidRequest`` naming it, and nothing changes."""
        k = keys.canonical(key)
        values = check_fields(fields, "sessions.patch")
        values["updated_at"] = self._clock()

        def job(c: sqlite3.Connection) -> SessionEntry:
            sets = ", ".join(f"{name} = ?" for name in values)
            cur = c.execute(f"UPDATE sessions SET {sets} WHERE key = ?", [*values.values(), k])
            if cur.rowcount == 0:
                raise _not_found(k)
            return _must(c, k)

        return await self._write(job)

    async def reset(self, key: str) -> SessionEntry:
        """Start a new transcript under ``key``: a new ``session_id``, the old messages archived
        (kept), token counters zeroed; label, overrides, policies and routing are kept."""
        k = keys.canonical(key)
        now, sid = self._clock(), new_id()

        def job(c: sqlite3.Connection) -> SessionEntry:
            old = _must(c, k)
            c.execute("UPDATE messages SET archived = 1 WHERE session_id = ?", (old.session_id,))
            c.execute(
                "UPDATE sessions SET session_id = ?, started_at = ?, updated_at = ?, "
                "input_tokens = 0, output_tokens = 0, total_tokens = 0, cache_read_tokens = NULL, "
                "cache_write_tokens = NULL, cost_usd = NULL, aborted_last_run = 0 WHERE key = ?",
                (sid, now, now, k),
            )
            return _must(c, k)

        return await self._write(job)

    async def delete(self, key: str, main_key: str = keys.DEFAULT_MAIN_KEY) -> bool:
        """Remove the session row and archive (keep) its messages; False when there was none.
        The agent's main session (``agent:<id>:<main_key>``) is refused with SessionError."""
        k = keys.canonical(key)
        agent = keys.agent_of(k)
        if agent is not None and k == keys.main_key(agent, main_key):
            raise SessionError(f"the main session {k!r} cannot be deleted", session_key=k)

        def job(c: sqlite3.Connection) -> bool:
            c.execute("UPDATE messages SET archived = 1 WHERE key = ?", (k,))
            return c.execute("DELETE FROM sessions WHERE key = ?", (k,)).rowcount > 0

        return await self._write(job)

    async def list_sessions(
        self, query: ListQuery, *, display_model: DisplayModel | None = None
    ) -> ListResult:
        """One page of sessions.list (reference §4.3), filtered and paged in SQL.
        ``display_model`` must be a pure lookup: it runs on a reader thread, once per row."""
        now = query.now_ms if query.now_ms is not None else self._clock()
        return await self._read(lambda c: listing.run(c, query, now, display_model))

    # -- transcripts --------------------------------------------------------------------------

    async def append(self, key: str, messages: Sequence[Message]) -> list[StoredMessage]:
        """Append OpenAI-shaped messages to the session's current transcript in one transaction
        and touch ``updated_at``. The session must exist (``ensure`` it first): appending to a
        missing key raises SessionNotFound rather than inventing a session with no agent."""
        k = keys.canonical(key)
        new = check_messages(messages)
        now = self._clock()

        return await self._write(lambda c: runs.append(c, k, new, now))

    async def transcript(
        self, key: str, limit: int | None = None, include_archived: bool = False
    ) -> list[StoredMessage]:
        """Messages in order, oldest first. By default the current session's; with
        ``include_archived`` every message ever stored under the key (also after delete).
        ``limit`` keeps the newest ``limit`` messages."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise InvalidRequest("limit must be a non-negative integer")
        k = keys.canonical(key)
        cap = -1 if limit is None else limit  # SQLite: LIMIT -1 means no limit

        def read(c: sqlite3.Connection) -> list[StoredMessage]:
            if include_archived:
                sql = "SELECT * FROM messages WHERE key = ? ORDER BY id DESC LIMIT ?"
                args = (k, cap)
            else:
                sid = _must(c, k).session_id
                sql = ("SELECT * FROM messages WHERE session_id = ? AND archived = 0 "
                       "ORDER BY seq DESC LIMIT ?")
                args = (sid, cap)
            rows = c.execute(sql, args).fetchall()
            return [StoredMessage.from_row(r) for r in reversed(rows)]

        return await self._read(read)

    async def context(self, key: str, limit: int) -> View:
        """What the session's next prompt is built from: its latest compaction entry and up to
        ``limit`` messages after its cut (:class:`~clawgate.sessions.compaction.View`)."""
        k = keys.canonical(key)

        def read(c: sqlite3.Connection) -> View:
            c.execute("BEGIN")  # the session id and its messages from one snapshot
            try:
                sid = _must(c, k).session_id
                return View.of(sid, compaction.context(c, sid, limit + 1), limit)
            finally:
                c.execute("COMMIT")

        return await self._read(read)

    async def flushed(self, key: str, session_id: str, after_seq: int) -> bool:
        """True when the memory flush of the compaction cycle that began after message
        ``after_seq`` of transcript ``session_id`` has run (its prompt is stored)."""
        return await self._read(lambda c: compaction.flushed(c, session_id, after_seq))

    async def compact(self, key: str, session_id: str, message: Message) -> StoredMessage:
        """Append a compaction entry to transcript ``session_id`` of ``key``; SessionError when
        the session was reset meanwhile or the entry's cut points at no message of it."""
        k = keys.canonical(key)
        new = check_messages([message], "sessions.compact")
        record = (new[0].extra or {}).get(compaction.COMPACTION)
        if new[0].role != "system" or not isinstance(record, dict):
            raise InvalidRequest("a compaction entry is a system message with a compaction "
                                 "record", method="sessions.compact")
        now = self._clock()

        def job(c: sqlite3.Connection) -> StoredMessage:
            compaction.check_cut(c, k, session_id, record)
            return runs.append(c, k, new, now)[0]

        return await self._write(job)

    async def export_jsonl(self, key: str, *, cwd: str = "") -> str:
        """The current transcript in OpenClaw's pi JSONL format (reference §4.4)."""
        k = keys.canonical(key)

        def read(c: sqlite3.Connection) -> str:
            c.execute("BEGIN")  # the entry and its messages from one snapshot
            try:
                entry = _must(c, k)
                rows = c.execute("SELECT * FROM messages WHERE session_id = ? AND archived = 0 "
                                 "ORDER BY seq", (entry.session_id,)).fetchall()
            finally:
                c.execute("COMMIT")
            return export_jsonl(entry, [StoredMessage.from_row(r) for r in rows], cwd=cwd)

        return await self._read(read)

    # -- runs ---------------------------------------------------------------------------------

    async def discard_run(self, run_id: str) -> bool:
        """Delete a still-queued run record whose message was refused; False if there was none."""
        return await self._write(lambda c: runs.discard(c, run_id))

    async def begin_run(self, run_id: str, key: str, messages: Sequence[Message], *,
                        history: int = 0) -> list[StoredMessage]:
        """Start a run: its input joins the transcript, in one transaction; returns the newest
        ``history`` messages (the turn's context) read in that same transaction."""
        k = keys.canonical(key)
        now = self._clock()
        cache = self._history
        return await self._write(
            lambda c: runs.begin(c, run_id, k, messages, now, history, cache))

    async def claim_run(self, run_id: str, key: str, messages: Sequence[Message], *,
                        history: int = 0) -> list[StoredMessage] | None:
        """Start a queued run for this store's replica (``owner``) as ``begin_run`` does, or
        None while the session is busy on another replica or another replica's run is ahead
        (``runs.claim``). Without an owner (SQLite) it is ``begin_run``."""
        k = keys.canonical(key)
        now, owner = self._clock(), self.owner
        if owner is None:
            return await self.begin_run(run_id, k, messages, history=history)
        return await self._write(
            lambda c: runs.claim(c, run_id, k, messages, now, owner, history))

    async def open_owners(self) -> list[str | None]:
        """The other replicas that own open runs (``runs.open_owners``)."""
        owner = self.owner
        if owner is None:
            return []
        return await self._read(lambda c: runs.open_owners(c, owner))

    async def owned_open_runs(self) -> list[runs.Taken]:
        """This replica's open runs (``runs.owned_open``)."""
        owner = self.owner
        if owner is None:
            return []
        return await self._read(lambda c: runs.owned_open(c, owner))

    async def take_over_runs(self, dead: Sequence[str | None]) -> list[runs.Taken]:
        """Move the open runs of dead replicas to this one (``runs.take_over``)."""
        owner = self.owner
        if owner is None or not dead:
            return []
        now = self._clock()
        return await self._write(lambda c: runs.take_over(c, list(dead), owner, now))

    async def admit(self, run_id: str, key: str, messages: Sequence[Message], *,
                    agent_id: str | None = None, channel: str | None = None,
                    inbound: tuple[str, str, str] | None = None,
                    delivery: Delivery | None = None) -> tuple[SessionEntry, bool]:
        """Ensure the session and queue the run in one transaction (one trip to the writer);
        returns the session and whether this admission created it. A session whose send
        policy is ``deny`` refuses the message and nothing is stored. ``inbound`` (channel,
        account, platform message id) dedupes a channel message in the same transaction
        (DuplicateMessage when it was seen); ``delivery`` is where the run's reply goes (its
        intent is created when the run completes)."""
        entry, created, _history = await self.admit_and_begin(
            run_id, key, messages, starts=None, agent_id=agent_id, channel=channel,
            inbound=inbound, delivery=delivery)
        return entry, created

    async def admit_and_begin(
        self, run_id: str, key: str, messages: Sequence[Message], *,
        starts: Callable[[Any], int | None] | None, agent_id: str | None = None,
        channel: str | None = None, inbound: tuple[str, str, str] | None = None,
        delivery: Delivery | None = None, session_id: str | None = None,
        admitted_at: int | None = None,
    ) -> tuple[SessionEntry, bool, list[StoredMessage] | None]:
        """``admit``, and in the same transaction (one trip to the writer) start the run as
        ``begin_run`` does when ``starts(session row)`` gives a history size: for a message
        its session's lane will run at once. Returns the session, whether it was created and
        the turn's context (``begin_run``'s result), or None when the run stays queued.
        ``session_id`` and ``admitted_at`` (epoch ms): the new session's transcript id and the
        admission's time when the caller chose them already (``agents/admission.py``)."""
        k, now, admit = self._admission(run_id, key, messages, agent_id=agent_id,
                                        channel=channel, inbound=inbound, delivery=delivery,
                                        session_id=session_id, admitted_at=admitted_at)
        owner, cache = self.owner, self._history

        def job(c: sqlite3.Connection) -> tuple[sqlite3.Row, bool, list[StoredMessage] | None]:
            row, created = admit(c)
            history = None if starts is None else starts(row)
            if history is None:
                return row, created, None
            if owner is not None:  # another replica may be running the session
                return row, created, runs.claim(c, run_id, k, messages, now, owner, history)
            return row, created, runs.begin(c, run_id, k, messages, now, history, cache,
                                            sid=row["session_id"], touch=not created)

        row, created, begun = await self._write(job)
        if created:
            self._created()
        return SessionEntry.from_row(row), created, begun

    async def admit_and_complete(
        self, run_id: str, key: str, messages: Sequence[Message], final: Sequence[Message], *,
        agent_id: str | None, channel: str | None, session_id: str, admitted_at: int,
        status: RunStatus, stop_reason: str | None = None, error: str | None = None,
        usage: dict[str, Any] | None = None, model: str | None = None,
        provider: str | None = None, merged: Sequence[str] = (), cost: float | None = None,
        fallbacks: Sequence[dict[str, Any]] | None = None,
    ) -> tuple[list[StoredMessage], bool]:
        """A whole run in one transaction: admitted and started at ``admitted_at`` (as
        ``admit_and_begin``), ended now with its ``final`` messages (as ``complete_run``) — for
        a turn that ran before its message was stored (``agents/admission.py``). Returns what
        joined the transcript (input, then final) and whether the session was created. SQLite
        only: on several replicas a run must be claimed before it runs."""
        if self.owner is not None:
            raise InvalidRequest("a run is stored with its reply only on a store of one replica")
        k, _admitted, admit = self._admission(
            run_id, key, messages, agent_id=agent_id, channel=channel, inbound=None,
            delivery=None, session_id=session_id, admitted_at=admitted_at)
        now, cache = self._clock(), self._history

        def job(c: sqlite3.Connection) -> tuple[list[StoredMessage], bool]:
            row, created = admit(c)
            started = runs.begin(c, run_id, k, messages, admitted_at, len(messages), cache,
                                 sid=row["session_id"], touch=not created)
            ended = runs.complete(
                c, run_id, k, final, now, status=status, stop_reason=stop_reason, error=error,
                usage=usage, model=model, provider=provider, merged=tuple(merged), cost=cost,
                fallbacks=fallbacks, cache=cache)
            return started[-len(messages):] + ended, created

        stored, created = await self._write(job)
        if created:
            self._created()
        return stored, created

    def _admission(
        self, run_id: str, key: str, messages: Sequence[Message], *, agent_id: str | None,
        channel: str | None, inbound: tuple[str, str, str] | None, delivery: Delivery | None,
        session_id: str | None, admitted_at: int | None,
    ) -> tuple[str, int, Callable[[sqlite3.Connection], tuple[sqlite3.Row, bool]]]:
        """Check an admission's input and make its job (``runs.admit``); returns the canonical
        key, the admission's time and the job."""
        k = keys.canonical(key)
        agent = _agent_for(k, agent_id)
        values = check_fields({"channel": channel} if channel else {}, "sessions.ensure")
        check_messages(messages, "runs.queue")
        now = self._clock() if admitted_at is None else admitted_at
        owner = self.owner
        session = {"key": k, "agent_id": agent, "session_id": session_id or new_id(),
                   "created_at": now, "updated_at": now, "started_at": now, **values}

        def refuse_denied(row: sqlite3.Row) -> None:
            if row["send_policy"] == "deny":
                raise SessionError("send blocked by session policy", session_key=k)

        def admit(c: sqlite3.Connection) -> tuple[sqlite3.Row, bool]:
            return runs.admit(c, run_id, k, messages, now, session=session,
                              check=refuse_denied, inbound=inbound, delivery=delivery,
                              owner=owner)

        return k, now, admit

    async def complete_run(
        self, run_id: str, key: str, messages: Sequence[Message], *, status: RunStatus,
        stop_reason: str | None = None, error: str | None = None,
        usage: dict[str, Any] | None = None, model: str | None = None,
        provider: str | None = None, merged: Sequence[str] = (), cost: float | None = None,
        fallbacks: Sequence[dict[str, Any]] | None = None, archive_from: int | None = None,
    ) -> list[StoredMessage]:
        """End a run: final messages, run record and session counters in one transaction
        (``cost`` in USD; ``fallbacks``: the failed model attempts, kept on the run;
        ``archive_from``: the run's messages are archived, see ``runs.complete``); returns the
        messages it appended and kept (for the transcript's live subscribers)."""
        k = keys.canonical(key)
        now, owner, cache = self._clock(), self.owner, self._history

        def job(c: sqlite3.Connection) -> list[StoredMessage]:
            return runs.complete(
                c, run_id, k, messages, now, status=status, stop_reason=stop_reason,
                error=error, usage=usage, model=model, provider=provider, merged=tuple(merged),
                cost=cost, fallbacks=fallbacks, archive_from=archive_from, owner=owner,
                cache=cache)

        if owner is None:
            return await self._write(job)
        # Several replicas: a run left "running" would hold its session on every replica, so
        # its end is retried while the database is away (a restart); a retry after a commit
        # that went through records nothing twice (runs.complete).
        deadline, wait = time.monotonic() + COMPLETE_RETRY_S, 0.1
        while True:
            try:
                return await self._write(job)
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(wait)
                wait = min(wait * 2, 1.0)

    async def recover_runs(self, *, rerun: bool = False) -> tuple[int, list[runs.Resumable]]:
        """Close runs left open by a killed process. Returns how many were marked
        ``interrupted`` and, with ``rerun``, the queued runs (never started) left queued so the
        engine runs them again: ``(run_id, key, input messages)``."""
        now = self._clock()
        return await self._write(lambda c: runs.recover(c, now, rerun=rerun))

    async def interrupt_run(self, run_id: str) -> None:
        """Mark one open run ``interrupted`` (its input joins the transcript if it had not)."""
        now = self._clock()
        await self._write(lambda c: runs.interrupt(c, run_id, now))

    async def get_run(self, run_id: str) -> Run | None:
        """The run with that id, or None."""
        return await self._read(lambda c: _run(c, run_id))

    # -- usage reports ------------------------------------------------------------------------

    async def usage_cost(self, start_ms: int, end_ms: int) -> dict[str, Any]:
        """``usage.cost``: tokens and costs of the runs that ended in [start, end), by UTC day
        (see :mod:`clawgate.sessions.usage`)."""
        now = self._clock()
        return await self._read(lambda c: usage.cost_summary(c, start_ms, end_ms, now))

    async def sessions_usage(self, start_ms: int, end_ms: int, *, key: str | None = None,
                             limit: int = 100) -> dict[str, Any]:
        """``sessions.usage``: per-session totals and aggregates over [start, end)."""
        now = self._clock()
        k = None if key is None else keys.canonical(key)
        return await self._read(
            lambda c: usage.sessions_usage(c, start_ms, end_ms, now, key=k, limit=limit))

    async def session_usage_details(self, session_keys: Sequence[str], start_ms: int,
                                    end_ms: int) -> dict[str, dict[str, Any]]:
        """Per-session activity span, model and day splits and message counts over
        [start, end) (``usage.session_details``)."""
        ks = [keys.canonical(k) for k in session_keys]
        return await self._read(lambda c: usage.session_details(c, ks, start_ms, end_ms))

    # -- plumbing -----------------------------------------------------------------------------

    def _created(self) -> None:
        """A session was created: its search-index row is pending until the next flush."""
        if self._indexer is not None:
            self._indexer.created()

    async def flush_search_index(self) -> int:
        """Index the pending sessions now (SQLite; 0 on PostgreSQL); returns how many."""
        if self._indexer is None:
            return 0
        return await self._write(searchindex.flush)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise Unavailable("session store is not open")
        return await self._writer.submit(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None:
            raise Unavailable("session store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        for attempt in (1, 2):
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:  # opened on first use, and again after a lost connection
                conn = self._local.conn = self.backend.open_reader()
                with self._lock:
                    self._read_conns.append(conn)
            try:
                return fn(conn)
            except Exception as exc:
                error = self.backend.storage_error(exc)
                if error is None:
                    raise
                if self.backend.alive(conn):
                    raise error from exc
                self._drop_reader(conn)
                if attempt == 2:
                    raise error from exc
                # A read is safe to repeat: once more, on a new connection.
        raise AssertionError("unreachable")

    def _drop_reader(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._read_conns:
                self._read_conns.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def _stop_readers(self, readers: concurrent.futures.ThreadPoolExecutor) -> None:
        readers.shutdown(wait=True)
        with self._lock:
            conns, self._read_conns = self._read_conns, []
        for conn in conns:
            conn.close()

    # -- channels -----------------------------------------------------------------------------

    @functools.cached_property
    def channels(self) -> ChannelStore:
        """Inbound dedupe, outbound intents and receipts, pairing and per-account state
        (``sessions.channelstore``), on this store's threads."""
        return ChannelStore(self._write, self._read, self._clock)

    # -- leases -------------------------------------------------------------------------------

    def lease(self, name: str) -> Lease:
        """The lease ``name`` on this store's database: one holder across every process on it,
        released when the holder dies (:mod:`clawgate.sessions.leases`)."""
        location = self.backend.url if isinstance(self.backend, postgres.PostgresBackend) \
            else self.backend.path if isinstance(self.backend, SqliteBackend) else None
        return lease_for(location, name)

    # -- replicas -----------------------------------------------------------------------------

    @functools.cached_property
    def events(self) -> EventLog:
        """The log of engine events handed between replicas (``sessions.events``); on
        PostgreSQL its rows go through a connection of their own."""
        if isinstance(self.backend, postgres.PostgresBackend):
            self._side = SideWriter(self.backend)
            return EventLog(self._side, self._read, self._clock)
        return EventLog(self._write, self._read, self._clock)

    @functools.cached_property
    def replicas(self) -> ReplicaTable:
        """The registry of the gateways on this store (``sessions.replica``)."""
        return ReplicaTable(self._write, self._read, self._clock)

    @functools.cached_property
    def doorbell(self) -> Doorbell:
        """``LISTEN``/``NOTIFY`` between the processes on this PostgreSQL database, or the
        in-process doorbell on SQLite (``sessions.doorbell``)."""
        if isinstance(self.backend, postgres.PostgresBackend):
            return PgDoorbell(self.backend.url, self._write)
        return LocalDoorbell()

    @property
    def shared(self) -> bool:
        """Whether other processes may serve from this store (PostgreSQL)."""
        return isinstance(self.backend, postgres.PostgresBackend)

    # -- cron ---------------------------------------------------------------------------------

    @functools.cached_property
    def cron(self) -> CronStore:
        """Cron jobs and their run history (``sessions.cronstore``), on this store's threads."""
        return CronStore(self._write, self._read)


def _entry(c: sqlite3.Connection, key: str) -> SessionEntry | None:
    row = c.execute("SELECT * FROM sessions WHERE key = ?", (key,)).fetchone()
    return None if row is None else SessionEntry.from_row(row)


def _must(c: sqlite3.Connection, key: str) -> SessionEntry:
    entry = _entry(c, key)
    if entry is None:
        raise _not_found(key)
    return entry


def _run(c: sqlite3.Connection, run_id: str) -> Run | None:
    row = c.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else Run.from_row(row)


def _not_found(key: str) -> SessionNotFound:
    return SessionNotFound(f"no session {key!r}", session_key=key)


def _agent_for(key: str, agent_id: str | None) -> str:
    """The agent that owns ``key``: the key's own agent, else ``agent_id``, else ``main``."""
    own = keys.agent_of(key)
    given = None if agent_id is None else keys.normalize_agent_id(agent_id)
    if own is not None and given is not None and own != given:
        raise SessionError(f"key {key!r} belongs to agent {own!r}, not {given!r}", session_key=key)
    return own or given or keys.DEFAULT_AGENT_ID
