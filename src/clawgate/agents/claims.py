"""Claims: a run starts only once its replica has claimed its session in the store.

With several replicas on one PostgreSQL database a session's runs may be admitted on different
replicas; the lanes keep one run at a time per session *within* a process, and this is the step
that keeps it across processes. Before a lane runs its next run it awaits :meth:`Claims.claim`,
which asks the store to start the run (``store.claim_run``, one transaction: the run's input
joins the transcript and the turn's context is read) and, while the session is busy on another
replica, waits and asks again: polling with a backoff from 20 ms to 250 ms.

:meth:`Claims.wake` cuts the current wait short, so a claim is retried at once instead of at
the next poll. It is rung by the engine when one of its own runs ends, and by
:meth:`Claims.follow` for the store doorbell's ``session.free`` topic: a run's end that leaves
another replica's run queued behind it rings that topic in its own transaction
(``runs.complete``), so the waiting replica hears it at the commit. A lost ring costs one poll.
On SQLite there is no claim: one process owns every session and the lanes alone decide.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from clawgate.agents.lanes import Run
from clawgate.agents.runner import HISTORY_LIMIT, TurnRequest
from clawgate.errors import Unavailable
from clawgate.sessions import doorbell
from clawgate.sessions.store import SessionStore

log = logging.getLogger("clawgate.claims")
FIRST_WAIT_S = 0.02
LONGEST_WAIT_S = 0.25


class Claims:
    """Claiming sessions for this replica's runs, and the doorbell seam that hurries them."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        # One event per session with a claim waiting (at most one per lane, so bounded by the
        # lanes: a session's lane claims one run at a time).
        self._waiting: dict[str, asyncio.Event] = {}

    def wake(self, session_key: str) -> None:
        """A run of ``session_key`` ended somewhere: retry its waiting claim now."""
        event = self._waiting.get(session_key)
        if event is not None:
            event.set()

    async def follow(self, bell: doorbell.Bell) -> None:
        """Until cancelled: wake the claims of the sessions rung free on ``bell`` (all of them
        when rings were lost)."""
        while True:
            keys = await bell.wait(None)
            if bell.missed:
                bell.missed = False
                keys = list(self._waiting)
            for key in keys:
                self.wake(key)

    def waiting(self) -> int:
        return len(self._waiting)

    async def claim(self, run: Run) -> bool:
        """True once ``run`` is started for this replica (its context set on its request);
        False when it was cancelled while waiting (``run.cancel_reason`` says why) or
        deferred (``run.deferred``: a run taken over goes first). Raises InvalidRequest when
        the run is not this replica's any more (taken over)."""
        request: TurnRequest = run.payload
        if request.begun is not None:  # started with its admission
            return True
        key = run.session_key
        event = self._waiting.setdefault(key, asyncio.Event())
        wait = FIRST_WAIT_S
        try:
            while run.cancel_reason is None and not run.deferred:
                event.clear()
                try:
                    begun = await self._store.claim_run(run.run_id, key, run.messages,
                                                        history=HISTORY_LIMIT + 1)
                except Unavailable as exc:  # the database is away: keep the run, ask again
                    log.warning("claim of run %s waits for the store: %s", run.run_id, exc)
                    begun = None
                if begun is not None:
                    run.payload = dataclasses.replace(request, begun=tuple(begun))
                    return True
                if run.cancel_reason is not None or run.deferred:
                    return False
                try:
                    await asyncio.wait_for(event.wait(), wait)
                    wait = FIRST_WAIT_S  # rung: the session freed, a new wait starts short
                except TimeoutError:
                    wait = min(wait * 2, LONGEST_WAIT_S)
        finally:
            if self._waiting.get(key) is event:
                del self._waiting[key]
        return False
