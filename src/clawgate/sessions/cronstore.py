"""Cron jobs and their run history in the store (tables ``cron_jobs`` and ``cron_runs``).

A job is stored as its wire document (``clawgate.cron.jobs.CronJob.wire()``); the fields the
scheduler queries by live in columns and are authoritative: ``enabled``, ``state.nextRunAtMs``
and the running claim (``state.runningAtMs`` plus the claiming run's id). Reads merge them back
into the document, writes take them out of it.

"Never two runs of a job at once, including across a restart": a run starts only by *claiming*
the job in one transaction (``claim``: set the running marker if none is set), and ends by
releasing it in the transaction that records the result (``finish``). At start-up ``recover``
closes every claim a stopped or killed process left behind, before anything new is claimed.

The store knows nothing of schedules. Where a transition depends on the job as it is *now*
(a run ending after the job was edited), the caller passes a pure function that maps the
current document to the new one; it runs inside the transaction on the writer thread.

Run history is bounded: each job keeps its newest ``keep`` runs; a removed job's runs go with it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from clawgate.errors import InvalidRequest, Unavailable
from clawgate.sessions.schema import dumps, loads

T = TypeVar("T")
Doc = dict[str, Any]
Docs = list[Doc]
# finish: (current job document or None if it was removed) -> (new document or None to delete,
# the run's history entry)
Finish = Callable[[Doc | None], tuple[Doc | None, Doc]]
Recover = Callable[[Doc, "Claim"], tuple[Doc | None, Doc]]
RUN_STATUSES = ("ok", "error", "skipped")
DEFAULT_KEEP = 200


class Submit(Protocol):
    """The store's ``_write`` or ``_read``: run ``fn`` on a store thread, await its result."""

    def __call__(self, fn: Callable[[sqlite3.Connection], T], /) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class Claim:
    """A job's running marker: which run holds it, since when, and whether that run had begun
    delivering its reply."""

    run_id: str
    job_id: str
    started_at: int
    delivery_at: int | None


class CronStore:
    """The cron tables of one :class:`SessionStore` (``store.cron``), on its writer thread and
    reader pool."""

    def __init__(self, write: Submit, read: Submit) -> None:
        self._write = write
        self._read = read

    async def add(self, doc: Mapping[str, Any], *, max_jobs: int | None = None) -> Doc:
        """Insert a new job; a duplicate id, or ``max_jobs`` jobs already stored, is refused."""
        row = _to_row(doc)

        def job(c: sqlite3.Connection) -> Doc:
            if max_jobs is not None:
                count = int(c.execute("SELECT COUNT(*) FROM cron_jobs").fetchone()[0])
                if count >= max_jobs:
                    raise Unavailable(f"cron: {count} jobs stored; the limit is {max_jobs}")
            try:
                c.execute(f"INSERT INTO cron_jobs ({_COLS}) VALUES ({_MARKS})", row)
            except sqlite3.IntegrityError:
                raise InvalidRequest(f"cron job {row[0]!r} already exists") from None
            return _must(c, row[0])

        return await self._write(job)

    async def get(self, job_id: str) -> Doc | None:
        """The job's document, or None."""
        return await self._read(lambda c: _get(c, job_id))

    async def list(self, *, include_disabled: bool = True, limit: int = -1,
                   offset: int = 0) -> Docs:
        """Jobs by next run (none last), then creation; ``limit`` -1 means all."""
        where = "" if include_disabled else "WHERE enabled = 1"
        sql = (f"SELECT * FROM cron_jobs {where} ORDER BY next_run_at IS NULL, next_run_at, "
               "created_at, id LIMIT ? OFFSET ?")
        return await self._read(
            lambda c: [_from_row(r) for r in c.execute(sql, (limit, offset))])

    async def count(self) -> int:
        """How many jobs are stored."""
        return await self._read(
            lambda c: int(c.execute("SELECT COUNT(*) FROM cron_jobs").fetchone()[0]))

    async def update(self, job_id: str, change: Callable[[Doc], Doc]) -> Doc:
        """Replace the job with ``change(current)`` in one transaction (``change`` may raise to
        refuse; nothing is written then). A running job keeps its claim."""

        def job(c: sqlite3.Connection) -> Doc:
            new = change(_must(c, job_id))
            row = _to_row(new)
            if row[0] != job_id:
                raise InvalidRequest("a cron job's id cannot change")
            c.execute("UPDATE cron_jobs SET agent_id = ?, enabled = ?, next_run_at = ?, "
                      "created_at = ?, updated_at = ?, doc = ? WHERE id = ?",
                      (*row[1:4], *row[6:], job_id))
            return _must(c, job_id)

        return await self._write(job)

    async def remove(self, job_id: str) -> bool:
        """Delete the job and its run history; False when there was no such job. A run in
        progress finishes, and its record is dropped then."""

        def job(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM cron_runs WHERE job_id = ? AND status != 'running'", (job_id,))
            return c.execute("DELETE FROM cron_jobs WHERE id = ?", (job_id,)).rowcount > 0

        return await self._write(job)

    async def reschedule(self, next_runs: Mapping[str, int | None]) -> int:
        """Set ``state.nextRunAtMs`` of several jobs at once; returns how many exist."""
        pairs = [(at, job_id) for job_id, at in next_runs.items()]

        def job(c: sqlite3.Connection) -> int:
            return c.executemany("UPDATE cron_jobs SET next_run_at = ? WHERE id = ?",
                                 pairs).rowcount

        return await self._write(job)

    async def due(self, now_ms: int, limit: int = 100) -> Docs:
        """Enabled, unclaimed jobs whose next run is at or before ``now_ms``, soonest first."""
        sql = ("SELECT * FROM cron_jobs WHERE enabled = 1 AND running_id IS NULL AND "
               "next_run_at IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at, id LIMIT ?")
        return await self._read(
            lambda c: [_from_row(r) for r in c.execute(sql, (now_ms, limit))])

    async def claim(self, job_id: str, run_id: str, now_ms: int, *,
                    force: bool = False) -> Doc | None:
        """Mark the job running for ``run_id`` and open its run record, in one transaction.
        Unless ``force``, only an enabled job that is due at ``now_ms`` is claimed. None when
        the job is missing, already running, or (without ``force``) not due."""
        due = "" if force else " AND enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= ?"
        args: tuple[Any, ...] = (run_id, now_ms, job_id) + (() if force else (now_ms,))

        def job(c: sqlite3.Connection) -> Doc | None:
            cur = c.execute("UPDATE cron_jobs SET running_id = ?, running_at = ? "
                            f"WHERE id = ? AND running_id IS NULL{due}", args)
            if cur.rowcount == 0:
                return None
            try:
                c.execute("INSERT INTO cron_runs (run_id, job_id, status, started_at) "
                          "VALUES (?, ?, 'running', ?)", (run_id, job_id, now_ms))
            except sqlite3.IntegrityError:
                raise InvalidRequest(f"cron run {run_id!r} already exists") from None
            return _get(c, job_id)

        return await self._write(job)

    async def delivering(self, run_id: str, now_ms: int) -> None:
        """Record that the run began delivering its reply (an interrupted one-shot that had is
        not replayed)."""

        def job(c: sqlite3.Connection) -> None:
            c.execute("UPDATE cron_runs SET delivery_at = COALESCE(delivery_at, ?) "
                      "WHERE run_id = ? AND status = 'running'", (now_ms, run_id))

        await self._write(job)

    async def finish(self, run_id: str, now_ms: int, apply: Finish, *,
                     keep: int = DEFAULT_KEEP) -> Doc | None:
        """End a claimed run: ``apply(current job)`` gives the new job (None deletes it) and the
        run's entry; the claim is released and the history trimmed to ``keep`` runs, all in one
        transaction. Returns the new job document (None if deleted or gone)."""

        def job(c: sqlite3.Connection) -> Doc | None:
            run = c.execute("SELECT job_id, status FROM cron_runs WHERE run_id = ?",
                            (run_id,)).fetchone()
            if run is None:
                raise InvalidRequest(f"no cron run {run_id!r}")
            if run["status"] != "running":
                raise InvalidRequest(f"cron run {run_id!r} already finished ({run['status']})")
            job_id = str(run["job_id"])
            row = c.execute("SELECT * FROM cron_jobs WHERE id = ?", (job_id,)).fetchone()
            owned = row is not None and row["running_id"] == run_id
            new, entry = apply(_from_row(row, claim=False) if owned else None)
            if row is None:  # removed while it ran: its history went with it
                c.execute("DELETE FROM cron_runs WHERE run_id = ?", (run_id,))
                return None
            _close_run(c, run_id, now_ms, entry)
            if owned:
                _replace(c, job_id, new)
            _trim(c, job_id, keep)
            return _get(c, job_id) if owned and new is not None else None

        return await self._write(job)

    async def recover(self, now_ms: int, apply: Recover, *, keep: int = DEFAULT_KEEP) -> int:
        """Close every claim a previous process left (call once at start-up, before claiming):
        ``apply(job, claim)`` gives the job after its interrupted run and the run's entry.
        Run records left open without a claim are closed as errors. Returns the claims closed."""

        def job(c: sqlite3.Connection) -> int:
            rows = c.execute("SELECT j.*, r.delivery_at FROM cron_jobs j JOIN cron_runs r "
                             "ON r.run_id = j.running_id WHERE j.running_id IS NOT NULL"
                             ).fetchall()
            for row in rows:
                claim = Claim(run_id=row["running_id"], job_id=row["id"],
                              started_at=row["running_at"], delivery_at=row["delivery_at"])
                new, entry = apply(_from_row(row, claim=False), claim)
                _close_run(c, claim.run_id, now_ms, entry)
                _replace(c, claim.job_id, new)
                _trim(c, claim.job_id, keep)
            c.execute("UPDATE cron_jobs SET running_id = NULL, running_at = NULL "
                      "WHERE running_id IS NOT NULL")  # claims whose run record is gone
            for run_id, job_id, started in c.execute(
                    "SELECT run_id, job_id, started_at FROM cron_runs WHERE status = 'running'"
                    ).fetchall():  # run records whose claim is gone
                _close_run(c, run_id, now_ms, {
                    "ts": now_ms, "jobId": job_id, "action": "finished", "status": "error",
                    "error": "interrupted: the gateway stopped during the run",
                    "runAtMs": started, "durationMs": max(0, now_ms - started)})
            return len(rows)

        return await self._write(job)

    async def runs(self, job_id: str, *, limit: int = 50, offset: int = 0) -> Docs:
        """The job's finished runs' entries, newest first."""
        sql = ("SELECT entry FROM cron_runs WHERE job_id = ? AND status != 'running' "
               "ORDER BY id DESC LIMIT ? OFFSET ?")
        return await self._read(
            lambda c: [loads(r[0]) for r in c.execute(sql, (job_id, limit, offset))])


# -- rows -----------------------------------------------------------------------------------------

_COLUMNS = ("id", "agent_id", "enabled", "next_run_at", "running_id", "running_at",
            "created_at", "updated_at", "doc")
_COLS = ", ".join(_COLUMNS)
_MARKS = ", ".join("?" for _ in _COLUMNS)


def _to_row(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """The column values of a job document; the column-owned fields leave the document."""
    body = dict(doc)
    job_id = body.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidRequest("a cron job needs an id")
    state = dict(body.get("state") or {})
    next_run = state.pop("nextRunAtMs", None)
    state.pop("runningAtMs", None)
    body["state"] = state
    enabled = bool(body.pop("enabled", True))
    return (job_id, body.get("agentId"), int(enabled), next_run, None, None,
            int(body.get("createdAtMs", 0)), int(body.get("updatedAtMs", 0)), dumps(body))


def _from_row(row: sqlite3.Row, *, claim: bool = True) -> Doc:
    """A job document with its column-owned fields merged in (``runningAtMs`` only with
    ``claim``: a finishing run's transition sees the job as no longer running)."""
    doc: Doc = loads(row["doc"])
    doc["enabled"] = bool(row["enabled"])
    state = doc["state"] = dict(doc.get("state") or {})
    if row["next_run_at"] is not None:
        state["nextRunAtMs"] = row["next_run_at"]
    if claim and row["running_at"] is not None:
        state["runningAtMs"] = row["running_at"]
    return doc


def _get(c: sqlite3.Connection, job_id: str) -> Doc | None:
    row = c.execute("SELECT * FROM cron_jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else _from_row(row)


def _must(c: sqlite3.Connection, job_id: str) -> Doc:
    doc = _get(c, job_id)
    if doc is None:
        raise InvalidRequest(f"unknown cron job id: {job_id}")
    return doc


def _replace(c: sqlite3.Connection, job_id: str, new: Doc | None) -> None:
    """Write the job after its run with the claim released, or delete it (and its runs)."""
    if new is None:
        c.execute("DELETE FROM cron_runs WHERE job_id = ?", (job_id,))
        c.execute("DELETE FROM cron_jobs WHERE id = ?", (job_id,))
        return
    row = _to_row(new)
    c.execute("UPDATE cron_jobs SET agent_id = ?, enabled = ?, next_run_at = ?, running_id = NULL,"
              " running_at = NULL, updated_at = ?, doc = ? WHERE id = ?",
              (*row[1:4], row[7], row[8], job_id))


def _close_run(c: sqlite3.Connection, run_id: str, now_ms: int, entry: Doc) -> None:
    status = entry.get("status")
    if status not in RUN_STATUSES:
        raise InvalidRequest(f"a finished cron run's status is ok, error or skipped, "
                             f"not {status!r}")
    c.execute("UPDATE cron_runs SET status = ?, ended_at = ?, entry = ? WHERE run_id = ?",
              (status, now_ms, dumps(entry), run_id))


def _trim(c: sqlite3.Connection, job_id: str, keep: int) -> None:
    c.execute("DELETE FROM cron_runs WHERE job_id = ? AND status != 'running' AND id <= "
              "(SELECT id FROM cron_runs WHERE job_id = ? AND status != 'running' "
              "ORDER BY id DESC LIMIT 1 OFFSET ?)", (job_id, job_id, max(0, keep)))
