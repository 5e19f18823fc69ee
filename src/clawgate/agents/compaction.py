"""Session compaction, with the memory flush first.

When a session's prompt outgrows its model's window (:mod:`clawgate.agents.budget`), the older
turns are summarised by a model call into a compaction entry (:mod:`clawgate.sessions.compaction`)
and the next prompts are the summary plus the newest turns. Nothing is deleted.

Before any compaction — the proactive one at the threshold, the reactive one after a
context-length error, a ``/compact`` or ``sessions.compact`` — the agent gets a silent turn
asking it to write what matters to its memory files (the *memory flush*). It runs early: from
a soft threshold below the compaction threshold, so it fits in the window; on the reactive
path, where the whole context no longer fits, it is sent the newest part that does (the rest
is in the summary). It runs once per compaction cycle, recorded in the transcript, and is
skipped (and says why) when no memory plugin is loaded or the workspace is read-only.

A failing flush or summary call changes nothing in the transcript, leaves the session usable
and says why: a ``compaction`` run event, a log line and the result of the call that asked.
The turn runner supplies the model and tool calls through a :class:`Port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from clawgate.agents import summary as texts
from clawgate.agents.budget import Budget, cut, prompt_tokens, tail, tokens
from clawgate.agents.bus import EventBus, SessionEvent
from clawgate.agents.roster import Agent
from clawgate.config import CompactionConfig
from clawgate.diagnostics.metrics import Metrics
from clawgate.errors import ClawgateError
from clawgate.providers.base import Finish, Message, ToolCall, ToolSpec
from clawgate.sessions.compaction import COMPACTION, MEMORY_FLUSH, SILENT, View, entry_of
from clawgate.sessions.store import SessionStore

log = logging.getLogger("clawgate.compaction")
Trigger = Literal["threshold", "overflow", "manual", "messages"]
FlushStatus = Literal["ok", "failed", "skipped"]
READ_LIMIT = 5_000  # messages after the last cut a compaction reads (older ones: noted)
FLUSHED_CACHE = 4_096
ALREADY_FLUSHED = "the memory flush of this compaction cycle already ran"


class Port(Protocol):
    """The model and tool calls of the turn (or command) a compaction runs for."""

    async def model(self, system: str, messages: list[Message], tools: list[ToolSpec], *,
                    max_tokens: int | None, summary: bool) -> tuple[str, list[ToolCall], Finish]:
        """One silent model call (no events); ``summary`` selects the summariser model."""
        ...

    async def tool(self, call: ToolCall) -> str:
        """Run one tool call silently (hooks apply); its result text."""
        ...

    def emit(self, **data: Any) -> None:
        """Publish a ``compaction`` run event (a no-op outside a run)."""
        ...


@dataclass(frozen=True, slots=True)
class Setup:
    """What a compaction knows of the session's prompt."""

    key: str
    agent: Agent
    system: str  # the system prompt the turn sends
    specs: tuple[ToolSpec, ...]  # the tool definitions it sends
    flush_specs: tuple[ToolSpec, ...]  # the tools the flush turn may use (no client tools)
    budget: Budget
    memory: str | None  # the loaded memory plugin's id
    recall: bool  # memory_search is a tool: the summary note points at it


@dataclass(frozen=True, slots=True)
class Flush:
    """How a memory flush went."""

    status: FlushStatus
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a compaction request went. ``failed`` marks a real failure (a summary call that
    did not work), as opposed to nothing to do."""

    compacted: bool
    reason: str | None = None
    failed: bool = False
    summary: str = ""
    tokens_before: int = 0
    tokens_after: int | None = None
    first_kept_id: int | None = None
    kept: int = 0
    flush: Flush | None = None
    changed: bool = False  # another compaction happened meanwhile: rebuild the prompt

    def wire(self) -> dict[str, Any]:
        """``sessions.compact``'s ``{ok, compacted, reason?, result?, kept?}`` (OpenClaw)."""
        out: dict[str, Any] = {"ok": not self.failed, "compacted": self.compacted}
        if self.reason:
            out["reason"] = self.reason
        if self.compacted:
            out["result"] = {"summary": self.summary,
                             "firstKeptEntryId": f"{self.first_kept_id or 0:08x}",
                             "tokensBefore": self.tokens_before,
                             "tokensAfter": self.tokens_after}
            out["kept"] = self.kept
        if self.flush is not None:
            out["memoryFlush"] = {"status": self.flush.status,
                                  **({"reason": self.flush.reason} if self.flush.reason else {})}
        return out


@dataclass(slots=True)
class _Lock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class Compactor:
    """Flushes and compactions of every session, one at a time per session."""

    def __init__(self, store: SessionStore, bus: EventBus, config: CompactionConfig,
                 metrics: Metrics, *, max_iterations: int, keep_messages: int) -> None:
        """``max_iterations`` bounds the flush turn's model calls; ``keep_messages`` the
        messages a compaction keeps verbatim (besides ``keep_recent_tokens``)."""
        self.config = config
        self._keep_messages = keep_messages
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self._max_iterations = max_iterations
        self._locks: dict[str, _Lock] = {}  # only sessions being compacted: bounded by them
        # (key, transcript, compaction entry id) whose cycle's flush is known to have run, so a
        # turn between the two thresholds does not read the store again; the newest kept.
        self._flushed: OrderedDict[tuple[str, str | None, int | None], None] = OrderedDict()

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Hold the session's compaction lock (a turn's check and a command's compaction
        never interleave)."""
        held = self._locks.setdefault(key, _Lock())
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                self._locks.pop(key, None)

    async def run(self, port: Port, setup: Setup, *, trigger: Trigger, estimate: int = 0,
                  session_id: str | None = None, entry_id: int | None = None,
                  instructions: str | None = None, max_lines: int | None = None) -> Outcome:
        """Flush if due, then compact if due (always for ``overflow`` and ``manual``).

        ``estimate`` is the caller's token estimate of the prompt; ``session_id`` and
        ``entry_id`` name the transcript and the compaction entry that prompt was built from
        (a different entry now: another compaction happened meanwhile, and the caller
        rebuilds instead).
        """
        budget = setup.budget
        if trigger == "threshold" and estimate < budget.compact_at and (
                not self.config.memory_flush.enabled or setup.memory is None
                or (setup.key, session_id, entry_id) in self._flushed):
            return Outcome(False)  # only a flush is due, and it will not run: no reads
        async with self.lock(setup.key):
            view = await self._store.context(setup.key, READ_LIMIT)
            if trigger in ("threshold", "messages") and (
                    view.entry.id if view.entry else None) != entry_id:
                return Outcome(False, "compacted meanwhile", changed=True)
            estimate = max(estimate, self.estimate(setup, view))
            compact = trigger in ("overflow", "manual", "messages") or \
                estimate >= budget.compact_at
            if compact:
                nothing = self._nothing(view, setup, max_lines)
                if nothing is not None:  # no flush either: no compaction follows it
                    return Outcome(False, nothing, tokens_before=estimate)
            flush: Flush | None = None
            if compact or estimate >= budget.flush_at:
                flush = await self._flush(port, setup, view, announce=compact)
            if not compact:
                return Outcome(False, flush=flush)
            # The flush's messages are silent: the view's cut and summary input are unchanged.
            outcome = await self._compact(port, setup, view, trigger, estimate,
                                          instructions=instructions, max_lines=max_lines)
            return _with_flush(outcome, flush)

    def estimate(self, setup: Setup, view: View) -> int:
        """The prompt estimate of ``view`` under ``setup``'s system prompt and tools."""
        return prompt_tokens(setup.system, self.messages(view, recall=setup.recall),
                             setup.specs)

    @staticmethod
    def messages(view: View, *, recall: bool) -> list[Message]:
        """The chat messages a prompt built from ``view`` shows: the summary, then the kept
        messages (no silent message, no compaction entry)."""
        out = [m.to_message() for m in view.messages]
        record = entry_of(view.entry) if view.entry is not None else None
        if record is not None:
            out.insert(0, texts.summary_message(view.summary or "", record, recall=recall))
        return out

    # -- the memory flush ---------------------------------------------------------------------

    def _remember(self, setup: Setup, view: View) -> None:
        entry = view.entry.id if view.entry is not None else None
        self._flushed[(setup.key, view.session_id, entry)] = None
        while len(self._flushed) > FLUSHED_CACHE:
            self._flushed.popitem(last=False)

    async def _flush(self, port: Port, setup: Setup, view: View, *, announce: bool) -> Flush:
        skip = await self._skip_flush(setup, view)
        if skip == ALREADY_FLUSHED:
            self._remember(setup, view)
        if skip is not None:
            if announce:  # compaction follows without a flush: say why
                port.emit(phase="flush", status="skipped", reason=skip)
                log.info("session %s: memory flush skipped: %s", setup.key, skip)
            return Flush("skipped", skip)
        port.emit(phase="flush", status="start")
        prompt, extra = texts.flush_texts(self.config.memory_flush, datetime.now().astimezone())
        system = f"{setup.system}\n\n{extra}"
        room = setup.budget.compact_at - tokens(system) - tokens(prompt) - \
            prompt_tokens("", [], setup.flush_specs)
        history = tail(self.messages(view, recall=setup.recall), max(room, 0))
        marker = {SILENT: MEMORY_FLUSH}
        try:
            # Stored first: the record that this cycle's flush ran, even if the call fails.
            await self._store.append(setup.key, [{"role": "user", "content": prompt, **marker}])
            self._remember(setup, view)
            convo: list[Message] = [*history, {"role": "user", "content": prompt}]
            for _ in range(self._max_iterations):
                text, calls, finish = await port.model(system, convo, list(setup.flush_specs),
                                                       max_tokens=None, summary=False)
                if not calls:
                    await self._store.append(setup.key, [{
                        "role": "assistant", "content": text, **dict(finish.extra),
                        "stop_reason": finish.reason or "stop", **marker}])
                    break
                assistant = {"role": "assistant", "content": text or None,
                             "tool_calls": [_wire(c) for c in calls], **dict(finish.extra)}
                results = [{"role": "tool", "tool_call_id": c.id, "name": c.name,
                            "content": await port.tool(c)} for c in calls]
                await self._store.append(setup.key, [{**m, **marker}
                                                     for m in (assistant, *results)])
                convo.extend([assistant, *results])
        except asyncio.CancelledError:
            raise
        except (ClawgateError, ValueError) as exc:
            reason = f"memory flush failed: {exc}"
            log.warning("session %s: %s", setup.key, reason)
            self._metrics.inc("memory_flushes_total", status="failed")
            port.emit(phase="flush", status="failed", reason=reason)
            return Flush("failed", reason)
        self._metrics.inc("memory_flushes_total", status="ok")
        port.emit(phase="flush", status="ok")
        log.info("session %s: memory flush done", setup.key)
        return Flush("ok")

    async def _skip_flush(self, setup: Setup, view: View) -> str | None:
        """Why the flush does not run now, or None when it should."""
        if not self.config.memory_flush.enabled:
            return "the memory flush is disabled (engine.compaction.memory_flush.enabled)"
        if setup.memory is None:
            return "no memory plugin is loaded"
        read_only = await asyncio.to_thread(_read_only, setup.agent)
        if read_only is not None:
            return read_only
        after = view.entry.seq if view.entry is not None else 0
        if await self._store.flushed(setup.key, view.session_id, after):
            return ALREADY_FLUSHED
        return None

    # -- the compaction -----------------------------------------------------------------------

    def _cut(self, messages: Sequence[Message], setup: Setup,
             max_lines: int | None) -> int | None:
        """Where the kept tail starts (:func:`clawgate.agents.budget.cut`): at most
        ``keep_recent_tokens`` and ``keep_messages``, or ``max_lines`` messages."""
        if max_lines is not None:
            return cut(messages, 10**12, max_messages=min(max_lines, self._keep_messages))
        return cut(messages, setup.budget.keep, max_messages=self._keep_messages)

    def _nothing(self, view: View, setup: Setup, max_lines: int | None) -> str | None:
        """Why ``view`` cannot be compacted, or None when it can."""
        rows = view.messages
        if not rows:
            return "no transcript"
        if self._cut([m.to_message() for m in rows], setup, max_lines) is None:
            return "nothing to compact"
        return None

    async def _compact(self, port: Port, setup: Setup, view: View, trigger: Trigger,
                       before: int, *, instructions: str | None,
                       max_lines: int | None) -> Outcome:
        rows = view.messages
        messages = [m.to_message() for m in rows]
        budget = setup.budget
        index = self._cut(messages, setup, max_lines)
        if index is None:
            return Outcome(False, self._nothing(view, setup, max_lines), tokens_before=before)
        port.emit(phase="start", trigger=trigger, tokensBefore=before)
        try:
            summary = await self._summarise(port, budget, view.summary, messages[:index],
                                            instructions=instructions, partial=not view.complete)
        except asyncio.CancelledError:
            raise
        except (ClawgateError, ValueError) as exc:
            reason = f"summary call failed: {exc}"
            log.warning("session %s: compaction (%s) failed: %s", setup.key, trigger, reason)
            self._metrics.inc("compactions_total", trigger=trigger, status="failed")
            port.emit(phase="end", trigger=trigger, compacted=False, error=reason,
                      tokensBefore=before, willRetry=False)
            return Outcome(False, reason, failed=True, tokens_before=before)
        previous = entry_of(view.entry) if view.entry is not None else None
        kept = rows[index]
        record: dict[str, Any] = {
            "firstKeptId": kept.id, "firstKeptSeq": kept.seq, "tokensBefore": before,
            "trigger": trigger, "count": view.count + 1,
            "summarized": int((previous or {}).get("summarized", 0)) + index,
        }
        if instructions:
            record["instructions"] = instructions
        after = prompt_tokens(setup.system, [texts.summary_message(summary, record,
                                                                   recall=setup.recall),
                                             *messages[index:]], setup.specs)
        record["tokensAfter"] = after
        try:
            entry = await self._store.compact(setup.key, view.session_id, {
                "role": "system", "content": summary, COMPACTION: record})
        except ClawgateError as exc:
            reason = f"compaction not recorded: {exc}"
            log.warning("session %s: %s", setup.key, reason)
            port.emit(phase="end", trigger=trigger, compacted=False, error=reason,
                      tokensBefore=before, willRetry=False)
            return Outcome(False, reason, failed=True, tokens_before=before)
        self._metrics.inc("compactions_total", trigger=trigger, status="ok")
        log.info("session %s: compacted (%s): %d messages summarised, ~%d -> ~%d tokens",
                 setup.key, trigger, index, before, after)
        port.emit(phase="end", trigger=trigger, compacted=True, tokensBefore=before,
                  tokensAfter=after, willRetry=trigger == "overflow")
        self._bus.publish(SessionEvent(setup.key, "compact", fields={
            "compacted": True, "trigger": trigger, "tokensBefore": before, "tokensAfter": after,
            "messageId": entry.id}))
        return Outcome(True, summary=summary, tokens_before=before, tokens_after=after,
                       first_kept_id=kept.id, kept=len(rows) - index)

    async def _summarise(self, port: Port, budget: Budget, previous: str | None,
                         messages: Sequence[Message], *, instructions: str | None,
                         partial: bool) -> str:
        """The summary of ``previous`` (the last summary) and ``messages``, in as many
        stages as the window needs (the newest ``MAX_STAGES`` when there are more)."""
        room = budget.window - 2 * budget.summary_tokens - tokens(texts.SUMMARY_SYSTEM) - 500
        groups = texts.stages(texts.pieces(messages), max(room, 500))
        if len(groups) > texts.MAX_STAGES:
            groups, partial = groups[-texts.MAX_STAGES:], True
        summary = previous
        for n, group in enumerate(groups):
            ask = texts.request(summary, group, instructions=instructions,
                                last=n == len(groups) - 1, partial=partial and n == 0)
            text, _, _ = await port.model(texts.SUMMARY_SYSTEM,
                                          [{"role": "user", "content": ask}], [],
                                          max_tokens=budget.summary_tokens, summary=True)
            if not text.strip():
                raise ValueError("the summary call returned no text")
            summary = text.strip()
        return summary or ""


def _with_flush(outcome: Outcome, flush: Flush | None) -> Outcome:
    if flush is None:
        return outcome
    return Outcome(outcome.compacted, outcome.reason, outcome.failed, outcome.summary,
                   outcome.tokens_before, outcome.tokens_after, outcome.first_kept_id,
                   outcome.kept, flush, outcome.changed)


def _read_only(agent: Agent) -> str | None:
    """Why ``agent``'s workspace cannot take memory writes, or None: ``workspace_access =
    "ro"`` in its config, or the process may not write the workspace (or its ``memory/``
    folder) — permissions, or a read-only mount (``os.access`` reports both)."""
    if agent.workspace_access == "ro":
        return 'the workspace is read-only (workspace_access = "ro")'
    for path in (agent.workspace, agent.workspace / "memory"):
        if path.exists() and not os.access(path, os.W_OK):
            return f"the workspace is read-only ({path} is not writable)"
    return None


def _wire(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}
