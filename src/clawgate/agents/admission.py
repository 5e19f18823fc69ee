"""A message stored with its reply: one trip to the store for a turn that ends at once.

I9 asks that an acknowledged message be in the store before the reply starts. A surface that
acknowledges a message only with its whole reply — a non-streamed OpenAI request on a session
key it generated (nobody else knows the key, the session cannot hold anything yet, and the
client hears nothing before the response) — therefore needs the message stored only before the
response leaves, not before the turn runs. For such a turn (``Submission.store_with_reply``)
the engine hands the lanes a :class:`Deferred` instead of storing the message: the runner runs
the turn on the message alone and stores admission, start and end in one transaction
(``SessionStore.admit_and_complete``) before the result reaches the surface. If that
transaction fails, the turn fails and the client gets an error, never a reply that was not
stored.

Whatever needs the message in the store earlier commits the admission first, alone
(:meth:`Deferred.commit`; the run then ends as any other): a tool call, a transcript append, a
compaction, or the turn running past :data:`COMMIT_AFTER_S` — a slow provider, so the session
shows up in listings while it answers. A kill -9 before either commit loses a message whose
request never got an answer, which is what I9 allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clawgate.providers.base import Message
from clawgate.sessions.schema import SessionEntry
from clawgate.sessions.store import SessionStore
from clawgate.sessions.transcript import StoredMessage, check_messages

# A turn still running this long after it started commits its admission: what answers within
# it (a cache, a local model, the echo provider) is stored in one trip; anything slower is
# visible in the store while it runs, at the cost of one timer per turn.
COMMIT_AFTER_S = 0.1


@dataclass(slots=True)
class Deferred:
    """The admission of one run, not stored yet. ``on_created`` is called once the store has
    created the session (the engine's ``session_start`` hook); ``on_stored`` (the runner's)
    hears of the input once a commit of the admission alone stored it."""

    store: SessionStore
    run_id: str
    key: str
    messages: Sequence[Message]
    agent_id: str
    channel: str | None
    session_id: str
    admitted_at: int  # the store's clock when the message was accepted
    on_created: Callable[[], None]
    on_stored: Callable[[Sequence[StoredMessage]], None] = lambda _messages: None
    _commit: asyncio.Task[list[StoredMessage]] | None = field(default=None, init=False)

    @property
    def entry(self) -> SessionEntry:
        """The session as the admission will create it (a generated key has no row yet)."""
        at = self.admitted_at
        return SessionEntry(key=self.key, agent_id=self.agent_id, session_id=self.session_id,
                            created_at=at, updated_at=at, started_at=at, channel=self.channel)

    def context(self) -> tuple[StoredMessage, ...]:
        """The turn's context: its input as the transcript will hold it (``id`` 0 until
        stored; nothing reads it before then)."""
        return tuple(m.stored(id=0, key=self.key, session_id=self.session_id, seq=seq,
                              at=self.admitted_at)
                     for seq, m in enumerate(check_messages(self.messages, "runs.queue"), 1))

    @property
    def stored(self) -> bool:
        """The admission was committed alone (the run ends as any other)."""
        task = self._commit
        return task is not None and task.done() and not task.cancelled() and \
            task.exception() is None

    def arm(self) -> asyncio.TimerHandle:
        """Commit the admission if the turn still runs after :data:`COMMIT_AFTER_S`; the
        caller cancels the timer when the turn ends."""
        return asyncio.get_running_loop().call_later(COMMIT_AFTER_S, self.start)

    def start(self) -> None:
        """Commit the admission in the background (the turn goes on meanwhile)."""
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_task(
                self._admit(), name=f"admit:{self.run_id}")

    async def commit(self) -> list[StoredMessage]:
        """Store the admission and start the run (once); returns the input as stored."""
        self.start()
        assert self._commit is not None
        return await asyncio.shield(self._commit)

    async def complete(self, final: Sequence[Message], **end: Any) -> list[StoredMessage]:
        """Store the whole run — admission, start, ``final`` messages and its end (``end``:
        ``SessionStore.complete_run``'s keywords) — in one transaction, when the admission
        was never sent or its commit failed (nothing of it is stored then); otherwise only the
        end. Returns the messages that joined the transcript and were not heard of yet."""
        if self._commit is not None:
            try:
                await asyncio.shield(self._commit)
            except Exception:  # rolled back: the whole run goes in one transaction below
                pass
            else:
                return await self.store.complete_run(self.run_id, self.key, final, **end)
        if end.pop("archive_from", None) is not None:  # a filtered turn is never deferred
            raise ValueError("a deferred run cannot be archived")
        stored, created = await self.store.admit_and_complete(
            self.run_id, self.key, self.messages, final, agent_id=self.agent_id,
            channel=self.channel, session_id=self.session_id, admitted_at=self.admitted_at,
            **end)
        if created:
            self.on_created()
        return stored

    async def _admit(self) -> list[StoredMessage]:
        count = len(self.messages)
        _entry, created, begun = await self.store.admit_and_begin(
            self.run_id, self.key, self.messages, starts=lambda _row: count,
            agent_id=self.agent_id, channel=self.channel, session_id=self.session_id,
            admitted_at=self.admitted_at)
        if created:
            self.on_created()
        stored = list(begun or ())[-count:]
        self.on_stored(stored)
        return stored
