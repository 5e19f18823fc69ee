"""The engine: the one entry point every surface (HTTP, WebSocket, channels, CLI) calls.

``submit`` admits a message: it resolves agent and session, captures the current plugin
generation (the run will use it and nothing else), makes the message durable in a queued run
record, and hands the run to the lanes. Only then is the message acknowledged. ``run`` is
``submit`` followed by waiting for the result.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, get_args

from clawgate.agents.bus import EventBus
from clawgate.agents.lanes import Lanes, QueueMode, Run, RunResult
from clawgate.agents.roster import Agent, ModelRef, Roster
from clawgate.agents.turn import TurnRequest, TurnRunner
from clawgate.config import Settings
from clawgate.diagnostics.metrics import Metrics
from clawgate.diagnostics.timeline import Timeline
from clawgate.errors import InvalidRequest, QueueFullError, Unavailable
from clawgate.plugins.host import PluginHost
from clawgate.providers.base import THINKING_LEVELS, Message, ThinkingLevel, ToolSpec
from clawgate.sessions import keys
from clawgate.sessions.listing import ListQuery, ListResult
from clawgate.sessions.store import SessionStore

RECENT_RESULTS = 1024


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
    ) -> None:
        self.settings = settings
        self.host = host
        self.store = store
        self.bus = bus or EventBus()
        self.metrics = metrics or host.metrics
        self.timeline = timeline or host.timeline
        self.roster = Roster(settings)
        engine = settings.config.engine
        self.runner = TurnRunner(store, self.bus, engine, self.metrics, self.timeline,
                                 run_sync=host.run_sync)
        self.lanes = Lanes(
            self.runner,
            max_concurrent=engine.max_concurrent,
            cap=engine.queue_cap,
            drop=engine.queue_drop,
            collect_window_s=engine.collect_window_ms / 1000,
            cancelled=self.runner.cancelled,
        )
        self._recent: OrderedDict[str, RunResult] = OrderedDict()
        self.closing = False
        self._admissions: set[asyncio.Future[Run]] = set()
        self._runs: dict[str, Run] = {}

    async def start(self) -> None:
        """Create missing workspaces and close out runs a killed process left open."""
        await asyncio.to_thread(self.roster.ensure_workspaces)
        await self.store.recover_runs()

    async def aclose(self, deadline_s: float = 10.0) -> None:
        """Let running turns finish within ``deadline_s``; abort what is left."""
        self.closing = True  # admit nothing new while the running turns drain
        await asyncio.gather(*self._admissions, return_exceptions=True)
        await self.lanes.aclose(deadline_s)

    # -- admission -------------------------------------------------------------------------

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

    async def submit(
        self,
        content: str | list[dict[str, Any]] | None,
        *,
        session_key: str | None = None,
        agent_id: str | None = None,
        channel: str | None = None,
        mode: QueueMode | None = None,
        run_id: str | None = None,
        client_tools: Sequence[ToolSpec] = (),
        extra_system_prompt: str | None = None,
        tool_results: Sequence[Message] = (),
        sampling: Mapping[str, Any] | None = None,
    ) -> Run:
        """Admit one user message; when this returns, the message is durable.

        ``tool_results`` are ``role: "tool"`` messages answering the client tool calls that the
        session's previous run handed back; they join the transcript ahead of ``content``, which
        may then be None (the results are the whole turn).
        """
        if self.closing:
            raise Unavailable("the gateway is shutting down; no new messages are accepted")
        blank = isinstance(content, str) and not content.strip()
        if blank or (content is None and not tool_results):
            raise InvalidRequest("message is empty")
        if any(m.get("role") != "tool" for m in tool_results):
            raise InvalidRequest("tool_results must be role 'tool' messages")
        agent, key = self.session_key(session_key, agent_id)
        limit = self.settings.config.engine.max_pending
        if len(self._runs) + len(self._admissions) >= limit:  # unfinished, all sessions
            raise QueueFullError(
                f"the gateway already holds {limit} unfinished messages (engine.max_pending); "
                "try again shortly", session_key=key)
        if mode is not None:  # refuse before anything is stored when the mode is known
            self._check_capacity(key, mode)
        run_id = run_id or str(uuid.uuid4())
        if run_id in self._runs or run_id in self._recent:
            raise InvalidRequest(f"run id {run_id!r} is already in use")
        messages = [dict(m) for m in tool_results]
        if content is not None:
            messages.append({"role": "user", "content": content})
        # Admission runs to its end even if the caller goes away mid-way (a closed connection
        # cancels its request): a run stored as queued must reach the lanes, never linger as a
        # record that recovery would replay. The engine owns the task and awaits it on close.
        admission = asyncio.ensure_future(self._admit(
            run_id, key, agent, messages, mode=mode, channel=channel,
            client_tools=client_tools, extra_system_prompt=extra_system_prompt,
            sampling=sampling))
        self._admissions.add(admission)
        admission.add_done_callback(self._admissions.discard)
        return await asyncio.shield(admission)

    async def _admit(self, run_id: str, key: str, agent: Agent, messages: list[dict[str, Any]],
                     *, mode: QueueMode | None, channel: str | None,
                     client_tools: Sequence[ToolSpec], extra_system_prompt: str | None,
                     sampling: Mapping[str, Any] | None) -> Run:
        # One trip to the store: session ensured, send policy checked, run queued (durable).
        entry = await self.store.admit(run_id, key, messages, agent_id=agent.id, channel=channel)
        queue_mode = mode or _queue_mode(entry.queue_mode) or self.settings.config.engine.queue_mode
        try:
            self._check_capacity(key, queue_mode)
        except QueueFullError:
            await self.store.discard_run(run_id)  # refused: its record must not survive
            raise
        override = None
        if entry.model_override:
            provider = entry.provider_override or agent.models[0].provider
            override = ModelRef.parse(f"{provider}/{entry.model_override}" if provider
                                      else entry.model_override)  # a bare alias
        request = TurnRequest(
            agent=agent,
            lease=self.host.checkout(),
            channel=channel,
            client_tools=tuple(client_tools),
            extra_system_prompt=extra_system_prompt,
            model=override,
            main_session=key == keys.main_key(agent.id, self.settings.config.session.main_key),
            sampling=dict(sampling or {}),
            thinking=_thinking(entry.thinking_level),
        )
        run = Run(run_id, key, messages, queue_mode, payload=request)
        try:
            self.lanes.submit(run)
        except QueueFullError:
            # Another admission filled the queue while this one was being stored: the message
            # is refused, so its record must not survive (recovery would replay it).
            request.lease.release()
            await self.store.discard_run(run_id)
            raise
        self._runs[run_id] = run
        run.done.add_done_callback(lambda _done: self._ended(run, request))
        return run

    async def run(self, content: str | list[dict[str, Any]] | None, **options: Any) -> RunResult:
        """Admit a message and wait for its run to end (cancelling the wait leaves the run)."""
        run = await self.submit(content, **options)
        return await asyncio.shield(run.done)

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
        self._remember(run)

    def _remember(self, run: Run) -> None:
        self._runs.pop(run.run_id, None)
        if run.done.cancelled():
            return
        self._recent[run.run_id] = run.done.result()
        while len(self._recent) > RECENT_RESULTS:
            self._recent.popitem(last=False)

    # -- control ---------------------------------------------------------------------------

    def abort(self, session_key: str, run_id: str | None = None) -> list[str]:
        """Abort queued runs, then the active one, of a session (or only ``run_id``)."""
        return self.lanes.abort(session_key, run_id)

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

    async def list_sessions(self, query: ListQuery) -> ListResult:
        """List sessions; rows' models are shown through the snapshot captured once here."""
        snapshot = self.host.snapshot  # one capture per call: no scans, no loads (I4, I7)
        agent = query.agent_id or ""
        with self.timeline.span("gateway.sessions.list", phase="sessions.list", agentId=agent):
            with self.timeline.span("gateway.sessions.list.store_load", agentId=agent):
                return await self.store.list_sessions(query,
                                                      display_model=snapshot.display_model)


def _thinking(value: str | None) -> ThinkingLevel | None:
    """The session's thinking level (``sessions.patch thinkingLevel``), if it is a known one."""
    for level in THINKING_LEVELS:
        if value == level:
            return level
    return None


def _queue_mode(value: str | None) -> QueueMode | None:
    for mode in get_args(QueueMode):
        if value == mode:
            return mode  # type: ignore[no-any-return]
    return None
