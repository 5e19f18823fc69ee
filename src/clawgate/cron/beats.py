"""The heartbeat runner: for each agent of ``heartbeat.plan``, a turn on its main session
every ``every`` — one owned task, an injectable clock, one tick per agent at a time.

A tick reads ``HEARTBEAT.md`` from the agent's workspace (on a thread) and asks
``heartbeat.gate`` whether to call the model: outside ``active_hours`` and for an effectively
empty file it does not (``heartbeat_skipped_total{reason}`` counts it, a ``skipped`` heartbeat
event says so); a busy main session is retried in ``BUSY_RETRY_MS``. Queued system events (a
cron job's text, ``wake``) make an empty file no reason to skip: they are what the turn is for.

The turn goes through ``engine.submit`` with a :class:`~clawgate.agents.turn.ReplyFilter`
built from ``heartbeat.suppress`` (the final text) and ``heartbeat.preview`` (the stream), so
the decision about ``HEARTBEAT_OK`` is made once, in the runner, before anything is stored,
published or turned into a channel intent; an acknowledged heartbeat is archived from the
transcript. The reply goes where ``target`` says: ``last`` (the route the main session last
received a channel message on), ``none``, or a channel (with ``to``), as the run's own durable
intent. Each outcome is a ``heartbeat`` event in OpenClaw's shape (``last-heartbeat``).

``set-heartbeats false`` stops every tick until it is turned on again; an agent that is not
in the plan (``every = "0m"``) has no heartbeat at all, not even on ``wake``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from clawgate.agents.engine import Engine
from clawgate.agents.turn import ReplyFilter, Submission
from clawgate.cron.delivery import Courier
from clawgate.cron.heartbeat import (
    BUSY_RETRY_MS,
    HEARTBEAT_FILE,
    Heartbeat,
    gate,
    plan,
    preview,
    suppress,
)
from clawgate.cron.scheduler import Clock, SystemClock
from clawgate.diagnostics.metrics import Metrics
from clawgate.errors import NotFound
from clawgate.sessions import keys
from clawgate.sessions.channelstore import Delivery as Route

log = logging.getLogger("clawgate.cron.heartbeat")

Status = Literal["sent", "ok-empty", "ok-token", "skipped", "failed"]
MAX_FILE_BYTES = 64 * 1024  # HEARTBEAT.md is read only this far (it is meant to be short)
PREVIEW_CHARS = 200


class Heartbeats:
    """The heartbeats of one gateway. ``start()``/``stop()``; ``wake()`` runs one now."""

    def __init__(self, engine: Engine, courier: Courier, *, clock: Clock | None = None,
                 metrics: Metrics | None = None,
                 emit: Callable[[dict[str, Any]], None] | None = None) -> None:
        settings = engine.settings
        self.engine = engine
        self.plan: dict[str, Heartbeat] = plan(settings)
        self.enabled = True
        self.last: dict[str, Any] | None = None  # the newest heartbeat event
        self._courier = courier
        self._clock: Clock = clock or SystemClock()
        self._metrics = metrics or engine.metrics
        self._emit = emit
        self._main = settings.config.session.main_key
        self._files = {a.id: settings.agent_workspace(a) / HEARTBEAT_FILE
                       for a in settings.agents() if a.id in self.plan}
        self._filters = {agent: _filter(hb) for agent, hb in self.plan.items()}
        self._next: dict[str, int] = {}
        self._reasons: dict[str, str] = {}  # agent -> why its next tick was brought forward
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Schedule each agent's first tick one interval from now and start the task."""
        if self._task is not None:
            return
        now = self._clock.now_ms()
        self._next = {agent: now + hb.every_ms for agent, hb in self.plan.items()}
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name="clawgate-heartbeats")

    async def stop(self) -> None:
        """End the task; ticks in progress stop waiting (their turns finish in the engine)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        await task

    # -- control -----------------------------------------------------------------------------

    def wake(self, agent_id: str | None = None, reason: str = "wake") -> bool:
        """Run the agent's heartbeat (default: the default agent's) as soon as its session is
        free; False when it has none or heartbeats are off."""
        agent = agent_id or self.engine.roster.default.id
        if not self.enabled or agent not in self.plan or self._task is None:
            return False
        self._next[agent] = self._clock.now_ms()
        self._reasons[agent] = reason
        self._wake.set()
        return True

    def set_enabled(self, enabled: bool) -> None:
        """``set-heartbeats``: off stops every tick; on schedules each one interval ahead (no
        burst of the ticks that were missed)."""
        if enabled and not self.enabled:
            now = self._clock.now_ms()
            self._next = {agent: now + hb.every_ms for agent, hb in self.plan.items()}
            self._reasons.clear()
        self.enabled = enabled
        self._wake.set()

    def seconds(self) -> int:
        """The default agent's interval in seconds (0: none), for ``health``."""
        beat = self.plan.get(self.engine.roster.default.id)
        return 0 if beat is None or not self.enabled else beat.every_ms // 1000

    # -- the task ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        async with asyncio.TaskGroup() as ticks:
            while not self._stopping:
                self._wake.clear()
                deadline = self._launch(ticks)
                await self._clock.sleep_until(deadline, self._wake)
            for task in self._running.values():
                task.cancel()

    def _launch(self, ticks: asyncio.TaskGroup) -> int | None:
        if not self.enabled:
            return None
        now = self._clock.now_ms()
        upcoming: int | None = None
        for agent, at in list(self._next.items()):
            if agent in self._running:
                continue
            if at <= now:
                reason = self._reasons.pop(agent, "interval")
                self._running[agent] = ticks.create_task(self._tick(agent, reason),
                                                         name=f"clawgate-heartbeat-{agent}")
            elif upcoming is None or at < upcoming:
                upcoming = at
        return upcoming

    async def _tick(self, agent: str, reason: str) -> None:
        try:
            await self._beat(agent, reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one failed tick must not end the heartbeats
            log.exception("heartbeat of agent %s failed", agent)
            self._record(agent, "failed", reason=f"{type(exc).__name__}: {exc}")
        finally:
            self._running.pop(agent, None)
            self._wake.set()

    async def _beat(self, agent: str, reason: str) -> None:
        beat = self.plan[agent]
        now = self._clock.now_ms()
        if not self.enabled:
            return
        key = keys.main_key(agent, self._main)
        text = await asyncio.to_thread(_read, self._files[agent])
        queued = self.engine.system_events.pending(key) > 0
        skip = gate(beat, now_ms=now, heartbeat_md=None if queued else text,
                    busy=self.engine.busy(key))
        if skip == "busy":  # try again soon, for the same reason
            self._next[agent] = now + BUSY_RETRY_MS
            self._reasons[agent] = reason
            self._metrics.inc("heartbeat_skipped_total", reason="busy")
            return
        self._next[agent] = now + beat.every_ms
        if skip is not None:
            self._metrics.inc("heartbeat_skipped_total", reason=skip)
            self._record(agent, "skipped", reason=skip)
            return
        route, unrouted = await self._target(agent, beat)
        started = self._clock.now_ms()
        turn = await self.engine.submit(Submission(  # a failed tick sends the chat no notice
            beat.prompt, session_key=key, agent_id=agent, commands=False,
            delivery=None if route is None else replace(route, notices=False),
            reply=self._filters[agent]))
        result = await turn.result()
        self._metrics.inc("heartbeat_runs_total", status=result.status)
        took = {"durationMs": max(0, self._clock.now_ms() - started)}
        if result.status != "ok":
            self._record(agent, "failed", reason=result.error or result.status, **took)
        elif result.suppressed:
            self._record(agent, "ok-token", silent=True, **took)
        elif not result.text:
            self._record(agent, "ok-empty", silent=True, **took)
        elif route is None:
            self._record(agent, "skipped", reason=unrouted, preview=result.text[:PREVIEW_CHARS],
                         **took)
        else:
            await self._delivered(agent, route, f"run-{turn.run_id}", result.text, took)

    async def _target(self, agent: str, beat: Heartbeat) -> tuple[Route | None, str]:
        if beat.target == "none":
            return None, "target-none"
        channel = None if beat.target == "last" else beat.target
        try:
            return await self._courier.route(channel, beat.to, None, agent), ""
        except NotFound as exc:
            log.info("heartbeat of agent %s has no route: %s", agent, exc)
            return None, "no-route"

    async def _delivered(self, agent: str, route: Route, intent_id: str, text: str,
                         took: dict[str, Any]) -> None:
        """Wait (bounded) for the reply's intent, made with the run's end, to be sent."""
        sent = await self._courier.settle(intent_id)
        where = {"channel": route.channel, "accountId": route.account,
                 "to": str(route.target.get("to")), "preview": text[:PREVIEW_CHARS], **took}
        if sent.status == "delivered":
            self._record(agent, "sent", **where)
        else:
            self._record(agent, "failed", reason=sent.error or sent.status, **where)

    def _record(self, agent: str, status: Status, **fields: Any) -> None:
        indicator = {"sent": "alert", "failed": "error"}.get(status, "ok")
        event = {"ts": self._clock.now_ms(), "status": status, "agentId": agent,
                 "indicatorType": indicator,
                 **{k: v for k, v in fields.items() if v not in (None, "")}}
        self.last = event
        if self._emit is not None:
            try:
                self._emit(event)
            except Exception:
                log.exception("heartbeat event listener failed")


def _filter(beat: Heartbeat) -> ReplyFilter:
    ack = beat.ack_max_chars

    def final(text: str) -> str | None:
        decision = suppress(text, ack)
        return decision.text if decision.deliver else None

    return ReplyFilter(final=final, preview=lambda text: preview(text, ack))


def _read(path: Path) -> str | None:
    """``HEARTBEAT.md``'s text, or None when it does not exist (or cannot be read)."""
    try:
        with path.open("rb") as file:
            return file.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
