"""The turn API: what a surface submits (:class:`Submission`) and what it gets back (:class:`Turn`).

Every surface — HTTP, WebSocket, CLI, channels, cron, heartbeat — submits a message through
``Engine.submit(submission)`` and holds the returned :class:`Turn`: one object per submitted
message, which can be followed (``async for event in turn.events()``, an iterator with a real
end), awaited (``await turn.result()``) and aborted (``turn.abort()``). No surface
re-implements submit-and-follow (I10).

A turn is *admitted* when ``submit`` returns: its message is durable in the store (I9) — or, for
a surface that acknowledges only with the whole reply (``store_with_reply``), it will be before
its result is known (``agents/admission.py``). A slash command answered without the model
(``/status``, a plugin command) and a message a plugin claimed are turns too, already finished,
so every surface handles them the same way.

A turn whose reply some readers must not see verbatim (a heartbeat, whose ``HEARTBEAT_OK``
acknowledgement must reach nobody) carries a :class:`ReplyFilter`. The runner applies it at the
source — to every assistant delta it publishes and to the final text before the run is stored —
so the event stream, the transcript, the WebSocket relay and a channel's durable intent all see
the same filtered text, and no surface needs a special case.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clawgate.agents.bus import RunEvent, Subscription
from clawgate.agents.lanes import RunResult
from clawgate.providers.base import Message, ToolSpec
from clawgate.sessions.channelstore import Delivery
from clawgate.types import QueueMode

Content = str | list[dict[str, Any]] | None


@dataclass(frozen=True, slots=True)
class ReplyFilter:
    """What of a turn's reply may be seen.

    ``final`` maps the finished reply to the text that is stored, published and delivered, or
    to None when nothing may be: then the run's messages are archived (an acknowledged
    heartbeat leaves the transcript as it was) and its result says ``suppressed``. ``preview``
    maps the text streamed so far to what may be shown now; it should only grow (a preview
    that is not an extension of what was already shown holds the rest back until the end).
    """

    final: Callable[[str], str | None]
    preview: Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Submission:
    """One message for the engine, as a surface received it.

    ``tool_results`` are ``role: "tool"`` messages answering the client tool calls that the
    session's previous run handed back; they join the transcript ahead of ``content``, which may
    then be None. ``commands`` lets slash commands (``/new``, ``/stop``, plugin commands) be
    answered before the model; a surface that forwards raw text (the OpenAI API) turns it off.
    ``delivery`` is where a channel expects the reply (its durable intent comes with the run's
    end); ``reply`` filters what of the reply anyone sees (see :class:`ReplyFilter`).
    ``store_with_reply``: the surface acknowledges the message only with the whole reply, on a
    session key it generated (a non-streamed OpenAI request), so the engine may store the
    message together with a reply that comes at once (``agents/admission.py``).
    """

    content: Content
    session_key: str | None = None
    agent_id: str | None = None
    channel: str | None = None
    mode: QueueMode | None = None
    run_id: str | None = None
    client_tools: tuple[ToolSpec, ...] = ()
    extra_system_prompt: str | None = None
    tool_results: tuple[Message, ...] = ()
    sampling: Mapping[str, Any] = field(default_factory=dict)
    commands: bool = True
    inbound: tuple[str, str, str] | None = None
    delivery: Delivery | None = None
    reply: ReplyFilter | None = None
    store_with_reply: bool = False


class Turn:
    """One submitted message: its run id and session, its events, its result.

    ``command`` names the slash command that answered it (None for a model run), with its
    ``details`` (``/stop``: the aborted run ids); ``claimed_by`` names the plugin that took it.
    Both kinds are finished before ``submit`` returns.
    """

    def __init__(self, run_id: str, session_key: str, agent_id: str,
                 done: asyncio.Future[RunResult], *, subscription: Subscription | None = None,
                 abort: Callable[[], bool] | None = None, command: str | None = None,
                 claimed_by: str | None = None, details: Mapping[str, Any] | None = None,
                 ) -> None:
        self.run_id = run_id
        self.session_key = session_key
        self.agent_id = agent_id
        self.command = command
        self.claimed_by = claimed_by
        self.details: Mapping[str, Any] = details or {}  # a command's own result data
        self._done = done
        self._sub = subscription
        self._abort = abort
        if subscription is not None:
            # The run's end closes its mailbox even if nobody reads to the end, and wakes a
            # reader waiting for more (events() then drains what is queued and stops).
            done.add_done_callback(lambda _done: _ended(subscription))

    @property
    def done(self) -> bool:
        return self._done.done()

    @property
    def followed(self) -> bool:
        """True when the turn was submitted with ``follow=True`` (``events()`` works)."""
        return self._sub is not None

    async def result(self) -> RunResult:
        """How the run ended. Cancelling this wait leaves the run running (the shared future is
        shielded: cancelling one waiter must not cancel the outcome for everyone)."""
        return await asyncio.shield(self._done)

    def result_nowait(self) -> RunResult | None:
        return self._done.result() if self._done.done() and not self._done.cancelled() else None

    def abort(self) -> bool:
        """Abort the run (queued or running); False when it had already ended."""
        if self._done.done() or self._abort is None:
            return False
        return self._abort()

    async def events(self) -> AsyncGenerator[RunEvent, None]:
        """The run's events in order, from admission to its end.

        The iterator ends after the lifecycle ``end``/``error`` event, or when the run ended
        without one under its own id (merged into another run by ``collect`` or ``steer``,
        cancelled while queued), or when the mailbox overflowed. Callers complete what they
        missed from ``await turn.result()``.
        """
        async for event in self._events(pauses=False):
            if event is not None:
                yield event

    async def _events(self, *, pauses: bool) -> AsyncGenerator[RunEvent | None, None]:
        # With ``pauses``, None marks each point where no event is queued and the reader is
        # about to wait: what it made so far should go out now.
        sub = self._sub
        if sub is None:
            raise RuntimeError("this turn was submitted without follow=True")
        try:
            while True:
                event = sub.get_nowait()
                if event is None:
                    if self._done.done() or sub.overflowed:
                        return
                    if pauses:
                        yield None
                    event = await sub.next()
                    if event is None:
                        continue  # the run ended (it woke the mailbox): drain, then stop
                if not isinstance(event, RunEvent):
                    continue
                yield event
                if event.stream == "lifecycle" and event.data.get("phase") in ("end", "error"):
                    return
        finally:
            sub.close()

    def close(self) -> None:
        """Stop following (the run goes on)."""
        if self._sub is not None:
            self._sub.close()

    async def text(self) -> AsyncIterator[str | RunResult]:
        """The assistant text deltas as they stream, then the result (for surfaces that only
        relay text, like the OpenAI API)."""
        async for item in self.text_paused():
            if item is not None:
                yield item

    async def text_paused(self) -> AsyncIterator[str | RunResult | None]:
        """:meth:`text`, with None where nothing more is queued and it is about to wait: a
        surface can gather what arrives together and write it at once."""
        async for event in self._events(pauses=True):
            if event is None:
                yield None
            elif event.stream == "assistant" and event.data.get("delta"):
                yield str(event.data["delta"])
        yield await self.result()


def _ended(subscription: Subscription) -> None:
    subscription.close()
    subscription.wake()


def finished(result: RunResult) -> asyncio.Future[RunResult]:
    """A future already resolved with ``result`` (for turns answered before any run)."""
    future: asyncio.Future[RunResult] = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future
