"""The run lifecycle in the store: queued -> running -> ended, each step one transaction.

Why a queued state: a message is acknowledged when it is admitted, but it may wait behind the
session's active run. Appending it to the transcript at admission would put it before the
active run's reply. So admission stores it in the run record (durable), and the transcript
receives it when the run starts. After a crash, ``recover`` closes what was left open: running
runs become ``interrupted`` (their messages are in the transcript already) and queued runs give
their messages to the transcript, also as ``interrupted`` — no acknowledged message is lost.

Several replicas (PostgreSQL): every run names its ``owner`` (the replica that admitted it, or
took it over) and gets a per-session ``seq`` at admission. A replica starts a run only through
:func:`claim`, which holds the session row (``FOR UPDATE SKIP LOCKED``) so that two replicas
claiming one session serialize, and starts the run only when no run of the session is running
and no other replica's queued run is ahead of it. :func:`take_over` moves a dead replica's
open runs to a live one (rows locked ``SKIP LOCKED``: exactly one replica gets each). On SQLite
``owner`` stays NULL and none of this runs: one process owns everything.

These are jobs for the store's writer thread; ``SessionStore`` exposes them as async methods.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from clawgate.errors import InvalidRequest, SessionNotFound
from clawgate.sessions import compaction, doorbell
from clawgate.sessions.channelstore import (
    Delivery,
    insert_inbound,
    intent_for_delivery,
    intent_for_run,
)
from clawgate.sessions.history import HistoryCache
from clawgate.sessions.schema import dumps, loads
from clawgate.sessions.transcript import NewMessage, StoredMessage, check_messages
from clawgate.types import RUN_STATUSES, RunStatus

# A run to run again after a restart: (run id, session key, its input messages, where its
# reply goes: the stored delivery, or None).
Resumable = tuple[str, str, list[dict[str, Any]], str | None]
# A run taken over from a dead replica: a Resumable and whether it had started ("running": its
# input is in the transcript already, so it runs again from there).
Taken = tuple[str, str, list[dict[str, Any]], str | None, bool]

ENDED: tuple[RunStatus, ...] = tuple(s for s in RUN_STATUSES if s not in ("queued", "running"))


def current_session_id(c: sqlite3.Connection, key: str) -> str:
    row = c.execute("SELECT session_id FROM sessions WHERE key = ?", (key,)).fetchone()
    if row is None:
        raise SessionNotFound(f"no session {key!r}", session_key=key)
    return str(row[0])


def append(c: sqlite3.Connection, key: str, new: Sequence[NewMessage],
           now: int, *, touch: bool = True, sid: str | None = None) -> list[StoredMessage]:
    """Append checked messages to the session's current transcript (inside a transaction) and
    set the session's ``updated_at`` unless ``touch`` is False (the caller's own UPDATE of the
    session sets it: one UPDATE of the list indexes instead of two). ``sid``: the current
    transcript's id when the caller read it in this transaction already."""
    sid = sid or current_session_id(c, key)
    seq = int(c.execute("SELECT COALESCE(MAX(seq), 0) FROM messages WHERE session_id = ?",
                        (sid,)).fetchone()[0])
    out: list[StoredMessage] = []
    for m in new:
        seq += 1
        content, tool_calls, usage, extra = m.json
        row = c.execute(
            "INSERT INTO messages (session_id, key, seq, role, content, tool_calls, "
            "tool_call_id, name, usage, stop_reason, created_at, extra) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (sid, key, seq, m.role, content, tool_calls, m.tool_call_id, m.name, usage,
             m.stop_reason, now, extra),
        ).fetchone()
        out.append(m.stored(id=int(row[0]), key=key, session_id=sid, seq=seq, at=now))
    if out and touch:
        c.execute("UPDATE sessions SET updated_at = ? WHERE key = ?", (now, key))
    return out


def admit(c: sqlite3.Connection, run_id: str, key: str, messages: Sequence[Any], now: int, *,
          session: dict[str, Any], check: Callable[[sqlite3.Row], None],
          inbound: tuple[str, str, str] | None = None,
          delivery: Delivery | None = None,
          owner: str | None = None) -> tuple[sqlite3.Row, bool]:
    """Admission in one transaction: record a channel message's dedupe row (``inbound``:
    channel, account, platform message id — DuplicateMessage when it was seen), create the
    session if missing (``session`` holds its columns), let ``check`` refuse by raising (e.g. a
    deny send policy), queue the run with where its reply goes (``delivery``). Returns the
    session row and whether this admission created the session."""
    if inbound is not None:
        insert_inbound(c, *inbound, now, "admitted", key, run_id)
    names = ", ".join(session)
    marks = ", ".join("?" for _ in session)
    created = c.execute(
        f"INSERT INTO sessions ({names}) VALUES ({marks}) ON CONFLICT (key) DO NOTHING",
        list(session.values())).rowcount > 0
    row = c.execute("SELECT * FROM sessions WHERE key = ?", (key,)).fetchone()
    check(row)
    queue(c, run_id, key, messages, now, delivery, owner, sid=row["session_id"])
    if delivery is not None and inbound is not None:
        # A channel message's route is the session's last route (a heartbeat's "last").
        target = delivery.target
        c.execute("UPDATE sessions SET last_channel = ?, last_account_id = ?, last_to = ?, "
                  "last_thread_id = ? WHERE key = ?",
                  (delivery.channel, delivery.account, target.get("to"), target.get("thread"),
                   key))
    return row, created


def queue(c: sqlite3.Connection, run_id: str, key: str, messages: Sequence[Any],
          now: int, delivery: Delivery | None = None, owner: str | None = None, *,
          sid: str | None = None) -> None:
    """Record an admitted run with its input messages (the acknowledgement point), its place
    in the session's order (``seq``) and the replica that owns it."""
    check_messages(messages, "runs.queue")
    sid = sid or current_session_id(c, key)
    try:
        c.execute(
            "INSERT INTO runs (run_id, key, session_id, status, started_at, queued_at, input, "
            "delivery, owner, seq) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, "
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM runs WHERE key = ?))",
            (run_id, key, sid, now, now, dumps(list(messages)),
             None if delivery is None else delivery.dump(), owner, key),
        )
    except sqlite3.IntegrityError:
        raise InvalidRequest(f"run {run_id!r} already exists") from None


def discard(c: sqlite3.Connection, run_id: str) -> bool:
    """Forget a queued run that was refused after its record was written (never acknowledged)."""
    return c.execute("DELETE FROM runs WHERE run_id = ? AND status = 'queued'",
                     (run_id,)).rowcount > 0


# One statement (one round trip): lock the session row unless another transaction holds it
# (a replica claiming it now), and read what decides the claim.
_CLAIM = (
    "WITH locked AS (SELECT key FROM sessions WHERE key = ? FOR UPDATE SKIP LOCKED), "
    "mine AS (SELECT status, owner, seq FROM runs WHERE run_id = ?) "
    "SELECT (SELECT COUNT(*) FROM locked), "
    "EXISTS (SELECT 1 FROM sessions WHERE key = ?), "
    "(SELECT status FROM mine), (SELECT owner FROM mine), "
    "EXISTS (SELECT 1 FROM runs WHERE key = ? AND status = 'running' AND run_id <> ?), "
    "EXISTS (SELECT 1 FROM runs WHERE key = ? AND status = 'queued' AND owner <> ? "
    "AND seq < (SELECT seq FROM mine))"
)


def claim(c: sqlite3.Connection, run_id: str, key: str, messages: Sequence[Any], now: int,
          owner: str, history: int = 0) -> list[StoredMessage] | None:
    """Start the run for replica ``owner`` if the session is free (PostgreSQL only), as
    :func:`begin` does; None when it must wait: another transaction holds the session row,
    a run of the session is running (on any replica; a dead one's until it is taken over; this
    one's when it was taken over and waits in the lane, which then runs it first: see
    ``Lanes.submit(front=True)``), or another replica's queued run has a lower ``seq``. Its own
    replica's queued runs are not waited for: its lane orders those, and waiting on them
    could deadlock.
    A run already running for ``owner`` (taken over from a dead replica) gets its context."""
    got, exists, status, holder, running, ahead = c.execute(
        _CLAIM, (key, run_id, key, key, run_id, key, owner)).fetchone()
    if not exists:
        raise SessionNotFound(f"no session {key!r}", session_key=key)
    if status is not None and holder is not None and holder != owner:
        raise InvalidRequest(f"run {run_id!r} belongs to replica {holder!r}")
    if status == "running":
        return compaction.context(c, current_session_id(c, key), history) if history > 0 else []
    if status is not None and status != "queued":
        raise InvalidRequest(f"run {run_id!r} has ended ({status})")
    if not got or running or ahead:
        return None
    c.execute("UPDATE runs SET owner = ? WHERE run_id = ?", (owner, run_id))
    return begin(c, run_id, key, messages, now, history)


def begin(c: sqlite3.Connection, run_id: str, key: str, messages: Sequence[Any],
          now: int, history: int = 0, cache: HistoryCache | None = None, *,
          sid: str | None = None, touch: bool = True) -> list[StoredMessage]:
    """Start a run: its messages join the transcript and the record says running.

    Returns the turn's context, read in the same transaction so the turn needs no second trip
    to the store: the latest compaction entry, if any, then the newest ``history`` messages
    from its cut on (oldest first; see :func:`clawgate.sessions.compaction.context`) — from
    ``cache`` when it holds the session's context as the transcript stood just before. ``sid``:
    the session's current transcript id, when the caller read it in this transaction;
    ``touch`` False: the session's ``updated_at`` is ``now`` already (created by this admission).
    """
    new = check_messages(messages, "runs.begin")
    sid = sid or current_session_id(c, key)
    cur = c.execute("UPDATE runs SET status = 'running', started_at = ?, session_id = ? "
                    "WHERE run_id = ? AND status = 'queued'", (now, sid, run_id))
    if cur.rowcount == 0:
        try:
            c.execute("INSERT INTO runs (run_id, key, session_id, status, started_at) "
                      "VALUES (?, ?, ?, 'running', ?)", (run_id, key, sid, now))
        except sqlite3.IntegrityError:
            raise InvalidRequest(f"run {run_id!r} was already started") from None
    stored = append(c, key, new, now, sid=sid, touch=touch)
    if history <= 0:
        return []
    if stored and stored[0].seq == 1:
        # The transcript was empty (a new session): its context is what was just appended.
        context = stored[-history:]
    elif cache is not None and (cached := cache.context(key, history, stored)) is not None:
        return cached
    else:
        context = compaction.context(c, sid, history)
    if cache is not None and stored:
        cache.put(key, sid, history, context, newest=stored[-1].seq)
    return context


def complete(c: sqlite3.Connection, run_id: str, key: str, messages: Sequence[Any], now: int, *,
             status: RunStatus, stop_reason: str | None, error: str | None,
             usage: dict[str, Any] | None, model: str | None, provider: str | None,
             merged: Sequence[str], cost: float | None = None,
             fallbacks: Sequence[dict[str, Any]] | None = None,
             archive_from: int | None = None, owner: str | None = None,
             cache: HistoryCache | None = None) -> list[StoredMessage]:
    """End a run: final messages, run record, session counters — one transaction (and the
    reply's send intent when the run owes a channel one). ``cost`` (USD) is added to the
    session's; ``fallbacks`` are the failed model attempts. ``archive_from`` (the ``seq`` of the
    run's first message): the run leaves no trace in the transcript (an acknowledged
    heartbeat) — its messages are archived and the session's ``updated_at`` goes back to its
    newest remaining message. Returns the messages it appended and kept (for the
    transcript's live subscribers)."""
    if status not in ENDED:
        raise InvalidRequest(f"a run cannot end as {status!r}")
    new = check_messages(messages, "runs.complete")
    # One statement: the run's record and the session's current transcript id.
    row = c.execute("SELECT status, input, owner, delivery, "
                    "(SELECT session_id FROM sessions WHERE key = ?) FROM runs WHERE run_id = ?",
                    (key, run_id)).fetchone()
    if owner is not None and row is not None and row[2] is not None and row[2] != owner:
        # Another replica took the run over (this one was taken for dead): its end is that
        # replica's to record, so the transcript gets one reply and the channel one intent.
        raise InvalidRequest(f"run {run_id!r} was taken over by replica {row[2]!r}")
    if owner is not None and row is not None and row[0] in ENDED:
        # Recorded already: a retry after a connection lost while its commit went through.
        return []
    if row is not None and row[0] == "queued" and row[1]:
        # Its begin never committed (cancelled while waiting for the writer): the input was
        # acknowledged, so it joins the transcript before the final messages.
        new = check_messages(loads(row[1]), "runs.complete") + new
    # The counters' UPDATE below sets updated_at.
    stored = append(c, key, new, now, touch=False, sid=None if row is None else row[4])
    if cache is not None:
        cache.appended(key, stored)
    c.execute(
        "UPDATE runs SET status = ?, ended_at = ?, stop_reason = ?, error = ?, usage = ?, "
        "model = ?, provider = ?, cost_usd = ?, fallbacks = ? WHERE run_id = ?",
        (status, now, stop_reason, error, None if usage is None else dumps(usage), model,
         provider, cost, dumps(list(fallbacks)) if fallbacks else None, run_id),
    )
    for other in merged:
        c.execute("UPDATE runs SET status = ?, ended_at = ?, merged_into = ? "
                  "WHERE run_id = ? AND status IN ('queued', 'running')",
                  (status, now, run_id, other))
    final = next((m for m in reversed(new) if m.role == "assistant"), None)
    text = final.content if final is not None and isinstance(final.content, str) else ""
    intent_for_delivery(c, None if row is None else Delivery.load(row[3]), run_id, text, status,
                        error, now)
    if owner is not None:
        _ring_free(c, key, owner)
    used = usage or {}
    used_in, used_out = int(used.get("input", 0)), int(used.get("output", 0))
    read, written = int(used.get("cache_read", 0)), int(used.get("cache_write", 0))
    c.execute(
        "UPDATE sessions SET input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, "
        "total_tokens = total_tokens + ?, "
        "cache_read_tokens = CASE WHEN ? > 0 THEN COALESCE(cache_read_tokens, 0) + ? "
        "ELSE cache_read_tokens END, "
        "cache_write_tokens = CASE WHEN ? > 0 THEN COALESCE(cache_write_tokens, 0) + ? "
        "ELSE cache_write_tokens END, "
        "cost_usd = CASE WHEN ? IS NULL THEN cost_usd ELSE COALESCE(cost_usd, 0) + ? END, "
        "aborted_last_run = ?, "
        "model = COALESCE(?, model), model_provider = COALESCE(?, model_provider), "
        "updated_at = ? WHERE key = ?",
        (used_in, used_out, used_in + used_out, read, read, written, written, cost, cost,
         int(status == "aborted"), model, provider, now, key),
    )
    if archive_from is not None:
        _archive_run(c, key, archive_from)
        if cache is not None:
            cache.drop(key)  # archiving moves neither the transcript nor its newest seq
        return []  # archived: no subscriber ever sees them
    return stored


def _archive_run(c: sqlite3.Connection, key: str, first_seq: int) -> None:
    # The lane runs one turn per session at a time, so what the session stored from the run's
    # first message on is this run's (a note injected meanwhile by chat.inject stays).
    sid = current_session_id(c, key)
    c.execute("UPDATE messages SET archived = 1 WHERE session_id = ? AND seq >= ? "
              "AND archived = 0 AND COALESCE(stop_reason, '') != 'injected'", (sid, first_seq))
    c.execute("UPDATE sessions SET updated_at = COALESCE((SELECT MAX(created_at) FROM messages "
              "WHERE session_id = ? AND archived = 0), updated_at) WHERE key = ?", (sid, key))


def recover(c: sqlite3.Connection, now: int, *,
            rerun: bool = False) -> tuple[int, list[Resumable]]:
    """Close runs a killed process left open. Returns how many were marked interrupted and,
    with ``rerun``, the queued ones (left queued, to run again)."""
    rows = c.execute("SELECT run_id, key, status, input, delivery FROM runs "
                     "WHERE status IN ('queued', 'running') ORDER BY queued_at, started_at"
                     ).fetchall()
    resumable: list[Resumable] = []
    closed = 0
    for run_id, key, status, raw, delivery in rows:
        if rerun and status == "queued" and raw:
            try:
                messages = loads(raw)
                check_messages(messages, "runs.recover")
                resumable.append((run_id, key, list(messages), delivery))
                continue
            except Exception:  # an unreadable input cannot run again: mark it below
                pass
        _interrupt(c, run_id, key, status, raw, now)
        closed += 1
    return closed, resumable


def interrupt(c: sqlite3.Connection, run_id: str, now: int) -> None:
    """Mark one open run interrupted."""
    row = c.execute("SELECT key, status, input FROM runs WHERE run_id = ? "
                    "AND status IN ('queued', 'running')", (run_id,)).fetchone()
    if row is not None:
        _interrupt(c, run_id, row[0], row[1], row[2], now)


def _interrupt(c: sqlite3.Connection, run_id: str, key: str, status: str, raw: Any,
               now: int) -> None:
    if status == "queued" and raw:
        try:
            append(c, key, check_messages(loads(raw), "runs.recover"), now)
        except Exception:  # a vanished session: the run record still keeps the input
            pass
    c.execute("UPDATE runs SET status = 'interrupted', ended_at = ?, "
              "stop_reason = 'gateway restarted' WHERE run_id = ?", (now, run_id))
    intent_for_run(c, run_id, "", "interrupted", "the gateway restarted", now)


def open_owners(c: sqlite3.Connection, me: str) -> list[str | None]:
    """The other replicas that own open runs (None: runs from before owners were recorded)."""
    rows = c.execute("SELECT DISTINCT owner FROM runs WHERE status IN ('queued', 'running') "
                     "AND (owner IS NULL OR owner <> ?)", (me,)).fetchall()
    return [None if r[0] is None else str(r[0]) for r in rows]


def owned_open(c: sqlite3.Connection, me: str) -> list[Taken]:
    """Replica ``me``'s open runs, in session order (the engine re-runs the ones it has lost
    track of: a run whose end could not be recorded while the database was away)."""
    rows = c.execute("SELECT run_id, key, status, input, delivery FROM runs WHERE owner = ? "
                     "AND status IN ('queued', 'running') ORDER BY key, seq", (me,)).fetchall()
    taken: list[Taken] = []
    for run_id, key, status, raw, delivery in rows:
        with contextlib.suppress(Exception):  # an unreadable input is left to take_over
            messages = loads(raw)
            check_messages(messages, "runs.owned_open")
            taken.append((run_id, key, list(messages), delivery, status == "running"))
    return taken


def take_over(c: sqlite3.Connection, dead: Sequence[str | None], me: str,
              now: int) -> list[Taken]:
    """Give the open runs of the ``dead`` replicas to replica ``me``, in session order. Rows
    another replica is taking over right now are skipped (``SKIP LOCKED``): each run moves
    once. A run whose input cannot be read is marked interrupted instead."""
    taken: list[Taken] = []
    for owner in dead:
        where = "owner IS NULL" if owner is None else "owner = ?"
        rows = c.execute(
            f"SELECT run_id, key, status, input, delivery FROM runs WHERE {where} "
            "AND status IN ('queued', 'running') ORDER BY key, seq FOR UPDATE SKIP LOCKED",
            () if owner is None else (owner,)).fetchall()
        for run_id, key, status, raw, delivery in rows:
            c.execute("UPDATE runs SET owner = ? WHERE run_id = ?", (me, run_id))
            try:
                messages = loads(raw) if raw else None
                check_messages(messages or [], "runs.take_over")
            except Exception:  # an unreadable input cannot run again
                messages = None
            if not messages:
                _interrupt(c, run_id, key, status, raw, now)
                continue
            taken.append((run_id, key, list(messages), delivery, status == "running"))
    return taken


def _ring_free(c: sqlite3.Connection, key: str, owner: str) -> None:
    """Several replicas: when another replica's run of ``key`` waits queued, ring the
    doorbell's ``session.free`` (sent by the server at this transaction's commit) so it claims
    the session at once instead of at its next poll. A key too long for a ring is left to the
    poll."""
    try:
        text = doorbell.check(doorbell.SESSION_FREE, key)
    except ValueError:
        return
    c.execute("SELECT pg_notify(?, ?) WHERE EXISTS (SELECT 1 FROM runs WHERE key = ? AND "
              "status = 'queued' AND owner IS DISTINCT FROM ?)",
              (doorbell.CHANNEL, text, key, owner))
