"""Hook specifications and the one generic caller that runs every hook.

A spec names a hook's arguments, how results combine (its mode), its default timeout and what a
failing handler means:

- ``observe``: handlers run concurrently; return values are ignored.
- ``modify``: handlers run in priority order; each may return a dict of new values for the
  spec's ``fields``, which the next handler sees; the merged values are the result.
- ``claim``: handlers run in order; the first result with a true ``handled`` wins.
- ``gate``: handlers run in order; the first result with a true ``block`` stops the chain.

``fail="open"`` skips a handler that raises or times out (and records it); ``fail="closed"``
turns it into a block (for gates) or an error. Handlers are checked against the spec when they
are registered, so a typo in a hook name or parameter fails at start-up, naming the plugin.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal

from clawgate.errors import HookError, RegistrationError

Mode = Literal["observe", "modify", "claim", "gate"]
log = logging.getLogger("clawgate.hooks")


@dataclass(frozen=True, slots=True)
class HookSpec:
    name: str
    params: tuple[str, ...]
    mode: Mode
    timeout_s: float | None
    fail: Literal["open", "closed"] = "open"
    fields: tuple[str, ...] = ()  # what a modify hook may change
    doc: str = ""


class Hook(StrEnum):
    """Every hook's name: the engine calls ``hooks.call(Hook.AGENT_END, ...)``, never a bare
    string, so a misspelt hook is an AttributeError at import, not a silent no-op."""

    GATEWAY_START = "gateway_start"
    GATEWAY_STOP = "gateway_stop"
    MESSAGE_RECEIVED = "message_received"
    INBOUND_CLAIM = "inbound_claim"
    BEFORE_MODEL_RESOLVE = "before_model_resolve"
    BEFORE_PROMPT_BUILD = "before_prompt_build"
    BEFORE_TOOL_CALL = "before_tool_call"
    AFTER_TOOL_CALL = "after_tool_call"
    MESSAGE_SENDING = "message_sending"
    AGENT_END = "agent_end"
    SESSION_START = "session_start"
    SESSION_END = "session_end"


SPECS: Mapping[str, HookSpec] = MappingProxyType({
    s.name: s
    for s in (
        HookSpec("gateway_start", ("gateway",), "observe", 30, doc="The gateway is serving."),
        HookSpec("gateway_stop", ("gateway", "reason"), "observe", 5,
                 doc="The gateway is shutting down."),
        HookSpec("message_received", ("session_key", "agent_id", "message", "channel"),
                 "observe", 30, doc="An inbound message was accepted and stored."),
        HookSpec("inbound_claim", ("session_key", "message", "channel"), "claim", 15,
                 doc="A plugin may take an inbound message instead of the agent; a claim "
                     "{handled: true, reply?: str} answers it without a model run."),
        HookSpec("before_model_resolve", ("session_key", "agent_id", "model"), "modify", 15,
                 fields=("model",), doc="Change the model ref of a turn."),
        HookSpec("before_prompt_build",
                 ("session_key", "agent_id", "system_prompt", "messages", "tools"), "modify",
                 15, fields=("system_prompt", "messages"),
                 doc="Change the system prompt or the messages sent to the model."),
        HookSpec("before_tool_call", ("session_key", "agent_id", "tool", "arguments"), "gate",
                 15, fail="closed", doc="Allow or block a tool call; a failing handler blocks."),
        HookSpec("after_tool_call",
                 ("session_key", "agent_id", "tool", "arguments", "result", "is_error"),
                 "observe", 30, doc="A tool call finished."),
        HookSpec("message_sending", ("session_key", "agent_id", "text"), "modify", 15,
                 fields=("text",), doc="Change a final reply before it is stored and sent."),
        HookSpec("agent_end",
                 ("session_key", "agent_id", "run_id", "status", "text", "usage"), "observe",
                 30, doc="A turn ended (ok, error, aborted or timeout)."),
        HookSpec("session_start", ("session_key", "agent_id"), "observe", 30,
                 doc="A session was created (its first message was admitted)."),
        HookSpec("session_end", ("session_key", "agent_id", "reason"), "observe", 30,
                 doc="A session was reset or deleted."),
    )
})


@dataclass(frozen=True, slots=True)
class HookHandler:
    """One registered handler, with the parameters it asked for."""

    plugin_id: str
    hook: str
    fn: Callable[..., Any]
    priority: int
    timeout_s: float | None
    order: int
    wants: tuple[str, ...] = field(default=())
    takes_all: bool = False

    def kwargs(self, values: Mapping[str, Any]) -> dict[str, Any]:
        if self.takes_all:
            return dict(values)
        return {name: values[name] for name in self.wants}


def make_handler(
    plugin_id: str,
    hook: str,
    fn: Callable[..., Any],
    *,
    priority: int,
    timeout_s: float | None,
    order: int,
) -> HookHandler:
    """Check ``fn`` against the spec of ``hook``; raise RegistrationError naming the plugin."""
    spec = SPECS.get(hook)
    if spec is None:
        raise RegistrationError(
            f"plugin {plugin_id!r}: unknown hook {hook!r}; known hooks: {', '.join(sorted(SPECS))}",
            plugin_id=plugin_id,
        )
    if not callable(fn):
        raise RegistrationError(
            f"plugin {plugin_id!r}: handler for {hook!r} is not callable", plugin_id=plugin_id
        )
    wants: list[str] = []
    takes_all = False
    for param in inspect.signature(fn).parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            takes_all = True
        elif param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            raise RegistrationError(
                f"plugin {plugin_id!r}: handler for {hook!r} must take keyword parameters "
                f"named after the hook's arguments {spec.params}",
                plugin_id=plugin_id,
            )
        elif param.name in spec.params:
            wants.append(param.name)
        elif param.default is inspect.Parameter.empty:
            raise RegistrationError(
                f"plugin {plugin_id!r}: handler for {hook!r} asks for {param.name!r}, "
                f"which the hook does not provide; it provides {spec.params}",
                plugin_id=plugin_id,
            )
    if timeout_s is not None and not 0 < timeout_s <= 600:
        raise RegistrationError(
            f"plugin {plugin_id!r}: timeout for {hook!r} must be in (0, 600] seconds",
            plugin_id=plugin_id,
        )
    return HookHandler(
        plugin_id, hook, fn, priority, timeout_s if timeout_s is not None else spec.timeout_s,
        order, tuple(wants), takes_all,
    )


@dataclass(frozen=True, slots=True)
class HookFailure:
    plugin_id: str
    hook: str
    error: str


@dataclass(frozen=True, slots=True)
class HookResult:
    """What a hook call produced: merged values, a claim or block, and contained failures."""

    values: Mapping[str, Any] = field(default_factory=dict)
    claimed_by: str | None = None
    claim: Any = None
    blocked_by: str | None = None
    reason: str | None = None
    failures: tuple[HookFailure, ...] = ()

    @property
    def blocked(self) -> bool:
        return self.blocked_by is not None


class HookCaller:
    """Runs hooks over one registry's handlers (sorted once, by priority then order)."""

    def __init__(self, handlers: Sequence[HookHandler],
                 specs: Mapping[str, HookSpec] = SPECS) -> None:
        self._specs = specs
        by_hook: dict[str, list[HookHandler]] = {}
        for h in handlers:
            by_hook.setdefault(h.hook, []).append(h)
        self._handlers = {
            name: tuple(sorted(hs, key=lambda h: (-h.priority, h.order)))
            for name, hs in by_hook.items()
        }
        self.failures_total = 0

    def has(self, hook: str) -> bool:
        return hook in self._handlers

    def handlers(self, hook: str) -> tuple[HookHandler, ...]:
        return self._handlers.get(hook, ())

    def all(self) -> tuple[HookHandler, ...]:
        """Every registered handler, hook by hook."""
        return tuple(h for hs in self._handlers.values() for h in hs)

    async def call(self, hook: Hook, **values: Any) -> HookResult:
        """Run every handler of ``hook`` as its spec says (at once when it has none)."""
        spec = self._specs[hook]
        missing = set(spec.params) - set(values)
        if missing:
            raise TypeError(f"hook {hook!r} called without {sorted(missing)}")
        handlers = self._handlers.get(hook, ())
        if not handlers:
            return HookResult(values={f: values[f] for f in spec.fields})
        if spec.mode == "observe":
            return await self._observe(spec, handlers, values)
        return await self._sequential(spec, handlers, dict(values))

    async def _observe(
        self, spec: HookSpec, handlers: Sequence[HookHandler], values: Mapping[str, Any]
    ) -> HookResult:
        outcomes = await asyncio.gather(*(self._run(h, values) for h in handlers))
        failures = tuple(f for _, f in outcomes if f is not None)
        return HookResult(failures=failures)

    async def _sequential(
        self, spec: HookSpec, handlers: Sequence[HookHandler], values: dict[str, Any]
    ) -> HookResult:
        failures: list[HookFailure] = []
        for handler in handlers:
            result, failure = await self._run(handler, values)
            if failure is not None:
                failures.append(failure)
                if spec.fail == "closed":
                    if spec.mode == "gate":
                        return HookResult(blocked_by=handler.plugin_id, reason=failure.error,
                                          failures=tuple(failures))
                    raise HookError(failure.error, hook=spec.name, plugin_id=handler.plugin_id)
                continue
            if result is None:
                continue
            if spec.mode == "modify":
                self._merge(spec, handler, result, values, failures)
            elif spec.mode == "claim" and _get(result, "handled"):
                return HookResult(claimed_by=handler.plugin_id, claim=result,
                                  failures=tuple(failures))
            elif spec.mode == "gate" and _get(result, "block"):
                reason = _get(result, "reason") or f"blocked by plugin {handler.plugin_id!r}"
                return HookResult(blocked_by=handler.plugin_id, reason=str(reason),
                                  failures=tuple(failures))
        return HookResult(values={f: values[f] for f in spec.fields}, failures=tuple(failures))

    def _merge(
        self,
        spec: HookSpec,
        handler: HookHandler,
        result: Any,
        values: dict[str, Any],
        failures: list[HookFailure],
    ) -> None:
        if not isinstance(result, Mapping):
            failures.append(self._fail(handler, f"returned {type(result).__name__}, not a dict"))
            return
        unknown = set(result) - set(spec.fields)
        if unknown:
            failures.append(self._fail(handler, f"cannot change {sorted(unknown)}"))
        values.update({k: v for k, v in result.items() if k in spec.fields})

    async def _run(
        self, handler: HookHandler, values: Mapping[str, Any]
    ) -> tuple[Any, HookFailure | None]:
        try:
            outcome = handler.fn(**handler.kwargs(values))
            if inspect.isawaitable(outcome):
                # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a
                # cancellation (an abort) that arrives as the handler finishes.
                async with asyncio.timeout(handler.timeout_s):
                    outcome = await outcome
            return outcome, None
        except TimeoutError:
            return None, self._fail(handler, f"timed out after {handler.timeout_s} s")
        except Exception as exc:  # a plugin's bug must not break the turn
            return None, self._fail(handler, f"{type(exc).__name__}: {exc}")

    def _fail(self, handler: HookHandler, error: str) -> HookFailure:
        self.failures_total += 1
        message = f"hook {handler.hook} of plugin {handler.plugin_id!r} failed: {error}"
        log.warning(message)
        return HookFailure(handler.plugin_id, handler.hook, message)


def _get(result: Any, name: str) -> Any:
    if isinstance(result, Mapping):
        return result.get(name)
    return getattr(result, name, None)
