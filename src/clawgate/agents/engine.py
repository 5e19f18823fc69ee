"""The engine: the one turn API every surface (HTTP, WebSocket, CLI, channels, cron) calls.

``submit(Submission)`` answers slash commands and plugin claims at once, and otherwise admits
the message: it resolves agent and session, captures the current plugin generation (the run
will use it and nothing else), makes the message durable in a queued run record and hands the
run to the lanes. Only then does it return the :class:`~clawgate.agents.turn.Turn`, and only
then may the surface acknowledge the message. The engine also owns what changes a session
outside a turn (reset, delete, patch, inject), so every change reaches the event bus and the
session hooks from one place.

System events (``system_event``: a cron job's text for the main session, the ``wake`` RPC) wait
in a bounded queue per session and join the next message admitted there, ahead of its text
(``agents/sysevents.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from clawgate.agents import commands
from clawgate.agents.admission import Deferred
from clawgate.agents.bus import (
    EventBus,
    MessageEvent,
    RunEvent,
    SessionEvent,
    Stream,
    Subscription,
)
from clawgate.agents.claims import Claims
from clawgate.agents.compaction import Outcome
from clawgate.agents.lanes import Lanes, Run, RunResult
from clawgate.agents.roster import Agent, ModelRef, Roster
from clawgate.agents.runner import HISTORY_LIMIT, TurnRequest, TurnRunner
from clawgate.agents.sysevents import SystemEvents, prepend
from clawgate.agents.turn import Submission, Turn, finished
from clawgate.config import Settings
from clawgate.diagnostics.metrics import Metrics
from clawgate.diagnostics.timeline import Timeline
from clawgate.errors import InvalidRequest, QueueFullError, SessionError, Unavailable
from clawgate.ids import new_id
from clawgate.plugins.hooks import Hook
from clawgate.plugins.host import Generation, PluginHost
from clawgate.plugins.registry import CommandContext
from clawgate.providers.base import THINKING_LEVELS, ThinkingLevel, text_of
from clawgate.sessions import doorbell, keys
from clawgate.sessions.channelstore import Delivery
from clawgate.sessions.listing import ListQuery, ListResult
from clawgate.sessions.replica import Replica
from clawgate.sessions.runs import Taken
from clawgate.sessions.schema import SessionEntry
from clawgate.sessions.store import SessionStore
from clawgate.sessions.transcript import StoredMessage
from clawgate.types import QueueMode, now_ms, queue_mode

log = logging.getLogger("clawgate.engine")
RECENT_RESULTS = 1024
FOLLOW_QUEUE = 4096  # events a followed turn may have unread before its mailbox overflows
STOP_WAIT_S = 15.0


class Engine:
    """Sessions, lanes and turns over one plugin host and one store."""

    def __init__(
        self,
        settings: Settings,
        host: PluginHost,
        store: SessionStore,
        *,
        bus: EventBus | None = None,
        metrics: Metrics | None = None,
        timeline: Timeline | None = None,
        replica: Replica | None = None,
    ) -> None:
        self.settings = settings
        self.host = host
        self.store = store
        self.bus = bus or EventBus()
        self.metrics = metrics or host.metrics
        self.timeline = timeline or host.timeline
        self.roster = Roster(settings)
        engine = settings.config.engine
        # Several replicas on one PostgreSQL store: runs name this replica as their owner,
        # start through a claim of their session, and the runs of dead replicas are taken
        # over (a sweeper). On SQLite (or without a replica) the process owns everything.
        self.replica = replica if replica is not None and store.backend.kind == "postgres" \
            else None
        if self.replica is not None:
            store.owner = self.replica.id
        self.claims = Claims(store) if self.replica is not None else None
        self._sweeper: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None  # the doorbell's session.free rings
        self.runner = TurnRunner(store, self.bus, engine, self.metrics, self.timeline,
                                 run_sync=host.run_sync)
        self.lanes = Lanes(
            self.runner,
            max_concurrent=engine.max_concurrent,
            cap=engine.queue_cap,
            drop=engine.queue_drop,
            collect_window_s=engine.collect_window_ms / 1000,
            cancelled=self.runner.cancelled,
            dropped=self._dropped,
            claim=None if self.claims is None else self.claims.claim,
        )
        self._recent: OrderedDict[str, RunResult] = OrderedDict()
        self.closing = False
        self._admissions: dict[str, asyncio.Future[Any]] = {}  # by run id
        self._admitting: dict[str, int] = {}  # session key -> admissions on their way
        self._background: set[asyncio.Task[Any]] = set()  # session hooks; awaited on close
        self._runs: dict[str, Run] = {}
        self.system_events = SystemEvents(
            on_drop=lambda: self.metrics.inc("system_events_dropped_total"))

    async def start(self) -> None:
        """Create missing workspaces and deal with the runs a killed process left open.

        ``[engine] resume_interrupted``: with ``"rerun"`` (the default) the acknowledged
        messages whose run had not started are run again, so they get their reply; runs that
        had started (their reply may have been half streamed) are marked ``interrupted``. With
        ``"mark"`` every open run is marked ``interrupted``.
        """
        await asyncio.to_thread(self.roster.ensure_workspaces, self.settings.state_dir)
        if self.replica is not None:
            # Other replicas may be running turns: only dead ones' runs are this one's to
            # close, and the sweeper takes them over (now, then every takeover_interval_s).
            await self.sweep()
            loop = asyncio.get_running_loop()
            self._sweeper = loop.create_task(self._sweep_forever(), name="runs:takeover")
            if self.claims is not None:  # other replicas ring when they free a session
                bell = self.store.doorbell.subscribe(doorbell.SESSION_FREE)
                self._follower = loop.create_task(self.claims.follow(bell),
                                                  name="runs:session-free")
                self._follower.add_done_callback(lambda _: bell.close())
            return
        rerun = self.settings.config.engine.resume_interrupted == "rerun"
        _closed, resumable = await self.store.recover_runs(rerun=rerun)
        resumed = 0
        for run_id, key, messages, delivery in resumable:
            resumed += await self._resume(run_id, key, messages, delivery)
        if resumed:
            log.info("resuming %d acknowledged message(s) left unanswered by a restart", resumed)

    async def _resume(self, run_id: str, key: str, messages: list[dict[str, Any]],
                      delivery: str | None, front: bool = False) -> int:
        """Hand a stored run back to the lanes (1), or mark it interrupted when it cannot
        run again (0). ``front``: taken over, it runs before the lane's own queued runs."""
        try:
            agent = self.roster.get(keys.agent_of(key))
            entry = await self.store.get(key)
            if entry is None:
                raise SessionError(f"session {key!r} is gone", session_key=key)
            await self._enqueue(run_id, key, agent, messages, Submission(
                None, session_key=key, channel=entry.channel, mode="followup",
                delivery=Delivery.load(delivery)), entry, follow=False, resumed=True,
                front=front)
            if self.claims is not None:
                self.claims.wake(key)  # a claim deferred behind it steps back now
            return 1
        except Exception as exc:  # this run cannot run again: keep today's behaviour
            log.warning("run %s of %s cannot be resumed (%s); marking it interrupted",
                        run_id, key, exc)
            await self.store.interrupt_run(run_id)
            return 0

    # -- takeover (several replicas) ---------------------------------------------------------

    async def sweep(self) -> list[Taken]:
        """Take over the open runs of replicas that died (their liveness lease is free) and
        run them here: a queued run as admitted, a running one again from its transcript (its
        input is there; its reply was never recorded, so it is answered once). With
        ``resume_interrupted = "mark"`` they are marked interrupted instead."""
        replica = self.replica
        if replica is None or self.closing:
            return []
        if not await replica.holding():
            # Lost with a database connection (a restart): take it again before judging
            # others, or they would all look dead to a replica that is itself cut off.
            with contextlib.suppress(Exception):
                await replica.start()
            return []
        dead = [owner for owner in await self.store.open_owners()
                if owner is None or not await replica.alive(owner)]
        taken = await self.store.take_over_runs(dead)
        # Its own runs that it lost track of (their end could not be recorded): run again,
        # or they would hold their sessions on every replica.
        for lost in await self.store.owned_open_runs():
            if not self.in_flight(lost[0]) and all(t[0] != lost[0] for t in taken):
                log.warning("run %s of %s was left open here; running it again",
                            lost[0], lost[1])
                taken.append(lost)
        rerun = self.settings.config.engine.resume_interrupted == "rerun"
        for run_id, key, messages, delivery, _started in taken:
            if rerun:
                await self._resume(run_id, key, messages, delivery, front=True)
            else:
                await self.store.interrupt_run(run_id)
        if taken:
            log.info("took over %d run(s) of dead replica(s) %s", len(taken),
                     ", ".join(str(d) for d in dead))
        return taken

    async def _sweep_forever(self) -> None:
        period = self.settings.config.engine.takeover_interval_s
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except Exception as exc:  # the store is away (a restart): the next sweep retries
                log.warning("takeover sweep failed: %s", exc)

    async def aclose(self, deadline_s: float = 10.0) -> None:
        """Let running turns finish within ``deadline_s``; abort what is left."""
        self.closing = True  # admit nothing new while the running turns drain
        for task in (self._sweeper, self._follower):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*self._admissions.values(), return_exceptions=True)
        await self.lanes.aclose(deadline_s)
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- resolving ---------------------------------------------------------------------------

    def session_key(self, session_key: str | None, agent_id: str | None = None) -> tuple[
            Agent, str]:
        """Resolve (agent, canonical session key) from what a caller gave."""
        main = self.settings.config.session.main_key
        if session_key:
            owner = keys.agent_of(session_key) if session_key.startswith("agent:") else None
            agent = self.roster.get(agent_id or owner)
            if owner and agent_id and keys.normalize_agent_id(agent_id) != owner:
                raise InvalidRequest(
                    f"session key {session_key!r} belongs to agent {owner!r}, not {agent_id!r}")
            return agent, keys.qualify(session_key, agent.id, main)
        agent = self.roster.get(agent_id)
        return agent, keys.main_key(agent.id, main)

    def is_main(self, agent: Agent, key: str) -> bool:
        return key == keys.main_key(agent.id, self.settings.config.session.main_key)

    def busy(self, session_key: str) -> bool:
        """True while the session has a run, or a live queued one."""
        return self.lanes.active(session_key) is not None or any(
            run.cancel_reason is None for run in self.lanes.queued(session_key))

    def system_event(self, text: str, *, agent_id: str | None = None,
                     session_key: str | None = None) -> str:
        """Queue ``text`` for the next message of a session (default: the agent's main
        session); returns the session key. Empty text is refused."""
        if not text.strip():
            raise InvalidRequest("text is empty")
        _agent, key = self.session_key(session_key, agent_id)
        self.system_events.add(key, text)
        return key

    # -- the turn API ------------------------------------------------------------------------

    async def submit(self, submission: Submission, *, follow: bool = False) -> Turn:
        """Answer or admit one message; when this returns, the message is durable.

        With ``follow``, the turn's events can be iterated (``turn.events()``); the
        subscription exists before the run can publish anything, so nothing is missed.
        """
        if self.closing:
            raise Unavailable("the gateway is shutting down; no new messages are accepted")
        content, tool_results = submission.content, submission.tool_results
        blank = isinstance(content, str) and not content.strip()
        if blank or (content is None and not tool_results):
            raise InvalidRequest("message is empty")
        if any(m.get("role") != "tool" for m in tool_results):
            raise InvalidRequest("tool_results must be role 'tool' messages")
        agent, key = self.session_key(submission.session_key, submission.agent_id)
        run_id = submission.run_id or new_id()
        if self.in_flight(run_id) or run_id in self._recent:
            raise InvalidRequest(f"run id {run_id!r} is already in use")
        generation = self.host.current
        if submission.commands and not tool_results:
            command = commands.parse(content)
            if command is not None and commands.known(command[0],
                                                      generation.registry.commands):
                return await self._command(command, run_id, key, agent, generation,
                                           submission, follow)
            claimed = await self._claim(run_id, key, agent, generation, submission, follow)
            if claimed is not None:
                return claimed
        limit = self.settings.config.engine.max_pending
        if len(self._runs) + len(self._admissions) >= limit:  # unfinished, all sessions
            raise QueueFullError(
                f"the gateway already holds {limit} unfinished messages (engine.max_pending); "
                "try again shortly", session_key=key)
        if submission.mode is not None:  # refuse before anything is stored when it is known
            self._check_capacity(key, submission.mode)
        messages = [dict(m) for m in tool_results]
        if content is not None:
            messages.append({"role": "user", "content": content})
        deferred = self._deferred(run_id, key, agent, messages, submission)
        if deferred is not None:  # stored with its reply: nothing to wait for here
            run, sub = self._defer(deferred, agent, messages, submission, follow)
            return Turn(run_id, key, agent.id, run.done, subscription=sub,
                        abort=lambda: bool(self.abort(key, run_id)))
        # Admission runs to its end even if the caller goes away mid-way (a closed connection
        # cancels its request): a run stored as queued must reach the lanes, never linger as a
        # record that recovery would replay. The engine owns the task and awaits it on close.
        admission = asyncio.ensure_future(
            self._admit(run_id, key, agent, messages, submission, follow))
        self._admissions[run_id] = admission
        admission.add_done_callback(lambda _done: self._admissions.pop(run_id, None))
        run, sub, created = await asyncio.shield(admission)
        if created:
            self._observe(Hook.SESSION_START, session_key=key, agent_id=agent.id)
        return Turn(run_id, key, agent.id, run.done, subscription=sub,
                    abort=lambda: bool(self.abort(key, run_id)))

    async def run(self, submission: Submission) -> RunResult:
        """Submit a message and wait for its run to end (cancelling the wait leaves the run)."""
        turn = await self.submit(submission)
        return await turn.result()

    async def _admit(self, run_id: str, key: str, agent: Agent, messages: list[dict[str, Any]],
                     submission: Submission,
                     follow: bool) -> tuple[Run, Subscription | None, bool]:
        events = self._join_events(key, submission, messages)
        # One trip to the store: session ensured, send policy checked, run queued (durable)
        # and, when the session's lane will run it at once, started too (its context read).
        starts = self._starts(key, submission)
        self._admitting[key] = self._admitting.get(key, 0) + 1
        try:
            entry, created, begun = await self.store.admit_and_begin(
                run_id, key, messages, starts=starts, agent_id=agent.id,
                channel=submission.channel, inbound=submission.inbound,
                delivery=submission.delivery)
        except BaseException:
            self.system_events.restore(key, events)
            raise
        finally:
            left = self._admitting.pop(key) - 1
            if left:
                self._admitting[key] = left
        try:
            run, sub = await self._enqueue(run_id, key, agent, messages, submission, entry,
                                           follow, begun=begun)
        except QueueFullError:
            self.system_events.restore(key, events)
            raise
        # Published before the lane's worker can run (no await since lanes.submit), so "send"
        # comes before the run's own events even when it started with its admission.
        self.bus.publish(SessionEvent(key, "send", run_id))
        return run, sub, created

    def _join_events(self, key: str, submission: Submission,
                     messages: list[dict[str, Any]]) -> tuple[str, ...]:
        """Queued system events join the message; returned so that a refused admission gives
        them back (``system_events.restore``)."""
        events = self.system_events.take(key) if submission.content is not None else ()
        if events:
            messages[-1] = prepend(messages[-1], events)
        return events

    def _starts(self, key: str, submission: Submission) -> Callable[[Any], int | None] | None:
        """Whether the admission may also start the run (in its transaction): only when the
        session's lane is idle with a free slot and no other admission for it is on its way,
        so the run is the next to start there — unless its queue mode is ``collect`` (it waits
        for more). Given the stored session row, the history size to read, or None."""
        if key in self._admitting or not self.lanes.idle(key):
            return None
        given = submission.mode
        default = self.settings.config.engine.queue_mode

        def starts(row: Any) -> int | None:
            mode = given or queue_mode(row["queue_mode"]) or default
            return None if mode == "collect" else HISTORY_LIMIT + 1

        return starts

    def _deferred(self, run_id: str, key: str, agent: Agent, messages: list[dict[str, Any]],
                  submission: Submission) -> Deferred | None:
        """The admission to store with the run's reply, when its surface allows it and the
        run starts at once (an idle lane, not ``collect``) on one replica's store. Its session
        key was generated by the surface, so the session it creates holds nothing else."""
        if not submission.store_with_reply or self.store.owner is not None or \
                self._starts(key, submission) is None:
            return None
        if submission.inbound is not None or submission.delivery is not None or \
                submission.reply is not None or submission.tool_results:
            return None
        if (submission.mode or self.settings.config.engine.queue_mode) == "collect":
            return None
        store = self.store
        return Deferred(
            store, run_id, keys.canonical(key), messages, agent.id, submission.channel,
            new_id(), store.now(),
            on_created=lambda: self._observe(Hook.SESSION_START, session_key=key,
                                             agent_id=agent.id))

    def _defer(self, deferred: Deferred, agent: Agent, messages: list[dict[str, Any]],
               submission: Submission, follow: bool) -> tuple[Run, Subscription | None]:
        """Hand a deferred admission (agents/admission.py) to the lanes now: no store trip, so
        no task and nothing a caller going away could interrupt. Its session_start comes when
        the store creates the session."""
        run_id, key = deferred.run_id, deferred.key
        events = self._join_events(key, submission, messages)
        try:
            run, sub = self._hand_over(run_id, key, agent, messages, submission, deferred.entry,
                                       follow, begun=list(deferred.context()),
                                       admission=deferred)
        except QueueFullError:
            self.system_events.restore(key, events)
            raise
        self.bus.publish(SessionEvent(key, "send", run_id))
        return run, sub

    async def _enqueue(self, run_id: str, key: str, agent: Agent, messages: list[dict[str, Any]],
                       submission: Submission, entry: SessionEntry, follow: bool,
                       resumed: bool = False, begun: list[StoredMessage] | None = None,
                       front: bool = False) -> tuple[Run, Subscription | None]:
        """Hand a stored (queued) run to the lanes; its record goes if the lanes refuse it
        (a ``resumed`` run was acknowledged before a restart: its record stays). ``begun``:
        the run was started with its admission (its context)."""
        try:
            if not resumed and begun is None:  # a begun run found its lane idle
                self._check_capacity(key, self._mode(submission, entry))
        except QueueFullError:
            await self.store.discard_run(run_id)  # refused: its record must not survive
            raise
        try:
            return self._hand_over(run_id, key, agent, messages, submission, entry, follow,
                                   begun=begun, front=front)
        except QueueFullError:
            # Another admission filled the queue while this one was being stored: the message
            # is refused, so its record must not survive (recovery would replay it).
            if begun is not None:  # started already: its input is in the transcript
                await self.store.complete_run(run_id, key, [], status="aborted",
                                              stop_reason="refused: queue full")
            elif not resumed:
                await self.store.discard_run(run_id)
            raise

    def _hand_over(self, run_id: str, key: str, agent: Agent, messages: list[dict[str, Any]],
                   submission: Submission, entry: SessionEntry, follow: bool, *,
                   begun: list[StoredMessage] | None = None, front: bool = False,
                   admission: Deferred | None = None) -> tuple[Run, Subscription | None]:
        """The run for the lanes, submitted; raises QueueFullError (leaving any record of it
        to the caller) when its queue is full. ``admission``: it is not stored yet (``begun``
        is its input as it will be)."""
        request = TurnRequest(
            agent=agent,
            lease=self.host.checkout(),
            channel=submission.channel,
            client_tools=tuple(submission.client_tools),
            extra_system_prompt=submission.extra_system_prompt,
            model=_override(agent, entry),
            main_session=self.is_main(agent, key),
            sampling=dict(submission.sampling),
            thinking=_thinking(entry.thinking_level),
            delivers=submission.delivery is not None,
            reply=submission.reply,
            begun=None if begun is None else tuple(begun),
            admission=admission,
        )
        run = Run(run_id, key, messages, self._mode(submission, entry), payload=request)
        # Subscribed before the run enters the lanes: it cannot have published anything yet.
        sub = self.bus.subscribe(run_id=run_id, maxsize=FOLLOW_QUEUE) if follow else None
        try:
            self.lanes.submit(run, front=front)
        except QueueFullError:
            request.lease.release()
            if sub is not None:
                sub.close()
            raise
        self._runs[run_id] = run
        run.done.add_done_callback(lambda _done: self._ended(run, request))
        return run, sub

    def _mode(self, submission: Submission, entry: SessionEntry) -> QueueMode:
        return submission.mode or queue_mode(entry.queue_mode) or \
            self.settings.config.engine.queue_mode

    def _check_capacity(self, key: str, mode: QueueMode) -> None:
        # Refuse before anything is stored: a refused message must change nothing.
        engine = self.settings.config.engine
        if mode in ("interrupt", "steer") or engine.queue_drop == "old":
            return
        live = [run for run in self.lanes.queued(key) if run.cancel_reason is None]
        if len(live) >= engine.queue_cap:
            raise QueueFullError(
                f"session {key!r} already has {engine.queue_cap} queued messages",
                session_key=key,
            )

    def _ended(self, run: Run, request: TurnRequest) -> None:
        # The runner releases the lease of each run it executes or records as aborted, but a
        # run merged into another (collect, steer) never reaches it. A second release is a no-op.
        request.lease.release()
        self._runs.pop(run.run_id, None)
        if self.claims is not None:  # the session may be free for a run waiting here
            self.claims.wake(run.session_key)
        if not run.done.cancelled():
            self._remember(run.done.result())

    def _remember(self, result: RunResult) -> None:
        self._recent[result.run_id] = result
        while len(self._recent) > RECENT_RESULTS:
            self._recent.popitem(last=False)

    def _dropped(self, run: Run) -> None:
        """A queued run was cancelled (abort, interrupt, queue drop): it never ran, so its end is
        announced here, at once, rather than when the lane gets round to recording it."""
        result = run.done.result()
        self.bus.publish(RunEvent(run.run_id, run.session_key, "lifecycle", {
            "phase": "end", "status": "aborted", "text": "", "stopReason": result.stop_reason,
            "error": None, "usage": {}, "toolCalls": [], "endedAt": now_ms()}, 1))

    # -- answered without the model -----------------------------------------------------------

    async def _command(self, command: tuple[str, str], run_id: str, key: str, agent: Agent,
                       generation: Generation, submission: Submission, follow: bool) -> Turn:
        name, args = command
        sub = self.bus.subscribe(run_id=run_id, maxsize=16) if follow else None
        details: dict[str, Any] = {}
        status: Any = "ok"
        try:
            text = await self._answer(name, args, run_id, key, agent, generation,
                                      submission.channel, details)
        except Exception as exc:  # a failing command answers with its error, never raises
            if not isinstance(exc, InvalidRequest | SessionError):
                log.warning("command /%s failed: %r", name, exc)
            status, text = "error", f"/{name} failed: {exc}"
        result = RunResult(run_id, key, status, text, stop_reason="command",
                           error=text if status == "error" else None)
        self._announce(result, command=name)
        self._remember(result)
        return Turn(run_id, key, agent.id, finished(result), subscription=sub, command=name,
                    details=details)

    async def _answer(self, name: str, args: str, run_id: str, key: str, agent: Agent,
                      generation: Generation, channel: str | None,
                      details: dict[str, Any]) -> str:
        if name == "stop":
            stopped = self.abort(key)
            details["aborted"] = stopped
            return "Stopped." if stopped else "Nothing to stop."
        if name in ("new", "reset"):
            if await self.store.get(key) is not None:  # else the next message starts one
                await self.reset_session(key, agent_id=agent.id, reason=name)
            return "Started a new session."
        if name == "status":
            return await self.status_text(agent, key)
        if name == "compact":
            outcome = await self.compact(key, agent_id=agent.id, instructions=args or None,
                                         busy="abort")
            if outcome.failed:
                raise SessionError(outcome.reason or "compaction failed", session_key=key)
            return commands.compact_text(outcome)
        plugin = generation.registry.commands.get(name)
        if name == "help" or plugin is None:
            return commands.help_text(generation.registry.commands)
        context = CommandContext(key, agent.id, channel, run_id)
        lease = self.host.checkout(generation)
        try:
            if inspect.iscoroutinefunction(plugin.handler):
                reply = await plugin.handler(args, context)
            else:
                reply = await self.host.run_sync(plugin.handler, args, context)
                if inspect.isawaitable(reply):
                    reply = await reply
        finally:
            lease.release()
        return "" if reply is None else str(reply)

    async def _claim(self, run_id: str, key: str, agent: Agent, generation: Generation,
                     submission: Submission, follow: bool) -> Turn | None:
        hooks = generation.registry.hooks
        if not hooks.handlers(Hook.INBOUND_CLAIM):
            return None
        message = {"role": "user", "content": submission.content}
        outcome = await hooks.call(Hook.INBOUND_CLAIM, session_key=key, message=message,
                                   channel=submission.channel)
        if outcome.claimed_by is None:
            return None
        claim = outcome.claim
        reply = claim.get("reply") if isinstance(claim, dict) else getattr(claim, "reply", None)
        sub = self.bus.subscribe(run_id=run_id, maxsize=16) if follow else None
        result = RunResult(run_id, key, "ok", str(reply or ""), stop_reason="claimed")
        self._announce(result, claimed_by=outcome.claimed_by)
        self._remember(result)
        return Turn(run_id, key, agent.id, finished(result), subscription=sub,
                    claimed_by=outcome.claimed_by)

    def _announce(self, result: RunResult, **data: Any) -> None:
        """Publish an answered-at-once turn like a run, so every surface shows its reply."""
        at = now_ms()
        events: list[tuple[Stream, dict[str, Any]]] = [
            ("lifecycle", {"phase": "start", "startedAt": at, **data})]
        if result.text:
            events.append(("assistant", {"delta": result.text}))
        events.append(("lifecycle", {
            "phase": "end" if result.status == "ok" else "error", "status": result.status,
            "text": result.text, "stopReason": result.stop_reason, "error": result.error,
            "usage": {}, "toolCalls": [], "endedAt": at, **data}))
        for seq, (stream, payload) in enumerate(events, 1):
            self.bus.publish(RunEvent(result.run_id, result.session_key, stream, payload, seq))

    async def status_text(self, agent: Agent, key: str) -> str:
        """The ``/status`` reply."""
        entry = await self.store.get(key)
        active = self.lanes.active(key)
        queued = [r for r in self.lanes.queued(key) if r.cancel_reason is None]
        model = str(agent.models[0])
        if entry is not None and entry.model_override:
            model = f"{entry.provider_override or agent.models[0].provider}/" \
                    f"{entry.model_override}"
        lines = [f"Agent: {agent.name} ({agent.id})", f"Session: {key}", f"Model: {model}"]
        if entry is not None:
            lines += [f"Session id: {entry.session_id}",
                      f"Tokens: {entry.input_tokens} in / {entry.output_tokens} out"]
        lines.append(f"Running: {'yes' if active is not None else 'no'}; queued: {len(queued)}")
        return "\n".join(lines)

    # -- compaction --------------------------------------------------------------------------

    async def compact(self, key: str, *, agent_id: str, instructions: str | None = None,
                      max_lines: int | None = None,
                      busy: Literal["abort", "refuse"] = "refuse") -> Outcome:
        """Compact the session now, the memory flush first (``sessions.compact``, ``/compact``).

        With a run active or queued, ``busy="refuse"`` raises InvalidRequest (as OpenClaw's
        ``sessions.compact``) and ``"abort"`` stops the active run first (as its ``/compact``).
        ``max_lines`` keeps at most that many of the newest messages verbatim.
        """
        agent = self.roster.get(agent_id)
        entry = await self.store.get(key)
        if entry is None:
            return Outcome(False, "no sessionId")
        active = self.lanes.active(key)
        if busy == "refuse":
            if active is not None:
                raise InvalidRequest(f"Session {key} has an active run; retry after it "
                                     "finishes.")
            if any(r.cancel_reason is None for r in self.lanes.queued(key)):
                raise InvalidRequest(f"Session {key} has queued work; retry after it finishes.")
        elif active is not None:
            self.abort(key, active.run_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(active.done), STOP_WAIT_S)
        lease = self.host.checkout()
        try:
            request = TurnRequest(agent=agent, lease=lease, model=_override(agent, entry),
                                  main_session=self.is_main(agent, key),
                                  thinking=_thinking(entry.thinking_level))
            return await self.runner.compact(key, request, instructions=instructions,
                                             max_lines=max_lines)
        finally:
            lease.release()

    # -- control -----------------------------------------------------------------------------

    def abort(self, session_key: str, run_id: str | None = None) -> list[str]:
        """Abort queued runs, then the active one, of a session (or only ``run_id``)."""
        aborted = self.lanes.abort(session_key, run_id)
        if self.claims is not None:  # a run waiting for its claim notices at once
            self.claims.wake(session_key)
        return aborted

    async def stop(self, session_key: str, wait_s: float = STOP_WAIT_S) -> bool:
        """Abort the session's runs; True once the active one has ended (within ``wait_s``)."""
        active = self.lanes.active(session_key)
        self.abort(session_key)
        if active is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(active.done), wait_s)
        except TimeoutError:
            return False
        return True

    def in_flight(self, run_id: str) -> bool:
        """True while a run with this id is being admitted, queued or running."""
        return run_id in self._admissions or run_id in self._runs

    def find_run(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def result(self, run_id: str) -> RunResult | None:
        return self._recent.get(run_id)

    async def wait(self, run_id: str, timeout_s: float | None = None) -> RunResult | None:
        """The run's result, waiting up to ``timeout_s``; None on timeout or unknown run."""
        done = self._recent.get(run_id)
        if done is not None:
            return done
        run = self._runs.get(run_id)
        if run is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(run.done), timeout_s)
        except TimeoutError:
            return None

    # -- sessions outside a turn ----------------------------------------------------------------

    async def list_sessions(self, query: ListQuery) -> ListResult:
        """List sessions; rows' models are shown through the snapshot captured once here."""
        snapshot = self.host.snapshot  # one capture per call: no scans, no loads (I4, I7)
        agent = query.agent_id or ""
        with self.timeline.span("gateway.sessions.list", phase="sessions.list", agentId=agent):
            with self.timeline.span("gateway.sessions.list.store_load", agentId=agent):
                return await self.store.list_sessions(query,
                                                      display_model=snapshot.display_model)

    async def reset_session(self, key: str, *, agent_id: str, reason: str = "reset",
                            ) -> SessionEntry:
        """Stop the session's runs and start a fresh transcript (the old one is archived);
        SessionNotFound when there is no such session."""
        await self.stop(key)
        entry = await self.store.reset(key)
        self.bus.publish(SessionEvent(key, "reset", fields={"reason": reason}))
        self._observe(Hook.SESSION_END, session_key=key, agent_id=agent_id, reason=reason)
        return entry

    async def delete_session(self, key: str, *, agent_id: str) -> bool:
        """Stop the session's runs and delete it (its messages are archived). The main session
        is refused; a session whose run does not stop in time is refused as busy."""
        agent = self.roster.get(agent_id)
        main = self.settings.config.session.main_key
        if key == keys.main_key(keys.agent_of(key) or agent.id, main):
            raise InvalidRequest(f"the main session {key!r} cannot be deleted")
        if not await self.stop(key):
            raise Unavailable(f"Session {key} is still active; try again in a moment.")
        deleted = await self.store.delete(key, main)
        if deleted:
            self.bus.publish(SessionEvent(key, "delete"))
            self._observe(Hook.SESSION_END, session_key=key, agent_id=agent.id,
                          reason="delete")
        return deleted

    async def patch_session(self, key: str, *, agent_id: str, wire: dict[str, Any],
                            **fields: Any) -> SessionEntry:
        """Set session fields (``wire``: the same change in wire names, for subscribers)."""
        await self.store.ensure(key, agent_id=agent_id)
        entry = await self.store.patch(key, **fields)
        self.bus.publish(SessionEvent(key, "patch", fields=wire))
        return entry

    async def inject(self, key: str, *, agent_id: str, text: str) -> tuple[str, int, int]:
        """Append an assistant note to the transcript without a run; returns (run id, message
        id, timestamp) and announces it like a finished run."""
        await self.store.ensure(key, agent_id=agent_id)
        stored = await self.store.append(key, [{"role": "assistant", "content": text,
                                                "stop_reason": "injected"}])
        run_id = f"inject-{new_id()}"
        self.bus.publish(MessageEvent(key, tuple(stored), run_id))
        self.bus.publish(SessionEvent(key, "inject", run_id,
                                      fields={"messageId": stored[0].id,
                                              "text": text_of({"content": text})}))
        return run_id, stored[0].id, stored[0].created_at

    def _observe(self, hook: Hook, **values: Any) -> None:
        """Run an observe hook without holding up the caller; the engine owns the task."""
        hooks = self.host.current.registry.hooks
        if not hooks.handlers(hook):
            return
        call: Coroutine[Any, Any, Any] = hooks.call(hook, **values)
        task = asyncio.get_running_loop().create_task(call, name=f"hook:{hook}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _override(agent: Agent, entry: SessionEntry) -> ModelRef | None:
    """The session's model override (``sessions.patch model``), if any."""
    if not entry.model_override:
        return None
    provider = entry.provider_override or agent.models[0].provider
    return ModelRef.parse(f"{provider}/{entry.model_override}" if provider
                          else entry.model_override)  # a bare alias


def _thinking(value: str | None) -> ThinkingLevel | None:
    """The session's thinking level (``sessions.patch thinkingLevel``), if it is a known one."""
    for level in THINKING_LEVELS:
        if value == level:
            return level
    return None
