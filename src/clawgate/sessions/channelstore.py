"""The channel tables of the store: inbound dedupe, durable outbound, pairing, channel state.

Durable both ways (I11):

- **inbound**: a platform message is admitted and its ``(channel, account, message_id)`` row is
  written in the *same* transaction as the run (``runs.admit(..., inbound=...)``), so a message
  is either admitted once or not at all; the platform's ack or offset advances only after that.
  Messages answered without a run (pairing codes, commands) record their row together with the
  reply's intent (``record``).
- **outbound**: a reply is an *intent* before any platform I/O: ``runs.complete`` creates it in
  the transaction that stores the run's final message (when the run has a ``delivery``). Each
  part sent gets a *receipt*; an intent is ``sent`` when every part has one. After a restart
  pending intents are sent again and parts with a receipt are skipped, so nothing is delivered
  twice by us (a crash between the platform's success and the receipt's commit can repeat one
  part; the idempotency key ``<intent>:<part>`` lets the receiver drop it).

These are jobs for the store's writer thread and reader pool; ``SessionStore.channels`` exposes
them as async methods.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from clawgate.errors import ClawgateError
from clawgate.ids import new_id
from clawgate.sessions.schema import dumps, loads

T = TypeVar("T")
IntentKind = Literal["reply", "notice", "pairing", "command", "announce"]
IntentStatus = Literal["pending", "sent", "failed"]


class DuplicateMessage(ClawgateError):
    """This platform message was received before (its dedupe row exists); nothing was done."""

    reason = "duplicate"


class Submit(Protocol):
    def __call__(self, fn: Callable[[sqlite3.Connection], T], /) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a run's reply goes: stored with the run at admission (``runs.delivery``).
    ``notices`` False: a run that fails owes the target no notice (a heartbeat's failure is
    the gateway's business, not the chat's)."""

    channel: str
    account: str
    target: Mapping[str, Any]
    notices: bool = True

    def dump(self) -> str:
        data: dict[str, Any] = {"channel": self.channel, "account": self.account,
                                "target": dict(self.target)}
        if not self.notices:
            data["notices"] = False
        return dumps(data)

    @classmethod
    def load(cls, text: str | None) -> Delivery | None:
        data = loads(text)
        if not isinstance(data, dict):
            return None
        return cls(str(data["channel"]), str(data["account"]), dict(data["target"]),
                   bool(data.get("notices", True)))


@dataclass(frozen=True, slots=True)
class Intent:
    """One reply (or notice) owed to a channel target."""

    intent_id: str
    channel: str
    account: str
    target: Mapping[str, Any]
    text: str
    kind: IntentKind
    status: IntentStatus
    attempts: int
    next_attempt_at: int
    created_at: int
    updated_at: int
    run_id: str | None = None
    last_error: str | None = None
    preview_id: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Intent:
        return cls(row["intent_id"], row["channel"], row["account"], loads(row["target"]),
                   row["text"], row["kind"], row["status"], row["attempts"],
                   row["next_attempt_at"], row["created_at"], row["updated_at"], row["run_id"],
                   row["last_error"], row["preview_id"])


@dataclass(frozen=True, slots=True)
class PairingRequest:
    channel: str
    account: str
    code: str
    sender: str
    sender_name: str | None
    target: Mapping[str, Any]  # where the sender is reached (for the "approved" note)
    created_at: int
    expires_at: int
    status: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PairingRequest:
        return cls(row["channel"], row["account"], row["code"], row["sender"],
                   row["sender_name"], loads(row["target"]), row["created_at"],
                   row["expires_at"], row["status"])

    def wire(self) -> dict[str, Any]:
        return {"channel": self.channel, "accountId": self.account, "code": self.code,
                "id": self.sender, "name": self.sender_name, "createdAt": self.created_at,
                "expiresAt": self.expires_at, "status": self.status}


@dataclass(frozen=True, slots=True)
class AccountStats:
    """What the store knows of one account, for ``channels.status``."""

    last_inbound_at: int | None
    last_outbound_at: int | None
    pending: int
    failed: int
    last_failure: str | None


# -- jobs used by other store modules (inside their transactions) ------------------------------

def insert_inbound(c: sqlite3.Connection, channel: str, account: str, message_id: str, now: int,
                   outcome: str, session_key: str | None = None,
                   run_id: str | None = None) -> None:
    """The dedupe row of one platform message; DuplicateMessage when it exists already."""
    cur = c.execute(
        "INSERT INTO channel_inbound (channel, account, message_id, received_at, outcome, "
        "session_key, run_id) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (channel, account, message_id) DO NOTHING",
        (channel, account, message_id, now, outcome, session_key, run_id))
    if cur.rowcount == 0:
        raise DuplicateMessage(f"{channel}/{account}: message {message_id!r} was received "
                               "already")


def insert_intent(c: sqlite3.Connection, *, channel: str, account: str,
                  target: Mapping[str, Any], text: str, kind: IntentKind, now: int,
                  run_id: str | None = None, intent_id: str | None = None) -> str:
    """A new pending intent, due now; returns its id."""
    intent_id = intent_id or new_id()
    c.execute(
        "INSERT INTO channel_intents (intent_id, run_id, channel, account, target, text, kind, "
        "status, attempts, next_attempt_at, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
        (intent_id, run_id, channel, account, dumps(dict(target)), text, kind, now, now, now))
    return intent_id


def intent_for_run(c: sqlite3.Connection, run_id: str, text: str, status: str,
                   error: str | None, now: int) -> str | None:
    """At a run's end: the intent for its reply when the run owes one (``runs.delivery``).

    A run that ended ``ok`` owes its text (when it has any); one that failed or timed out owes a
    notice saying so; an aborted run owes nothing (someone stopped it on purpose).
    """
    row = c.execute("SELECT delivery FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return intent_for_delivery(c, Delivery.load(row[0]) if row is not None else None, run_id,
                               text, status, error, now)


def intent_for_delivery(c: sqlite3.Connection, delivery: Delivery | None, run_id: str,
                        text: str, status: str, error: str | None, now: int) -> str | None:
    """:func:`intent_for_run` for a caller that read the run's ``delivery`` already."""
    if delivery is None or c.execute("SELECT 1 FROM channel_intents WHERE run_id = ?",
                                     (run_id,)).fetchone() is not None:
        return None
    if status == "ok" and text.strip():
        body, kind = text, "reply"
    elif status in ("error", "timeout", "interrupted") and delivery.notices:
        why = error or status
        body, kind = f"⚠️ The reply could not be completed ({why}).", "notice"
    else:
        return None
    return insert_intent(c, channel=delivery.channel, account=delivery.account,
                         target=delivery.target, text=body, kind=kind,  # type: ignore[arg-type]
                         now=now, run_id=run_id, intent_id=f"run-{run_id}")


class ChannelStore:
    """The channel tables of one :class:`SessionStore` (``store.channels``)."""

    def __init__(self, write: Submit, read: Submit, clock: Callable[[], int]) -> None:
        self._write = write
        self._read = read
        self._clock = clock

    # -- inbound ---------------------------------------------------------------------------

    async def seen(self, channel: str, account: str, message_id: str) -> bool:
        return await self._read(lambda c: c.execute(
            "SELECT 1 FROM channel_inbound WHERE channel = ? AND account = ? AND message_id = ?",
            (channel, account, message_id)).fetchone() is not None)

    async def record(self, channel: str, account: str, message_id: str, outcome: str, *,
                     session_key: str | None = None, reply: Mapping[str, Any] | None = None,
                     reply_kind: IntentKind = "command") -> str | None:
        """Record a message answered without a run, and the intent of its answer
        (``reply``: ``{target, text}``) in one transaction; DuplicateMessage when it was seen.
        Returns the intent id."""
        now = self._clock()

        def job(c: sqlite3.Connection) -> str | None:
            insert_inbound(c, channel, account, message_id, now, outcome, session_key)
            if reply is None:
                return None
            return insert_intent(c, channel=channel, account=account, target=reply["target"],
                                 text=str(reply["text"]), kind=reply_kind, now=now)

        return await self._write(job)

    async def prune(self, older_than_ms: int) -> int:
        """Forget dedupe rows older than ``older_than_ms`` (platforms redeliver for hours, not
        weeks), and receipts of intents long sent."""
        cutoff = self._clock() - older_than_ms

        def job(c: sqlite3.Connection) -> int:
            n = c.execute("DELETE FROM channel_inbound WHERE received_at < ?",
                          (cutoff,)).rowcount
            old = "SELECT intent_id FROM channel_intents WHERE status != 'pending' AND " \
                  "updated_at < ?"
            c.execute(f"DELETE FROM channel_receipts WHERE intent_id IN ({old})", (cutoff,))
            c.execute("DELETE FROM channel_intents WHERE status != 'pending' AND updated_at < ?",
                      (cutoff,))
            c.execute("DELETE FROM channel_previews WHERE created_at < ?", (cutoff,))
            return int(n)

        return await self._write(job)

    # -- outbound --------------------------------------------------------------------------

    async def add_intent(self, *, channel: str, account: str, target: Mapping[str, Any],
                         text: str, kind: IntentKind) -> str:
        """An intent that belongs to no run (an announcement, a notice)."""
        now = self._clock()
        return await self._write(lambda c: insert_intent(
            c, channel=channel, account=account, target=target, text=text, kind=kind, now=now))

    async def intent(self, intent_id: str) -> Intent | None:
        def read(c: sqlite3.Connection) -> Intent | None:
            row = c.execute("SELECT * FROM channel_intents WHERE intent_id = ?",
                            (intent_id,)).fetchone()
            return None if row is None else Intent.from_row(row)

        return await self._read(read)

    async def due(self, limit: int = 64, *, channel: str | None = None,
                  account: str | None = None) -> list[Intent]:
        """Pending intents whose next attempt is due (of one account when given), in the order
        they were created."""
        now = self._clock()
        where, args = ("AND channel = ? AND account = ?", [channel, account]) \
            if channel is not None else ("", [])
        return await self._read(lambda c: [Intent.from_row(r) for r in c.execute(
            f"SELECT * FROM channel_intents WHERE status = 'pending' AND next_attempt_at <= ? "
            f"{where} ORDER BY created_at, intent_id LIMIT ?", [now, *args, limit]).fetchall()])

    async def next_due_at(self) -> int | None:
        """When the earliest pending intent is due (epoch ms), or None."""
        row = await self._read(lambda c: c.execute(
            "SELECT MIN(next_attempt_at) FROM channel_intents WHERE status = 'pending'"
        ).fetchone())
        return None if row is None or row[0] is None else int(row[0])

    async def receipts(self, intent_id: str) -> dict[int, list[str]]:
        rows = await self._read(lambda c: c.execute(
            "SELECT part, message_ids FROM channel_receipts WHERE intent_id = ?",
            (intent_id,)).fetchall())
        return {int(r[0]): list(loads(r[1])) for r in rows}

    async def commit_part(self, intent_id: str, part: int, message_ids: list[str]) -> None:
        """The receipt of one part: committed right after the platform accepted it."""
        now = self._clock()
        await self._write(lambda c: c.execute(
            "INSERT INTO channel_receipts (intent_id, part, message_ids, sent_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (intent_id, part) DO NOTHING",
            (intent_id, part, dumps(message_ids), now)))

    async def finish(self, intent_id: str, status: IntentStatus,
                     error: str | None = None) -> None:
        now = self._clock()
        await self._write(lambda c: c.execute(
            "UPDATE channel_intents SET status = ?, last_error = ?, updated_at = ? "
            "WHERE intent_id = ?", (status, error, now, intent_id)))

    async def retry(self, intent_id: str, *, at: int, error: str) -> int:
        """Count a failed attempt and schedule the next one; returns the attempts made."""
        now = self._clock()

        def job(c: sqlite3.Connection) -> int:
            c.execute("UPDATE channel_intents SET attempts = attempts + 1, next_attempt_at = ?, "
                      "last_error = ?, updated_at = ? WHERE intent_id = ?",
                      (at, error, now, intent_id))
            row = c.execute("SELECT attempts FROM channel_intents WHERE intent_id = ?",
                            (intent_id,)).fetchone()
            return 0 if row is None else int(row[0])

        return await self._write(job)

    async def set_preview(self, run_id: str, message_id: str) -> None:
        """The preview message streamed for a run (its final reply edits it in place)."""
        now = self._clock()
        await self._write(lambda c: c.execute(
            "INSERT INTO channel_previews (run_id, message_id, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET message_id = excluded.message_id",
            (run_id, message_id, now)))

    async def preview(self, run_id: str) -> str | None:
        row = await self._read(lambda c: c.execute(
            "SELECT message_id FROM channel_previews WHERE run_id = ?", (run_id,)).fetchone())
        return None if row is None else str(row[0])

    async def failed(self, channel: str | None = None, limit: int = 20) -> list[Intent]:
        where, args = ("AND channel = ?", [channel]) if channel else ("", [])

        def read(c: sqlite3.Connection) -> list[Intent]:
            rows = c.execute(f"SELECT * FROM channel_intents WHERE status = 'failed' {where} "
                             "ORDER BY updated_at DESC LIMIT ?", [*args, limit]).fetchall()
            return [Intent.from_row(r) for r in rows]

        return await self._read(read)

    async def stats(self, channel: str, account: str) -> AccountStats:
        def read(c: sqlite3.Connection) -> AccountStats:
            inbound = c.execute("SELECT MAX(received_at) FROM channel_inbound WHERE channel = ? "
                                "AND account = ?", (channel, account)).fetchone()[0]
            outbound = c.execute(
                "SELECT MAX(r.sent_at) FROM channel_receipts r JOIN channel_intents i "
                "ON i.intent_id = r.intent_id WHERE i.channel = ? AND i.account = ?",
                (channel, account)).fetchone()[0]
            counts = dict(c.execute(
                "SELECT status, COUNT(*) FROM channel_intents WHERE channel = ? AND account = ? "
                "AND status != 'sent' GROUP BY status", (channel, account)).fetchall())
            last = c.execute(
                "SELECT last_error FROM channel_intents WHERE channel = ? AND account = ? AND "
                "status = 'failed' ORDER BY updated_at DESC LIMIT 1",
                (channel, account)).fetchone()
            return AccountStats(inbound, outbound, int(counts.get("pending", 0)),
                                int(counts.get("failed", 0)), last[0] if last else None)

        return await self._read(read)

    # -- pairing and allowlists ----------------------------------------------------------------

    async def allowed(self, channel: str, account: str, sender: str) -> bool:
        return await self._read(lambda c: c.execute(
            "SELECT 1 FROM channel_allow WHERE channel = ? AND account = ? AND sender = ?",
            (channel, account, sender)).fetchone() is not None)

    async def request_pairing(self, channel: str, account: str, sender: str,
                              sender_name: str | None, code: str, *, ttl_ms: int,
                              max_pending: int, message_id: str,
                              reply: Callable[[str], Mapping[str, Any]]) -> str:
        """One transaction for an unknown sender: dedupe the message, then reuse the sender's
        live request, refuse when ``max_pending`` are live, or create one and the intent of the
        code message (``reply(code)`` -> ``{target, text}``). Returns ``created``, ``pending``
        or ``full``."""
        now = self._clock()

        def job(c: sqlite3.Connection) -> str:
            insert_inbound(c, channel, account, message_id, now, "pairing")
            c.execute("DELETE FROM channel_pairing WHERE status = 'pending' AND expires_at <= ?",
                      (now,))
            mine = c.execute("SELECT 1 FROM channel_pairing WHERE channel = ? AND account = ? "
                             "AND sender = ? AND status = 'pending'",
                             (channel, account, sender)).fetchone()
            if mine is not None:
                return "pending"
            live = c.execute("SELECT COUNT(*) FROM channel_pairing WHERE channel = ? AND "
                             "account = ? AND status = 'pending'",
                             (channel, account)).fetchone()[0]
            if live >= max_pending:
                return "full"
            answer = reply(code)
            c.execute("INSERT INTO channel_pairing (channel, account, code, sender, sender_name, "
                      "target, created_at, expires_at, status) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
                      (channel, account, code, sender, sender_name,
                       dumps(dict(answer["target"])), now, now + ttl_ms))
            insert_intent(c, channel=channel, account=account, target=answer["target"],
                          text=str(answer["text"]), kind="pairing", now=now)
            return "created"

        return await self._write(job)

    async def pairing_requests(self, channel: str | None = None) -> list[PairingRequest]:
        """Live (pending, unexpired) requests, newest first."""
        now = self._clock()
        where, args = ("AND channel = ?", [channel]) if channel else ("", [])
        return await self._read(lambda c: [PairingRequest.from_row(r) for r in c.execute(
            f"SELECT * FROM channel_pairing WHERE status = 'pending' AND expires_at > ? {where} "
            "ORDER BY created_at DESC", [now, *args]).fetchall()])

    async def decide_pairing(self, channel: str, code: str, approve: bool,
                             notify: str | None = None) -> PairingRequest | None:
        """Approve (the sender joins the account's allowlist) or deny a live request, with an
        intent telling the sender when ``notify`` is a text; None when no live request has that
        code."""
        now = self._clock()

        def job(c: sqlite3.Connection) -> PairingRequest | None:
            row = c.execute("SELECT * FROM channel_pairing WHERE channel = ? AND code = ? AND "
                            "status = 'pending' AND expires_at > ?",
                            (channel, code.strip().upper(), now)).fetchone()
            if row is None:
                return None
            request = PairingRequest.from_row(row)
            status = "approved" if approve else "denied"
            c.execute("UPDATE channel_pairing SET status = ? WHERE channel = ? AND account = ? "
                      "AND code = ?", (status, channel, request.account, request.code))
            if approve:
                c.execute("INSERT INTO channel_allow (channel, account, sender, source, "
                          "created_at) VALUES (?, ?, ?, 'pairing', ?) ON CONFLICT DO NOTHING",
                          (channel, request.account, request.sender, now))
            if notify:
                insert_intent(c, channel=channel, account=request.account,
                              target=request.target, text=notify, kind="notice", now=now)
            return request

        return await self._write(job)

    # -- per-account state -----------------------------------------------------------------------

    async def get_state(self, channel: str, account: str, name: str) -> Any:
        row = await self._read(lambda c: c.execute(
            "SELECT value FROM channel_state WHERE channel = ? AND account = ? AND name = ?",
            (channel, account, name)).fetchone())
        return None if row is None else loads(row[0])

    async def set_state(self, channel: str, account: str, name: str, value: Any) -> None:
        now = self._clock()
        await self._write(lambda c: c.execute(
            "INSERT INTO channel_state (channel, account, name, value, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (channel, account, name) DO UPDATE SET "
            "value = excluded.value, updated_at = excluded.updated_at",
            (channel, account, name, dumps(value), now)))
