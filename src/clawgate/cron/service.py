"""The cron service: what a gateway runs of ``clawgate.cron`` — the scheduler with the job
runner, the heartbeats, ``wake``, and the owner's notices.

The runtime builds it only where a gateway serves (a CLI command must not run jobs) and hands
it the channel runtime as a :class:`~clawgate.cron.delivery.Channels`. A run of a job:

- ``sessionTarget: "isolated"`` (``agentTurn``): one turn through ``engine.submit`` on a fresh
  session per run (``agent:<a>:cron:<jobId>:run:<runId>``), the payload's ``model`` and
  ``thinking`` set on that session first, the message prefixed ``[cron:<jobId> <name>]``
  (OpenClaw's form). The watchdog's cancel (``timeoutSeconds``) aborts the turn. The run's
  summary is the reply (at most :data:`MAX_SUMMARY` characters).
- ``sessionTarget: "main"`` (``systemEvent``): the text is queued as a system event on the
  agent's main session; ``wakeMode: "now"`` asks for a heartbeat at once, ``next-heartbeat``
  leaves it for the next one (or the next message there).
- delivery (``cron.delivery``): an announcement to a channel — a missing target fails the run
  before any model call unless ``bestEffort``; a send that fails fails the run unless
  ``bestEffort`` — or a webhook POST of the finished run. The run records what happened
  (``deliveryStatus``, ``deliveryError``); ``ctx.delivering()`` comes before any send, so a
  one-shot interrupted there is never replayed.

A job the scheduler disables after repeated failures is reported to its owner: a system event
on the agent's main session (the next heartbeat or message sees it), a ``cron`` event
``{action: "disabled"}`` and, when the job announces to a channel, a notice there.

``clock`` is the time source of the scheduler and the heartbeats; it is read at ``start()``,
so a test may set a fake one on a gateway before it serves.

One leader. Several gateways on one database must not all run the jobs and heartbeats: the
service runs them only while it holds the store's ``cron`` lease (``store.lease``: released by
the OS or the database server when its holder dies). A gateway that does not hold it is a
follower: it tries to take the lease every :data:`LEASE_CHECK_S`, and so takes over within that
time when the leader dies (recovering the runs the leader left open, as after a restart); a
leader checks it still holds the lease as often and stops its jobs when it lost it. On a
follower the cron methods answer ``Unavailable`` (the leader manages the jobs). On SQLite the
one gateway is always the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

from clawgate.agents.engine import Engine
from clawgate.agents.turn import Submission
from clawgate.cron.beats import Heartbeats
from clawgate.cron.delivery import Channels, Courier, Sent
from clawgate.cron.heartbeat import suppress
from clawgate.cron.jobs import AgentTurn, CronJob, RunOutcome, SystemEvent, session_key
from clawgate.cron.scheduler import Clock, RunContext, Scheduler, SystemClock
from clawgate.diagnostics.metrics import Metrics
from clawgate.errors import NotFound, Unavailable
from clawgate.sessions import keys

log = logging.getLogger("clawgate.cron")

MAX_SUMMARY = 2_000
LEASE = "cron"
LEASE_CHECK_S = 2.0  # how often a follower tries the lease and a leader checks it holds it
Listener = Callable[[str, dict[str, Any]], None]
WakeMode = Literal["now", "next-heartbeat"]


class CronService:
    """Cron jobs and heartbeats of one gateway. ``start()``/``stop()``."""

    def __init__(self, engine: Engine, *, channels: Channels | None = None,
                 metrics: Metrics | None = None, clock: Clock | None = None) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.config = self.settings.config.cron
        self.metrics = metrics or engine.metrics
        self.clock: Clock = clock or SystemClock()
        self._main = self.settings.config.session.main_key
        self.courier = Courier(engine.store, channels, main_key=self._main_key,
                               timeout_s=self.config.delivery_timeout_s,
                               webhook_token=self.config.webhook_token)
        self._listeners: list[Listener] = []
        self._scheduler: Scheduler | None = None
        self._heartbeats: Heartbeats | None = None
        self._lease = engine.store.lease(LEASE)
        self._watch: asyncio.Task[None] | None = None
        self.lease_check_s = LEASE_CHECK_S

    def listen(self, listener: Listener) -> None:
        """Call ``listener(event, payload)`` for every ``cron`` and ``heartbeat`` event."""
        self._listeners.append(listener)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Take the cron lease if it is free and then start the scheduler (closing what a
        killed process left open) and the heartbeats; keep watching the lease either way."""
        if self._watch is not None:
            raise Unavailable("the cron service is already running")
        if await self._lease.acquire():
            try:
                await self._lead()
            except BaseException:
                await self._lease.release()
                raise
        self._watch = asyncio.create_task(self._watch_lease(), name="clawgate-cron-lease")

    async def stop(self) -> None:
        """Stop watching the lease, stop the heartbeats and the scheduler (runs in progress
        are recorded as interrupted) and give the lease up; safe to call twice."""
        watch, self._watch = self._watch, None
        try:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            await self._follow()
            await self._lease.release()
        finally:
            await self.courier.aclose()

    @property
    def leading(self) -> bool:
        """Whether this gateway runs the jobs and heartbeats (it holds the cron lease)."""
        return self._scheduler is not None

    async def _lead(self) -> None:
        scheduler = Scheduler(self.engine.store, self._run_job, config=self.config,
                              clock=self.clock, notify=self._disabled,
                              on_event=lambda event: self._emit("cron", event),
                              agents=[agent.id for agent in self.engine.roster])
        heartbeats = Heartbeats(self.engine, self.courier, clock=self.clock,
                                metrics=self.metrics,
                                emit=lambda event: self._emit("heartbeat", event))
        # Heartbeats first: a main job due at start-up may ask for one at once.
        await heartbeats.start()
        self._heartbeats = heartbeats
        try:
            await scheduler.start()
        except BaseException:
            self._heartbeats = None
            await heartbeats.stop()
            raise
        self._scheduler = scheduler

    async def _follow(self) -> None:
        heartbeats, self._heartbeats = self._heartbeats, None
        scheduler, self._scheduler = self._scheduler, None
        if heartbeats is not None:
            await heartbeats.stop()
        if scheduler is not None:
            await scheduler.stop()

    async def _watch_lease(self) -> None:
        while True:
            await asyncio.sleep(self.lease_check_s)
            try:
                if self.leading:
                    if not await self._lease.check():
                        log.warning("cron: lost the cron lease; another gateway runs the jobs")
                        await self._follow()
                elif await self._lease.acquire():
                    log.info("cron: took the cron lease; this gateway runs the jobs now")
                    await self._lead()
            except Exception as exc:  # the store is down: try again at the next check
                log.warning("cron: the lease check failed (%s); trying again in %.0f s", exc,
                            self.lease_check_s)
                with contextlib.suppress(Exception):
                    await self._follow()
                    await self._lease.release()

    @property
    def scheduler(self) -> Scheduler:
        """The running scheduler (Unavailable before ``start`` and on a follower)."""
        if self._scheduler is None:
            raise self._not_running()
        return self._scheduler

    @property
    def heartbeats(self) -> Heartbeats:
        """The running heartbeats (Unavailable before ``start`` and on a follower)."""
        if self._heartbeats is None:
            raise self._not_running()
        return self._heartbeats

    def _not_running(self) -> Unavailable:
        if self._watch is not None:
            return Unavailable("this gateway is not the cron leader: another gateway on the "
                               "same store runs and manages the cron jobs")
        return Unavailable("the cron service is not running")

    async def status(self) -> dict[str, Any]:
        """``cron.status``: OpenClaw's ``{enabled, storePath, jobs, nextWakeAtMs}`` (plus
        ``running`` and ``leader``)."""
        status = self.scheduler.status() if self._scheduler is not None else {
            "enabled": self.config.enabled, "running": 0, "nextWakeAtMs": None}
        return {**status, "jobs": await self.engine.store.cron.count(),
                "storePath": str(self.engine.store.path), "leader": self.leading}

    def wake(self, text: str, mode: WakeMode, *, agent_id: str | None = None) -> dict[str, Any]:
        """``wake``: queue ``text`` on the agent's main session; ``now`` runs its heartbeat at
        once (when it has one)."""
        key = self.engine.system_event(text, agent_id=agent_id)
        woke = self.heartbeats.wake(agent_id, reason="wake") if mode == "now" else False
        return {"ok": True, "sessionKey": key, "mode": mode, "heartbeat": woke}

    # -- runs --------------------------------------------------------------------------------

    async def _run_job(self, job: CronJob, ctx: RunContext) -> RunOutcome:
        if isinstance(job.payload, SystemEvent):
            return await self._main_job(job, job.payload, ctx)
        assert isinstance(job.payload, AgentTurn)  # jobs.py pairs the payload with the target
        return await self._isolated_job(job, job.payload, ctx)

    async def _main_job(self, job: CronJob, payload: SystemEvent,
                        ctx: RunContext) -> RunOutcome:
        agent = self.engine.roster.get(job.agent_id)
        key = self.engine.system_event(payload.text, agent_id=agent.id)
        if job.wake_mode == "now":
            self.heartbeats.wake(agent.id, reason=f"cron:{job.id}")
        summary = payload.text[:MAX_SUMMARY]
        sent = Sent("not-requested")
        if job.delivery is not None and job.delivery.mode == "webhook":
            sent = await self._webhook(job, ctx, {"status": "ok", "summary": summary,
                                                  "sessionKey": key})
        status, error = _escalate("ok", None, sent, job)
        return RunOutcome(status, error=error, summary=summary, session_key=key,
                          delivery_status=sent.status, delivery_error=sent.error)

    async def _isolated_job(self, job: CronJob, payload: AgentTurn,
                            ctx: RunContext) -> RunOutcome:
        agent = self.engine.roster.get(job.agent_id)
        key = session_key(job, agent.id, ctx.run_id)
        delivery = job.delivery
        route, unrouted = None, None
        if delivery is not None and delivery.mode == "announce":
            try:
                route = await self.courier.route(delivery.channel, delivery.to,
                                                 delivery.account_id, agent.id)
            except NotFound as exc:  # before any model call: nothing to deliver to
                if not delivery.best_effort:
                    return RunOutcome("error", error=str(exc), session_key=key,
                                      delivery_status="not-delivered", delivery_error=str(exc))
                unrouted = str(exc)
        await self._prepare(key, agent.id, payload)
        turn = await self.engine.submit(Submission(
            f"[cron:{job.id} {job.name}] {payload.message}", session_key=key,
            agent_id=agent.id, channel="cron", commands=False))
        try:
            result = await turn.result()
        except BaseException:  # the watchdog or a stopping gateway: the turn stops too
            turn.abort()
            raise
        entry = await self.engine.store.get(key)
        record = await self.engine.store.get_run(turn.run_id)
        found: dict[str, Any] = {
            "session_id": entry.session_id if entry is not None else None,
            "session_key": key, "usage": _usage(result.usage),
            "model": record.model if record is not None else None,
            "provider": record.provider if record is not None else None,
            "summary": result.text[:MAX_SUMMARY] or None}
        status: Literal["ok", "error"] = "ok" if result.status == "ok" else "error"
        error = None if status == "ok" else (result.error or f"the turn ended {result.status}")
        sent, quiet = Sent("not-requested"), False
        if delivery is not None and delivery.mode == "announce" and status == "ok":
            decision = suppress(result.text, mode="message")  # no bare HEARTBEAT_OK either
            if route is None:  # best effort (else the run ended above)
                sent = Sent("not-delivered", unrouted)
            elif not decision.deliver:  # said nothing: not a failure, and nothing was sent
                sent, quiet = Sent("not-delivered", "nothing to deliver: the reply was empty"), True
            else:
                await ctx.delivering()
                sent = await self.courier.announce(route, decision.text)
        elif delivery is not None and delivery.mode == "webhook":
            sent = await self._webhook(job, ctx, {
                "status": status, "error": error, "summary": found["summary"],
                "sessionId": found["session_id"], "sessionKey": key, "model": found["model"],
                "provider": found["provider"], "usage": found["usage"] or None})
        if not quiet:
            status, error = _escalate(status, error, sent, job)
        return RunOutcome(status, error=error, delivery_status=sent.status,
                          delivery_error=sent.error, **found)

    async def _prepare(self, key: str, agent_id: str, payload: AgentTurn) -> None:
        """The payload's model and thinking level, set on the run's fresh session."""
        fields: dict[str, Any] = {}
        wire: dict[str, Any] = {}
        if payload.model:
            provider, _, model = payload.model.rpartition("/")
            fields.update(provider_override=provider or None, model_override=model)
            wire["model"] = payload.model
        if payload.thinking:
            fields["thinking_level"] = payload.thinking
            wire["thinkingLevel"] = payload.thinking
        if fields:
            await self.engine.patch_session(key, agent_id=agent_id, wire=wire, **fields)

    async def _webhook(self, job: CronJob, ctx: RunContext,
                       fields: Mapping[str, Any]) -> Sent:
        """POST the finished run (OpenClaw's ``finished`` cron event) to ``delivery.to``."""
        assert job.delivery is not None and job.delivery.to is not None
        body = {"jobId": job.id, "jobName": job.name, "action": "finished",
                "runId": ctx.run_id, "runAtMs": ctx.started_ms,
                "durationMs": max(0, self.clock.now_ms() - ctx.started_ms),
                **{k: v for k, v in fields.items() if v is not None}}
        await ctx.delivering()
        return await self.courier.post(job.delivery.to, body, key=ctx.run_id)

    # -- the owner ---------------------------------------------------------------------------

    async def _disabled(self, job: CronJob) -> None:
        """Tell the owner that ``job`` was disabled after repeated failures."""
        agent = self.engine.roster.get(job.agent_id)
        state = job.state
        text = (f"Cron job {job.name!r} ({job.id}) was disabled after "
                f"{state.consecutive_errors} failed runs in a row; last error: "
                f"{state.last_error or 'unknown'}. Turn it on again with: "
                f"clawgate cron edit {job.id} --enable")
        self._emit("cron", {"jobId": job.id, "action": "disabled",
                            "reason": "consecutive-failures",
                            "consecutiveErrors": state.consecutive_errors,
                            "error": state.last_error})
        try:
            self.engine.system_event(text, agent_id=agent.id)
        except Exception:  # a full queue must not hide the other notices
            log.exception("cron: could not queue the notice for job %s", job.id)
        delivery = job.delivery
        if delivery is not None and delivery.mode == "announce":
            try:
                route = await self.courier.route(delivery.channel, delivery.to,
                                                 delivery.account_id, agent.id)
            except NotFound as exc:
                log.warning("cron: job %s was disabled; its channel cannot be told: %s",
                            job.id, exc)
                return
            await self.courier.notice(route, f"⚠️ {text}")

    def _emit(self, event: str, payload: dict[str, Any]) -> None:
        for listener in self._listeners:
            try:
                listener(event, payload)
            except Exception:
                log.exception("cron: %s listener failed", event)

    def _main_key(self, agent_id: str) -> str:
        return keys.main_key(agent_id, self._main)


def _escalate(status: Literal["ok", "error"], error: str | None, sent: Sent,
              job: CronJob) -> tuple[Literal["ok", "error"], str | None]:
    """A delivery that failed fails an ok run, unless the job delivers best-effort."""
    best_effort = job.delivery is not None and bool(job.delivery.best_effort)
    if status == "ok" and sent.status == "not-delivered" and not best_effort:
        return "error", f"delivery failed: {sent.error}"
    return status, error


def _usage(counts: Mapping[str, int]) -> dict[str, int]:
    """A run's token counts in the names ``cron.runs`` entries use (OpenClaw's)."""
    names = {"input": "input_tokens", "output": "output_tokens", "total": "total_tokens",
             "cache_read": "cache_read_tokens", "cache_write": "cache_write_tokens"}
    return {names[k]: int(v) for k, v in counts.items() if k in names and v}
