"""The turn runner: stored user message -> prompt -> provider stream -> tools -> ... -> reply.

The runner works only with the generation captured when the message was admitted (I4): its
providers, tools, hooks and model-id policies. What reaches the store:

- the run's user message(s), when the turn starts (they were durable in the run record since
  admission);
- each assistant tool-call message and tool result as the loop goes;
- the final assistant message, usage and the run's end status in one transaction — also on
  timeout, abort or error, with the partial text and the stop reason, so the transcript is
  always consistent.

A turn with a reply filter (``Submission.reply``, a heartbeat's) publishes only the deltas its
``preview`` allows and stores and publishes only the text its ``final`` allows; when ``final``
drops the reply, the run's messages are archived with its end (see ``agents/turn.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson

from clawgate.agents.admission import Deferred
from clawgate.agents.budget import Budget, message_tokens, prompt_tokens
from clawgate.agents.bus import EventBus, MessageEvent, RunEvent, Stream
from clawgate.agents.compaction import Compactor, Outcome, Setup, Trigger
from clawgate.agents.lanes import Run, RunResult
from clawgate.agents.prompt import BootstrapCache, system_prompt
from clawgate.agents.roster import Agent, ModelRef
from clawgate.agents.turn import ReplyFilter
from clawgate.config import EngineConfig
from clawgate.diagnostics.metrics import Metrics
from clawgate.diagnostics.timeline import Timeline
from clawgate.errors import ClawgateError, HookError, InvalidRequest, ProviderError, ToolError
from clawgate.plugins.hooks import Hook, HookCaller
from clawgate.plugins.host import Lease
from clawgate.plugins.registry import Registry, Tool, ToolContext
from clawgate.providers.base import (
    Cost,
    Finish,
    Message,
    ModelRequest,
    TextDelta,
    ThinkingLevel,
    ToolCall,
    ToolSpec,
    Usage,
    sampling_request,
)
from clawgate.providers.catalog import Catalog, CatalogCache
from clawgate.sessions.compaction import View
from clawgate.sessions.store import SessionStore
from clawgate.sessions.transcript import StoredMessage
from clawgate.types import EndStatus

log = logging.getLogger("clawgate.turn")
# Messages after the last compaction cut sent to the model. More is a compaction trigger
# ("messages"); with compaction off, the oldest beyond it are left out of the prompt.
HISTORY_LIMIT = 400


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """What one run needs besides its messages (``Run.payload``)."""

    agent: Agent
    lease: Lease
    channel: str | None = None
    client_tools: tuple[ToolSpec, ...] = ()
    extra_system_prompt: str | None = None
    model: ModelRef | None = None  # a session's model override
    main_session: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, top_p...
    delivers: bool = False  # a channel waits for the reply (its intent comes with the end)
    admitted_at: float = field(default_factory=time.perf_counter)
    thinking: ThinkingLevel | None = None  # the session's thinking level
    reply: ReplyFilter | None = None  # what of the reply may be seen (a heartbeat's)
    # The run was started in its admission's transaction: the turn's context read there
    # (``begin_run``'s result), so the runner skips its own begin. None: it starts the run.
    begun: tuple[StoredMessage, ...] | None = None
    # Not stored yet: the run is stored with its reply (``agents/admission.py``); ``begun``
    # is then its input as it will be stored.
    admission: Deferred | None = None


@dataclass(slots=True)
class _Progress:
    """What a turn has produced so far (kept for a partial save on abort or timeout)."""

    text: str = ""
    usage: Usage = Usage()
    model: str | None = None
    provider: str | None = None
    first_delta_at: float | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    cost: Cost | None = None  # None until a model with prices answered
    extra: dict[str, Any] = field(default_factory=dict)  # Finish.extra of the final reply
    fallbacks: list[dict[str, Any]] = field(default_factory=list)  # failed model attempts
    announced: str | None = None  # the provider/model last published as lifecycle "model"
    streamed: str = ""  # a filtered turn: every text delta of the run so far
    shown: str = ""  # a filtered turn: what of it was published
    steered: bool = False  # other messages joined this run (its transcript is not only its own)
    suppressed: bool = False  # the reply filter dropped the reply
    first_seq: int | None = None  # transcript seq of the run's first message


class _Events:
    def __init__(self, bus: EventBus, run: Run) -> None:
        self._bus = bus
        self._run = run
        self._seq = 0

    def emit(self, stream: Stream, **data: Any) -> None:
        self._seq += 1  # counted even when unheard: seq is the event's place in the run
        if self._bus.listens(self._run.run_id, stream):
            self._bus.publish(RunEvent(self._run.run_id, self._run.session_key, stream, data,
                                       self._seq))

    def stored(self, messages: Sequence[StoredMessage]) -> None:
        """Messages of this run just committed to the transcript (live transcript feeds)."""
        if messages:
            self._bus.publish(MessageEvent(self._run.session_key, tuple(messages),
                                           self._run.run_id))


class _Mute(_Events):
    """The events of a silent call (memory flush, summary): none."""

    def __init__(self) -> None:
        pass

    def emit(self, stream: Stream, **data: Any) -> None:
        return None


_MUTE = _Mute()


@dataclass(frozen=True, slots=True)
class _Prompt:
    """One built prompt: what the model is sent, and the compaction entry it starts from."""

    system: str
    messages: list[Message]
    session_id: str
    entry_id: int | None
    complete: bool  # False: more messages lie after the cut than HISTORY_LIMIT


class _Port:
    """What a compaction needs from the turn (or command) it runs for: silent model and tool
    calls whose usage and cost count for the turn."""

    def __init__(self, runner: TurnRunner, key: str, request: TurnRequest,
                 refs: Sequence[ModelRef], catalog: Catalog, progress: _Progress,
                 events: _Events | None, context: ToolContext) -> None:
        self._runner = runner
        self._key = key
        self._request = request
        self._refs = tuple(refs)
        model = runner.compactor.config.model
        self._summary_refs = (ModelRef.parse(model),) if model else self._refs
        self._catalog = catalog
        self._progress = progress
        self._events = events
        self._context = context

    async def model(self, system: str, messages: list[Message], tools: list[ToolSpec], *,
                    max_tokens: int | None, summary: bool) -> tuple[str, list[ToolCall], Finish]:
        base = replace(sampling_request("", ({"role": "system", "content": system}, *messages),
                                        tuple(tools), {}),
                       session_key=self._key, max_tokens=max_tokens,
                       thinking=None if summary else self._request.thinking)
        scratch = _Progress()
        refs = self._summary_refs if summary else self._refs
        calls, finish = await self._runner._call_model(refs, base, self._request, _MUTE,
                                                       scratch, self._catalog)
        self._progress.usage = self._progress.usage + finish.usage
        if scratch.cost is not None:
            cost = self._progress.cost
            self._progress.cost = scratch.cost if cost is None else cost + scratch.cost
        return scratch.text, calls, finish

    async def tool(self, call: ToolCall) -> str:
        registry = self._request.lease.generation.registry
        return await self._runner._tool(registry.tool(call.name), call, self._context,
                                        registry.hooks, _MUTE)

    def emit(self, **data: Any) -> None:
        if self._events is not None:
            self._events.emit("compaction", **data)


class TurnRunner:
    """Runs one turn per call; the lanes call it with each admitted run."""

    def __init__(self, store: SessionStore, bus: EventBus, config: EngineConfig,
                 metrics: Metrics, timeline: Timeline,
                 run_sync: Callable[..., Awaitable[Any]] | None = None) -> None:
        # Where synchronous plugin tools run (the plugin host's pool); threads by default.
        self._run_sync = run_sync or asyncio.to_thread
        self._timeline = timeline
        self._bootstrap = BootstrapCache()
        self._catalogs = CatalogCache()
        self._store = store
        self._bus = bus
        self._config = config
        self._metrics = metrics
        self.compactor = Compactor(store, bus, config.compaction, metrics,
                                   max_iterations=config.max_iterations,
                                   keep_messages=HISTORY_LIMIT // 2)

    async def __call__(self, run: Run) -> RunResult:
        request: TurnRequest = run.payload
        with self._timeline.span("agent.turn", phase="agent", sessionKey=run.session_key,
                                 agentId=request.agent.id):
            return await self._turn(run, request)

    async def _turn(self, run: Run, request: TurnRequest) -> RunResult:
        agent = request.agent
        hooks = request.lease.generation.registry.hooks
        events = _Events(self._bus, run)
        progress = _Progress()
        status: EndStatus = "ok"
        stop_reason = "stop"
        error: str | None = None
        started = run.started_at_perf = time.perf_counter()
        admission, commit_timer = request.admission, None
        if admission is not None:  # stored with the reply, unless the turn takes its time
            admission.on_stored = events.stored
            commit_timer = admission.arm()
        try:
            if request.begun is not None:
                history = list(request.begun)
            else:
                history = await self._store.begin_run(run.run_id, run.session_key,
                                                       run.messages, history=HISTORY_LIMIT + 1)
            if history and len(history) >= len(run.messages):  # they end with the run's input
                progress.first_seq = history[-len(run.messages)].seq
                # The run's input is the newest part of the history read in the same
                # transaction. A filtered turn (a heartbeat) shows nothing live: its prompt
                # names the token and its reply may be dropped. A deferred one is heard of
                # when it is stored.
                if request.reply is None and admission is None:
                    events.stored(history[-len(run.messages):])
            events.emit("lifecycle", phase="start", startedAt=int(time.time() * 1000))
            events.emit("run_status", phase="preparing_context")
            await hooks.call(Hook.MESSAGE_RECEIVED, session_key=run.session_key,
                             agent_id=agent.id, message=run.messages[-1], channel=request.channel)
            async with asyncio.timeout(self._config.turn_timeout_s):
                stop_reason = await self._loop(run, request, events, progress, history)
                if progress.text:
                    sent = await hooks.call(Hook.MESSAGE_SENDING, session_key=run.session_key,
                                            agent_id=agent.id, text=progress.text)
                    progress.text = str(sent.values["text"])
        except asyncio.CancelledError:
            status, stop_reason = "aborted", run.cancel_reason or "aborted"
        except TimeoutError:
            status, stop_reason = "timeout", "timeout"
            error = f"turn exceeded {self._config.turn_timeout_s} s"
        except (ClawgateError, ValueError) as exc:
            status, stop_reason, error = "error", "error", str(exc)
        except Exception as exc:  # a bug must end the run cleanly, not wedge the lane
            log.exception("turn %s failed", run.run_id)
            status, stop_reason, error = "error", "error", f"{type(exc).__name__}: {exc}"
        if commit_timer is not None:
            commit_timer.cancel()
        if request.reply is not None:  # decided once, on the final text, before anything sees it
            kept = request.reply.final(progress.text)
            progress.suppressed = kept is None and bool(progress.text.strip())
            progress.text = kept or ""
        result = RunResult(
            run.run_id, run.session_key, status, progress.text, stop_reason, error,
            _usage_counts(progress.usage), tuple(progress.tool_calls),
            suppressed=progress.suppressed,
        )
        # From here an abort changes nothing (the lanes no longer cancel the run): its end is
        # recorded whole, never half.
        run.ending = True
        return await self._finish(run, request, result, progress, events, started)

    async def cancelled(self, run: Run) -> RunResult:
        """Record a run that was aborted before it started (its message stays in the store)."""
        request: TurnRequest = run.payload
        result = RunResult(run.run_id, run.session_key, "aborted",
                           stop_reason=run.cancel_reason or "aborted")
        events = _Events(self._bus, run)
        try:
            if request.admission is not None:  # never stored: it is now, with its end
                events.stored(await request.admission.complete(
                    [], status="aborted", stop_reason=result.stop_reason))
                return result
            if request.begun is not None:  # started with its admission: its input is stored
                events.stored(request.begun[-len(run.messages):])
            else:
                events.stored(await self._store.begin_run(
                    run.run_id, run.session_key, run.messages, history=len(run.messages)))
            events.stored(await self._store.complete_run(
                run.run_id, run.session_key, [], status="aborted",
                stop_reason=result.stop_reason))
        finally:
            request.lease.release()
        return result

    # -- the loop --------------------------------------------------------------------------

    async def _loop(self, run: Run, request: TurnRequest, events: _Events,
                    progress: _Progress, history: Sequence[StoredMessage]) -> str:
        agent = request.agent
        registry = request.lease.generation.registry
        key = run.session_key
        refs = await self._refs(key, request)
        tools = list(registry.tools.values())
        specs = [t.spec() for t in tools] + list(request.client_tools)
        sid = history[-1].session_id if history else ""
        prompt = await self._prompt(key, request, tools, specs,
                                    View.of(sid, history, HISTORY_LIMIT))
        messages = prompt.messages
        client_names = {s.get("function", {}).get("name") for s in request.client_tools}
        context = ToolContext(key, agent.id, run.run_id, agent.workspace)
        catalog = self._catalogs.get(registry, [e.provider for e in registry.providers.values()])
        compacting = self.compactor.config.enabled
        port = _Port(self, key, request, refs, catalog, progress, events, context)
        budget = self._budget(refs, catalog)
        reported, reported_at = 0, 0  # the provider's count for the last call, and where
        proactive, overflowed = compacting, False  # one of each per turn at most
        iterations = 0
        while iterations < self._config.max_iterations:
            if proactive:
                estimate = max(prompt_tokens(prompt.system, messages, specs), reported + sum(
                    message_tokens(m) for m in messages[reported_at + 1:]) if reported else 0)
                if estimate >= budget.flush_at or not prompt.complete:
                    trigger: Trigger = "threshold" if prompt.complete else "messages"
                    await _admitted(request)
                    outcome = await self.compactor.run(
                        port, self._setup(key, request, prompt, specs, budget), trigger=trigger,
                        estimate=estimate, session_id=prompt.session_id,
                        entry_id=prompt.entry_id)
                    if outcome.compacted or outcome.changed:
                        proactive = False
                        prompt = await self._prompt(key, request, tools, specs,
                                                    await self._store.context(key, HISTORY_LIMIT))
                        messages, reported = prompt.messages, 0
                    elif estimate >= budget.compact_at or not prompt.complete:
                        proactive = False  # it could not compact: do not retry every call
            model_request = replace(sampling_request(
                "", ({"role": "system", "content": prompt.system}, *messages), tuple(specs),
                request.sampling), session_key=key, thinking=request.thinking)
            events.emit("run_status", phase="starting_model")
            try:
                calls, finish = await self._call_model(refs, model_request, request, events,
                                                       progress, catalog)
            except ProviderError as exc:
                if exc.kind != "context_length" or not compacting or progress.text:
                    raise
                if overflowed:
                    raise ProviderError(
                        f"{exc} (still too long after compacting the session: the newest "
                        "turn alone does not fit; send a shorter message or /new)",
                        provider=exc.provider, kind=exc.kind, status=exc.status) from exc
                overflowed = True
                await _admitted(request)
                outcome = await self.compactor.run(
                    port, self._setup(key, request, prompt, specs, budget), trigger="overflow")
                if not outcome.compacted:
                    raise ProviderError(
                        f"{exc} (compaction could not make room: {outcome.reason})",
                        provider=exc.provider, kind=exc.kind, status=exc.status) from exc
                prompt = await self._prompt(key, request, tools, specs,
                                            await self._store.context(key, HISTORY_LIMIT))
                messages, reported = prompt.messages, 0
                continue
            iterations += 1
            progress.usage = progress.usage + finish.usage
            if finish.usage.output > 0:  # OpenClaw's usage stream: the run's output so far
                events.emit("usage", outputTokens=progress.usage.output)
            reported, reported_at = finish.usage.input + finish.usage.output, len(messages)
            if not calls:
                steered = run.take_injected()
                if not steered:
                    progress.extra = dict(finish.extra)
                    return finish.reason or "stop"
                await _admitted(request)
                # Steer at a model boundary: keep this reply, then answer the new message(s).
                progress.steered = True
                reply = {"role": "assistant", "content": _seen(request, progress.text) or "",
                         **finish.extra}
                progress.text = ""
                events.stored(await self._store.append(key, [
                    {**reply, "stop_reason": finish.reason or "stop"}, *steered]))
                messages.extend([reply, *steered])
                continue
            # Finish.extra (e.g. signed thinking blocks) stays with the message that produced
            # it: the next model call of the loop must see it.
            assistant = {"role": "assistant", "content": _seen(request, progress.text) or None,
                         "tool_calls": [_wire(c) for c in calls], **finish.extra}
            progress.text = ""
            messages.append(assistant)
            await _admitted(request)  # tools may read the session; their results are stored
            if any(c.name in client_names for c in calls):
                # The client executes its own tools: hand the calls back and end the turn.
                progress.tool_calls = [_wire(c) for c in calls]
                events.stored(await self._store.append(key, [assistant]))
                return "tool_calls"
            results = []
            for call in calls:
                content = await self._tool(registry.tool(call.name), call, context,
                                           registry.hooks, events)
                results.append({"role": "tool", "tool_call_id": call.id, "name": call.name,
                                "content": content})
            injected = run.take_injected()  # steer: new user messages join at this boundary
            progress.steered = progress.steered or bool(injected)
            events.stored(await self._store.append(key, [assistant, *results, *injected]))
            messages.extend([*results, *injected])
        return "max_iterations"

    async def _refs(self, key: str, request: TurnRequest) -> tuple[ModelRef, ...]:
        """The session's model refs: its override first, then the agent's models, after the
        ``before_model_resolve`` hook."""
        agent = request.agent
        refs = (request.model, *agent.models) if request.model else agent.models
        resolved = await request.lease.generation.registry.hooks.call(
            Hook.BEFORE_MODEL_RESOLVE, session_key=key, agent_id=agent.id, model=str(refs[0]))
        if str(resolved.values["model"]) != str(refs[0]):
            refs = (ModelRef.parse(str(resolved.values["model"])), *refs)
        return tuple(refs)

    async def _prompt(self, key: str, request: TurnRequest, tools: Sequence[Tool],
                      specs: Sequence[ToolSpec], view: View) -> _Prompt:
        """The system prompt and messages of a model call built from ``view`` (the summary of
        the latest compaction, then the messages after its cut), after the prompt hooks."""
        agent = request.agent
        registry = request.lease.generation.registry
        files = await self._bootstrap.files(agent.workspace, main_session=request.main_session)
        system = system_prompt(agent, files, tools, now=datetime.now().astimezone(),
                               extra=request.extra_system_prompt)
        messages = Compactor.messages(view, recall="memory_search" in registry.tools)
        built = await registry.hooks.call(Hook.BEFORE_PROMPT_BUILD, session_key=key,
                                          agent_id=agent.id, system_prompt=system,
                                          messages=messages, tools=list(specs))
        return _Prompt(str(built.values["system_prompt"]), list(built.values["messages"]),
                       view.session_id, view.entry.id if view.entry is not None else None,
                       view.complete)

    def _budget(self, refs: Sequence[ModelRef], catalog: Catalog) -> Budget:
        """The token budget of the session's primary model (its catalogue window, else
        ``engine.compaction.default_context_window``)."""
        config = self.compactor.config
        ref = refs[0]
        provider, model = catalog.resolve(ref.provider, ref.model) or (ref.provider, ref.model)
        info = catalog.get(provider, model)
        window = info.context_window if info and info.context_window else \
            config.default_context_window
        return Budget.of(window, config)

    def _setup(self, key: str, request: TurnRequest, prompt: _Prompt,
               specs: Sequence[ToolSpec], budget: Budget) -> Setup:
        registry = request.lease.generation.registry
        return Setup(key, request.agent, prompt.system, tuple(specs),
                     tuple(t.spec() for t in registry.tools.values()), budget,
                     _memory_plugin(registry), "memory_search" in registry.tools)

    async def compact(self, key: str, request: TurnRequest, *, trigger: Trigger = "manual",
                      instructions: str | None = None, max_lines: int | None = None
                      ) -> Outcome:
        """Compact ``key`` outside a turn (``/compact``, ``sessions.compact``), the memory
        flush first; the caller holds ``request.lease`` and makes sure no run is active."""
        registry = request.lease.generation.registry
        refs = await self._refs(key, request)
        tools = list(registry.tools.values())
        specs = [t.spec() for t in tools]
        prompt = await self._prompt(key, request, tools, specs,
                                    await self._store.context(key, HISTORY_LIMIT))
        catalog = self._catalogs.get(registry, [e.provider for e in registry.providers.values()])
        budget = self._budget(refs, catalog)
        context = ToolContext(key, request.agent.id, f"compact-{time.time_ns()}",
                              request.agent.workspace)
        port = _Port(self, key, request, refs, catalog, _Progress(), None, context)
        return await self.compactor.run(port, self._setup(key, request, prompt, specs, budget),
                                        trigger=trigger, instructions=instructions,
                                        max_lines=max_lines)

    async def _call_model(self, refs: Sequence[ModelRef], base: ModelRequest,
                          request: TurnRequest, events: _Events,
                          progress: _Progress, catalog: Catalog) -> tuple[list[ToolCall], Finish]:
        snapshot = request.lease.generation.snapshot
        registry = request.lease.generation.registry
        failure: ProviderError | None = None
        for ref in refs:
            # Aliases (``opus``, ``anthropic/opus``) and bare ids resolve through the catalogue.
            provider_id, model_id = catalog.resolve(ref.provider, ref.model) or (
                ref.provider, ref.model)
            provider = registry.provider(provider_id) if provider_id else None
            if provider is None:
                failure = ProviderError(
                    f"no loaded plugin provides {provider_id!r}" if provider_id else
                    f"unknown model {ref.model!r}: no provider's catalogue has it or an alias",
                    provider=provider_id)
                progress.fallbacks.append(_attempt(str(ref), failure))
                continue
            model = snapshot.normalize_model(provider_id, model_id) or model_id
            if progress.announced != f"{provider_id}/{model}":  # OpenClaw's "model" phase
                progress.announced = f"{provider_id}/{model}"
                events.emit("lifecycle", phase="model", provider=provider_id, model=model)
            calls: list[ToolCall] = []
            finish = Finish()
            emitted = False
            try:
                async for event in provider.stream(replace(base, model=model)):
                    if isinstance(event, TextDelta):
                        if not event.text:
                            continue
                        emitted = True
                        if progress.first_delta_at is None:
                            progress.first_delta_at = time.perf_counter()
                        progress.text += event.text
                        # Only the new piece: a cumulative copy per event would make every
                        # mailbox hold O(reply²) bytes. The end event carries the full text.
                        if request.reply is None:
                            events.emit("assistant", delta=event.text)
                        else:
                            _preview(request.reply, progress, events, event.text)
                    elif isinstance(event, ToolCall):
                        calls.append(event)
                    elif isinstance(event, Finish):
                        finish = event
            except ProviderError as exc:
                if emitted or not exc.failover:
                    raise
                log.warning("model %s failed (%s); trying the next fallback", ref, exc)
                self._metrics.inc("provider_failovers_total")
                progress.fallbacks.append(_attempt(f"{provider_id}/{model}", exc))
                failure = exc
                continue
            progress.provider, progress.model = provider_id, model
            cost = catalog.cost(provider_id, model, finish.usage)
            if cost is not None:
                progress.cost = cost if progress.cost is None else progress.cost + cost
            return calls, finish
        assert failure is not None
        raise failure

    async def _tool(self, tool: Tool | None, call: ToolCall, context: ToolContext,
                    hooks: HookCaller, events: _Events) -> str:
        events.emit("tool", phase="start", name=call.name, toolCallId=call.id,
                    args=call.arguments)
        arguments: dict[str, Any] = {}
        is_error = True
        try:
            if tool is None:
                raise InvalidRequest(f"unknown tool {call.name!r}")
            parsed = orjson.loads(call.arguments or "{}")
            if not isinstance(parsed, dict):
                raise InvalidRequest("tool arguments must be a JSON object")
            arguments = parsed
            gate = await hooks.call(Hook.BEFORE_TOOL_CALL, session_key=context.session_key,
                                    agent_id=context.agent_id, tool=call.name,
                                    arguments=arguments)
            if gate.blocked:
                raise HookError(f"blocked: {gate.reason}", hook=Hook.BEFORE_TOOL_CALL,
                                plugin_id=gate.blocked_by)
            args = (arguments, context) if tool.wants_context else (arguments,)
            if inspect.iscoroutinefunction(tool.handler):
                output = await tool.handler(*args)
            else:
                output = await self._run_sync(tool.handler, *args)
                if inspect.isawaitable(output):
                    output = await output
            content = output if isinstance(output, str) else orjson.dumps(output).decode()
            is_error = False
        except asyncio.CancelledError:
            raise
        except orjson.JSONDecodeError as exc:
            content = f"error: tool arguments are not valid JSON: {exc}"
        except ToolError as exc:  # the tool's own words for the model
            content = f"error: {exc}"
        except Exception as exc:  # the model sees the failure and can recover
            content = f"error: {type(exc).__name__}: {exc}"
        events.emit("tool", phase="result", name=call.name, toolCallId=call.id,
                    result=content, isError=is_error)
        await hooks.call(Hook.AFTER_TOOL_CALL, session_key=context.session_key,
                         agent_id=context.agent_id, tool=call.name, arguments=arguments,
                         result=content, is_error=is_error)
        return content

    # -- the end ---------------------------------------------------------------------------

    async def _finish(self, run: Run, request: TurnRequest, result: RunResult,
                      progress: _Progress, events: _Events, started: float) -> RunResult:
        """Store the run's end, announce it; returns the result (an error when a run stored
        with its reply could not be stored: then nothing of it is, and no reply may go)."""
        hooks = request.lease.generation.registry.hooks
        text = result.text
        run.status = result.status  # no more steering: a later message queues as its own run
        try:
            # A tool_calls stop already stored its assistant message; otherwise store the
            # reply (possibly partial, with the stop reason saying why it ended).
            final: list[dict[str, Any]] = []
            usage = _usage_record(progress.usage, progress.cost)
            late = run.take_injected()
            # A dropped reply (an acknowledged heartbeat) leaves no trace: the run's messages
            # are archived instead — unless other messages joined the run.
            archive = progress.suppressed and progress.first_seq is not None and not (
                late or progress.steered or run.merged_ids)
            if result.stop_reason != "tool_calls" and not archive:
                final.append({"role": "assistant", "content": text, **progress.extra,
                              "usage": usage, "stop_reason": result.stop_reason})
            # Steered messages that came after the last boundary were acknowledged: keep them.
            final.extend(late)
            end: dict[str, Any] = dict(
                status=result.status, stop_reason=result.stop_reason, error=result.error,
                usage=usage, model=progress.model, provider=progress.provider,
                merged=run.merged_ids, cost=None if progress.cost is None else progress.cost.total,
                fallbacks=progress.fallbacks or None,
                archive_from=progress.first_seq if archive else None)
            if request.admission is not None:
                events.stored(await request.admission.complete(final, **end))
            else:
                events.stored(await self._store.complete_run(run.run_id, run.session_key, final,
                                                             **end))
        except Exception as exc:
            log.error("could not record the end of run %s: %s", run.run_id, exc)
            if request.admission is not None and not request.admission.stored:
                text = ""  # its message was never stored: the surface answers with the error
                result = replace(result, status="error", text="", stop_reason="error",
                                 error=f"the turn could not be stored: {exc}")
        finally:
            phase = "end" if result.status in ("ok", "aborted", "timeout") else "error"
            ended: dict[str, Any] = {"deliver": True} if request.delivers else {}
            if progress.fallbacks:
                ended["fallbacks"] = progress.fallbacks
            events.emit("lifecycle", phase=phase, status=result.status, text=text,
                        stopReason=result.stop_reason, error=result.error,
                        usage=_usage_record(progress.usage, progress.cost),
                        toolCalls=list(result.tool_calls), endedAt=int(time.time() * 1000),
                        **ended)
            self._metrics.inc("agent_turns_total", status=result.status)
            self._metrics.observe("agent_turn_seconds", time.perf_counter() - started)
            self._latency(run, request, progress, result)
            await hooks.call(Hook.AGENT_END, session_key=run.session_key,
                             agent_id=request.agent.id, run_id=run.run_id,
                             status=result.status, text=text, usage=result.usage)
            request.lease.release()
        return result


    def _latency(self, run: Run, request: TurnRequest, progress: _Progress,
                 result: RunResult) -> None:
        """One structured record per turn (reference §8.1's latency trace)."""
        now = time.perf_counter()
        admitted = request.admitted_at
        started = run.started_at_perf or admitted
        record = {
            "turnId": run.run_id, "runId": run.run_id, "sessionKey": run.session_key,
            "status": result.status,
            "totalMs": _ms(now - admitted),
            "entryMs": _ms(started - admitted),
            "dispatchMs": _ms(now - started),
            "firstDeliverMs": _ms(progress.first_delta_at - admitted)
            if progress.first_delta_at else None,
            "rss": self._metrics.rss(),
        }
        log.info("turn %s", orjson.dumps(record).decode())
        self._timeline.event("turn.latency", "agent.turn.latency", attributes=record)


async def _admitted(request: TurnRequest) -> None:
    """Store a deferred admission before the run needs its message in the store."""
    if request.admission is not None:
        await request.admission.commit()


def _memory_plugin(registry: Registry) -> str | None:
    """The id of the loaded plugin that fills the memory slot, if any."""
    for record in registry.records.values():
        kinds = record.manifest.get("kind") or ()
        if record.status == "loaded" and "memory" in (kinds if isinstance(kinds, list | tuple)
                                                      else (kinds,)):
            return record.id
    return None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _preview(reply: ReplyFilter, progress: _Progress, events: _Events, piece: str) -> None:
    """Publish what the filter lets the stream show, as the delta past what was shown."""
    progress.streamed += piece
    shown = reply.preview(progress.streamed)
    if len(shown) > len(progress.shown) and shown.startswith(progress.shown):
        events.emit("assistant", delta=shown[len(progress.shown):])
        progress.shown = shown


def _seen(request: TurnRequest, text: str) -> str | None:
    """Text of an intermediate assistant message as it may be stored (a filtered turn's
    through its final filter)."""
    return text if request.reply is None or not text else request.reply.final(text)


def _wire(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}


def _usage_counts(u: Usage) -> dict[str, int]:
    return {"input": u.input, "output": u.output, "total": u.total,
            "cache_read": u.cache_read, "cache_write": u.cache_write}


def _usage_record(u: Usage, cost: Cost | None) -> dict[str, Any]:
    """The usage stored on the run and its final message: counts, and the cost when the
    models used have prices."""
    record: dict[str, Any] = dict(_usage_counts(u))
    if cost is not None:
        record["cost"] = cost.as_dict()
    return record


def _attempt(model: str, error: ProviderError) -> dict[str, Any]:
    """One failed model attempt as recorded on the run (why the turn fell back)."""
    return {"model": model, "kind": error.kind, "status": error.status,
            "error": str(error)[:300]}
