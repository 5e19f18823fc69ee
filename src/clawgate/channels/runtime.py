"""The channel runtime: every configured account of every channel plugin, supervised.

It owns, for one gateway: the accounts (built from ``[channels]`` and the current plugin
generation), one monitor task per enabled account (restarted with exponential backoff when it
fails, slowly when the platform refused its credentials), the inbound pipeline, the outbound
worker, the followers of running turns (typing, previews), and each account's status snapshot.
A plugin reload restarts the monitors on the new generation; pending deliveries carry on.

Messages the gateway starts itself (a cron job's announcement, a heartbeat's reply) go out the
same durable way: ``route`` checks where they go (naming what is missing), ``announce`` makes
the intent, ``settle`` awaits its outcome with a deadline.

One owner per account. Several gateways on one database must not all poll one Telegram token
or open one Slack socket: an account's monitor runs only while this gateway holds the store
lease ``channel.<channel>.<account>`` (:func:`lease_name`; released by the OS or the database
server when its holder dies). A gateway that does not hold it tries again every
:data:`OWNER_RETRY_S` and so takes over within about that when the owner dies; the owner checks
it still holds it as often and stops the monitor when it lost it. The owner also sends the
account's deliveries (durable intents, whichever replica made them): the outbound worker skips
accounts it does not own, so a takeover hands the owed ones to the new owner. Webhook-mode
inbound (``/channels/<channel>/<account>/...``) is accepted by any gateway. On SQLite the one
gateway owns every account.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clawgate.agents.bus import Event, RunEvent, Stream
from clawgate.agents.commands import catalogue
from clawgate.agents.engine import Engine
from clawgate.agents.turn import Turn
from clawgate.channels.accounts import AccountConfig, accounts
from clawgate.channels.inbound import Inbound
from clawgate.channels.media import MediaLoader
from clawgate.channels.outbound import Endpoint, Outbound
from clawgate.channels.streaming import Blocks, follow
from clawgate.chat import (
    Account,
    Channel,
    ChannelAuthError,
    ChatType,
    InboundMessage,
    Received,
    Target,
    WebhookRequest,
    WebhookResponse,
)
from clawgate.config import Settings
from clawgate.diagnostics.metrics import Metrics
from clawgate.errors import NotFound
from clawgate.plugins.host import Generation, Lease, PluginHost
from clawgate.plugins.registry import Command
from clawgate.plugins.schemas import SchemaCache
from clawgate.sessions.channelstore import Delivery, Intent, IntentKind
from clawgate.sessions.leases import Lease as StoreLease
from clawgate.sessions.leases import check_name
from clawgate.types import now_ms

log = logging.getLogger("clawgate.channels")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 60.0
AUTH_BACKOFF_S = 300.0  # a refused token is not fixed by hammering the platform
HEALTHY_AFTER_S = 60.0  # a monitor that ran this long starts its next backoff from the start
MAX_FOLLOWERS = 10_000
RUN_EVENTS = 65_536  # the run-end listener's mailbox (it reads fast: one check per event)
OWNER_RETRY_S = 3.0  # how often a non-owner tries an account's lease and an owner checks it
_UNSAFE = re.compile(r"[^a-z0-9_.-]")


def lease_name(channel: str, account: str) -> str:
    """The lease that makes a gateway an account's owner: ``channel.<channel>.<account>``,
    made fit for a lease name (lowercase, 64 characters) with a digest when it had to change,
    so two accounts never share one."""
    raw = f"channel.{channel}.{account}"
    safe = _UNSAFE.sub("-", raw.lower())
    if safe != raw or len(safe) > 64:
        safe = f"{safe[:55]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"
    return check_name(safe)


class _State:
    """The durable per-account values a plugin keeps (``context.state``)."""

    def __init__(self, runtime: ChannelRuntime, channel: str, account: str) -> None:
        self._store = runtime.engine.store.channels
        self._channel, self._account = channel, account

    async def get(self, name: str) -> Any:
        return await self._store.get_state(self._channel, self._account, name)

    async def set(self, name: str, value: Any) -> None:
        await self._store.set_state(self._channel, self._account, name, value)


@dataclass(eq=False)
class _Live:
    """One account: its config, its channel, its monitor and its status snapshot."""

    channel: Channel
    config: AccountConfig
    snapshot: dict[str, Any] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    owner: bool = False  # this gateway holds the account's lease (runs its monitor, sends)


class _Context:
    """The ``ChannelContext`` of one account."""

    def __init__(self, runtime: ChannelRuntime, live: _Live) -> None:
        assert live.config.account is not None
        self._account = live.config.account
        self._state = _State(runtime, live.config.channel, live.config.account_id)
        self._runtime = runtime
        self._live = live

    @property
    def account(self) -> Account:
        return self._account

    @property
    def state(self) -> _State:
        return self._state

    async def receive(self, message: InboundMessage) -> Received:
        self._live.snapshot["lastInboundAt"] = now_ms()
        return await self._runtime.inbound.receive(self._live.config, message)

    def commands(self) -> list[dict[str, str]]:
        return catalogue(self._runtime.registered_commands())

    def status(self, **fields: Any) -> None:
        self._live.snapshot.update(fields)
        if fields.get("connected") is True:
            self._live.snapshot["lastConnectedAt"] = now_ms()


class ChannelRuntime:
    """Channels of one gateway."""

    def __init__(self, settings: Settings, host: PluginHost, engine: Engine, metrics: Metrics,
                 env: Mapping[str, str], *, replica_id: str = "") -> None:
        self.settings = settings
        self.replica_id = replica_id
        self.owner_retry_s = OWNER_RETRY_S
        self.host = host
        self.engine = engine
        self.env = env
        self.metrics = metrics
        self._schemas = SchemaCache()
        self._previews: dict[str, asyncio.Lock] = {}
        self._blocks = Blocks()
        self.inbound = Inbound(settings, engine, metrics, follow=self._follow, wake=self.wake,
                               channel=self._channel_of, paired=self.pairing_changed)
        self._pairing_listeners: list[Callable[[dict[str, Any]], None]] = []
        delivery = settings.config.delivery
        roots = [*settings.workspaces(), *(settings.state_dir / Path(r).expanduser()
                                           for r in delivery.media_roots)]
        self.media = MediaLoader(roots, max_bytes=int(delivery.media_max_mb * 1024 * 1024))
        self.outbound = Outbound(engine.store, self.endpoint, delivery, metrics,
                                 self._previews, self.media, self._blocks, owns=self.owns)
        self._live: dict[tuple[str, str], _Live] = {}
        self._problems: dict[str, str] = {}  # channel id -> why it has no accounts
        self._generation: Generation | None = None
        self._lease: Lease | None = None
        self._worker: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._followers: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the accounts of the current generation, start their monitors and the
        outbound worker (which sends what a previous run of the gateway still owed)."""
        self._start_accounts(self.host.current)
        loop = asyncio.get_running_loop()
        self._worker = loop.create_task(self.outbound.run(), name="channels-outbound")
        self._listener = loop.create_task(self._ended_runs(), name="channels-runs")

    async def reload(self) -> None:
        """Restart every monitor on the current generation (after a plugin reload)."""
        if self.host.current is self._generation:
            return
        await self._stop_accounts()
        self._start_accounts(self.host.current)
        self.wake()

    async def aclose(self) -> None:
        """Stop the monitors, the followers and the outbound worker (pending deliveries stay
        in the store for the next start)."""
        await self._stop_accounts()
        for task in list(self._followers):
            task.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)
        for owned in (self._listener, self._worker):
            if owned is not None:
                owned.cancel()
                await asyncio.gather(owned, return_exceptions=True)
        self._worker = None
        self._listener = None
        await self.media.close()

    async def flush(self, deadline_s: float) -> None:
        """Give the outbound worker up to ``deadline_s`` to send what is due (at shutdown)."""
        self.outbound.idle.clear()
        self.wake()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbound.idle.wait(), deadline_s)

    def wake(self) -> None:
        self.outbound.wake()

    def listen_pairing(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(payload)`` when a DM pairing request is created, approved or denied
        (the gateway broadcasts it as ``channels.pairing``)."""
        self._pairing_listeners.append(listener)

    def pairing_changed(self, payload: dict[str, Any]) -> None:
        for listener in self._pairing_listeners:
            try:
                listener(payload)
            except Exception:
                log.exception("channels: pairing listener failed")

    def registered_commands(self) -> Mapping[str, Command]:
        """The plugins' slash commands of the generation the accounts run on."""
        generation = self._generation or self.host.current
        return generation.registry.commands

    async def _ended_runs(self) -> None:
        """Wake the outbound worker when a run that owes a channel its reply ends (its intent
        was committed with the end)."""
        bus = self.engine.bus
        only: frozenset[Stream] = frozenset({"lifecycle"})  # a run's end is all it wants

        def owes(event: Event) -> bool:  # other runs' events never wake this task
            return isinstance(event, RunEvent) and bool(event.data.get("deliver"))

        sub = bus.subscribe(maxsize=RUN_EVENTS, streams=only, when=owes)
        try:
            while True:
                await sub.get()
                if sub.overflowed:  # missed some ends: resubscribe and look anyway
                    sub.close()
                    sub = bus.subscribe(maxsize=RUN_EVENTS, streams=only, when=owes)
                self.wake()
        finally:
            sub.close()

    def _start_accounts(self, generation: Generation) -> None:
        self._generation = generation
        self._lease = self.host.checkout(generation)
        configured = self.settings.config.channels
        registered = {cid: entry.channel for cid, entry in generation.registry.channels.items()}
        self._problems = {cid: f"no loaded plugin provides channel {cid!r}"
                          for cid in configured if cid not in registered}
        for problem in self._problems.values():
            log.warning("channels: %s", problem)
        loop = asyncio.get_running_loop()
        for cid, channel in registered.items():
            if cid not in configured:
                continue
            for config in accounts(channel, configured[cid], self.env, self._schemas):
                live = _Live(channel, config, {"accountId": config.account_id,
                                               "enabled": config.policy.enabled,
                                               "configured": config.error is None,
                                               "running": False, "connected": False,
                                               "reconnectAttempts": 0,
                                               "dmPolicy": config.policy.dm_policy,
                                               "allowFrom": list(config.policy.allow_from)})
                if config.error is not None:
                    live.snapshot["lastError"] = config.error
                    log.warning("channels: %s", config.error)
                self._live[(cid, config.account_id)] = live
                if config.enabled:
                    live.task = loop.create_task(self._own(live),
                                                 name=f"channel:{cid}/{config.account_id}")

    async def _stop_accounts(self) -> None:
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._live.clear()
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def owns(self, channel: str, account: str) -> bool:
        """Whether this gateway sends ``channel/account``'s deliveries: it holds the account's
        lease (an account not configured or not enabled here is not waited for: its
        deliveries fail here as they would anywhere)."""
        live = self._live.get((channel, account))
        return live is None or not live.config.enabled or live.owner

    def owned(self) -> list[str]:
        """The lease names of the accounts this gateway owns."""
        return [lease_name(c, a) for (c, a), live in self._live.items() if live.owner]

    async def _own(self, live: _Live) -> None:
        """Hold the account's lease and run its monitor while held; without it, try again
        every ``owner_retry_s``."""
        name = lease_name(live.config.channel, live.config.account_id)
        lease = self.engine.store.lease(name)
        try:
            while True:
                if await lease.acquire():
                    log.info("channel %s/%s: this gateway owns the account", live.config.channel,
                             live.config.account_id)
                    live.owner = True
                    live.snapshot.update(owner=True, ownerReplica=self.replica_id)
                    self.wake()  # deliveries a previous owner still owed are ours now
                    await self._while_held(live, lease)
                    live.owner = False
                    live.snapshot.update(owner=False, ownerReplica=None)
                    await lease.release()
                else:
                    live.snapshot.update(owner=False, running=False)
                await asyncio.sleep(self.owner_retry_s)
        finally:
            live.owner = False
            live.snapshot["owner"] = False
            await lease.release()

    async def _while_held(self, live: _Live, lease: StoreLease) -> None:
        monitor = asyncio.get_running_loop().create_task(
            self._supervise(live), name=f"monitor:{live.config.channel}/{live.config.account_id}")
        try:
            while True:
                await asyncio.wait({monitor}, timeout=self.owner_retry_s)
                if monitor.done():
                    return
                if not await lease.check():
                    log.warning("channel %s/%s: lost the account's lease; stopping its monitor "
                                "(another gateway owns it now)", live.config.channel,
                                live.config.account_id)
                    return
        finally:
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)

    async def _supervise(self, live: _Live) -> None:
        """Run the account's monitor for ever, restarting it with backoff."""
        loop = asyncio.get_running_loop()
        delay = BACKOFF_START_S
        context = _Context(self, live)
        snapshot = live.snapshot
        while True:
            started = loop.time()
            snapshot.update(running=True, lastStartAt=now_ms())
            try:
                await live.channel.monitor(context.account, context)
                reason = "the monitor returned"
            except asyncio.CancelledError:
                snapshot.update(running=False, connected=False, lastStopAt=now_ms())
                raise
            except ChannelAuthError as exc:
                reason = f"{exc}" + (f" — {exc.fix}" if exc.fix else "")
                snapshot.update(lastError=reason, authError=True)
                delay = AUTH_BACKOFF_S
            except Exception as exc:  # a broken monitor must not take the gateway down
                reason = f"{type(exc).__name__}: {exc}"
                snapshot["lastError"] = reason
            log.warning("channel %s/%s stopped (%s); restarting in %.0f s", live.config.channel,
                        live.config.account_id, reason, delay)
            snapshot.update(running=False, connected=False, lastStopAt=now_ms(),
                            reconnectAttempts=snapshot.get("reconnectAttempts", 0) + 1)
            self.metrics.inc("channel_monitor_restarts_total", channel=live.config.channel)
            await asyncio.sleep(delay)
            if loop.time() - started > HEALTHY_AFTER_S and not snapshot.get("authError"):
                delay = BACKOFF_START_S
            else:
                delay = min(BACKOFF_MAX_S, delay * 2) if delay < AUTH_BACKOFF_S else delay
            snapshot.pop("authError", None)

    # -- serving -----------------------------------------------------------------------------

    def _channel_of(self, channel: str) -> Channel | None:
        generation = self._generation or self.host.current
        entry = generation.registry.channels.get(channel)
        return None if entry is None else entry.channel

    def endpoint(self, channel: str, account: str) -> Endpoint | None:
        """A configured, enabled account to send through (None: deliveries wait)."""
        live = self._live.get((channel, account))
        if live is None or not live.config.enabled:
            return None
        return Endpoint(live.channel, live.config)

    def account(self, channel: str, account: str) -> AccountConfig | None:
        live = self._live.get((channel, account))
        return None if live is None else live.config

    # -- messages the gateway starts (cron, heartbeat) ---------------------------------------

    def route(self, channel: str, to: str, *, account_id: str | None = None,
              thread: str | None = None, chat_type: ChatType = "direct") -> Delivery:
        """Where a message the gateway starts goes: an enabled account of ``channel`` (its
        ``default`` account, else the first, when ``account_id`` is None) and the recipient
        ``to``. NotFound names what is missing."""
        mine = {aid: live for (cid, aid), live in self._live.items() if cid == channel}
        if not mine:
            why = self._problems.get(channel) or f"no account of channel {channel!r} is " \
                "configured"
            raise NotFound(f"delivery.channel: {why}")
        if account_id is None:
            account_id = "default" if "default" in mine else sorted(mine)[0]
        live = mine.get(account_id)
        if live is None:
            raise NotFound(f"delivery.accountId: channel {channel!r} has no account "
                           f"{account_id!r}")
        if not live.config.enabled or live.config.account is None:
            raise NotFound(f"delivery.accountId: account {channel}/{account_id} is not enabled"
                           + (f" ({live.config.error})" if live.config.error else ""))
        if not to.strip():
            raise NotFound("delivery.to: no recipient")
        return Delivery(channel, account_id, Target(to.strip(), chat_type, thread).dump())

    async def announce(self, route: Delivery, text: str, *,
                       kind: IntentKind = "announce") -> str:
        """Make ``text`` a durable intent for ``route`` (chunked, sent and receipted by the
        outbound worker like any reply); returns the intent id."""
        intent_id = await self.engine.store.channels.add_intent(
            channel=route.channel, account=route.account, target=route.target, text=text,
            kind=kind)
        self.wake()
        return intent_id

    async def settle(self, intent_id: str, deadline_s: float) -> Intent | None:
        """The intent once it is ``sent`` or ``failed``, or as it stands (``pending``) when
        ``deadline_s`` passes first; None for an unknown intent."""
        store = self.engine.store.channels
        attempted = self.outbound.watch(intent_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadline_s
        try:
            while True:
                attempted.clear()
                intent = await store.intent(intent_id)
                left = deadline - loop.time()
                if intent is None or intent.status != "pending" or left <= 0:
                    return intent
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(attempted.wait(), left)
        finally:
            self.outbound.unwatch(intent_id, attempted)

    async def webhook(self, channel: str, account: str,
                      request: WebhookRequest) -> WebhookResponse:
        """An HTTP request for ``/channels/<channel>/<account>/...``, handed to the plugin."""
        live = self._live.get((channel, account))
        handler = getattr(live.channel, "webhook", None) if live is not None else None
        if live is None or not live.config.enabled or handler is None:
            raise NotFound(f"no webhook for channel account {channel}/{account}")
        response: WebhookResponse = await handler(live.config.account, request,
                                                  _Context(self, live))
        return response

    def _follow(self, account: AccountConfig, turn: Turn, target: Target) -> None:
        live = self._live.get((account.channel, account.account_id))
        caps = live.channel.capabilities if live is not None else None
        if live is None or caps is None \
                or not (caps.typing or caps.edit or account.policy.streaming == "block") \
                or len(self._followers) >= MAX_FOLLOWERS:
            turn.close()
            return
        lock = self._previews.setdefault(turn.run_id, asyncio.Lock())
        task = asyncio.get_running_loop().create_task(
            follow(live.channel, account, turn, target, self.engine.store, lock, self._blocks),
            name=f"follow:{turn.run_id}")
        self._followers.add(task)

        def done(_task: asyncio.Task[None]) -> None:
            self._followers.discard(task)
            self._previews.pop(turn.run_id, None)

        task.add_done_callback(done)

    # -- status ----------------------------------------------------------------------------

    async def status(self, *, probe: bool = False, timeout_s: float = 10.0) -> dict[str, Any]:
        """``channels.status`` in OpenClaw's shape."""
        generation = self.host.current
        channels = {cid: e.channel for cid, e in generation.registry.channels.items()}
        order = sorted(channels)
        accounts_out: dict[str, list[dict[str, Any]]] = {}
        summaries: dict[str, dict[str, Any]] = {}
        store = self.engine.store.channels
        for cid in order:
            rows = []
            for (channel, account_id), live in self._live.items():
                if channel != cid:
                    continue
                row = dict(live.snapshot)
                stats = await store.stats(cid, account_id)
                row.update(lastInboundAt=stats.last_inbound_at or row.get("lastInboundAt"),
                           lastOutboundAt=stats.last_outbound_at,
                           pendingDeliveries=stats.pending, failedDeliveries=stats.failed)
                if stats.last_failure:
                    row["lastDeliveryError"] = stats.last_failure
                if probe and live.config.enabled and live.config.account is not None:
                    row["probe"] = await self._probe(live, timeout_s)
                    row["lastProbeAt"] = now_ms()
                rows.append(row)
            accounts_out[cid] = rows
            summaries[cid] = {"configured": cid in self.settings.config.channels,
                              "running": any(r.get("running") for r in rows),
                              "accounts": len(rows)}
        for cid, problem in self._problems.items():
            summaries[cid] = {"configured": True, "running": False, "accounts": 0,
                              "error": problem}
            accounts_out.setdefault(cid, [])
        labels = {cid: getattr(channels[cid], "label", cid) for cid in order}
        labels.update({cid: cid for cid in self._problems})
        ids = order + sorted(self._problems)
        return {"ts": now_ms(), "channelOrder": ids, "channelLabels": labels,
                "channelMeta": [{"id": cid, "label": labels[cid], "detailLabel": labels[cid]}
                                for cid in ids],
                "channels": summaries, "channelAccounts": accounts_out,
                "channelDefaultAccountId": {cid: (rows[0]["accountId"] if rows else "default")
                                            for cid, rows in accounts_out.items()}}

    async def _probe(self, live: _Live, timeout_s: float) -> dict[str, Any]:
        assert live.config.account is not None
        try:
            return await asyncio.wait_for(live.channel.probe(live.config.account), timeout_s)
        except TimeoutError:
            return {"ok": False, "error": f"probe timed out after {timeout_s:g} s"}
        except Exception as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def logout(self, channel: str, account: str | None) -> dict[str, Any]:
        """Stop an account's monitor and forget its session on the platform side when the
        plugin can (``channels.logout``)."""
        matches = [live for (cid, aid), live in self._live.items()
                   if cid == channel and (account is None or aid == account)]
        if not matches:
            raise NotFound(f"no channel account {channel}/{account or '*'}")
        for live in matches:
            if live.task is not None:
                live.task.cancel()
                await asyncio.gather(live.task, return_exceptions=True)
                live.task = None
            logout = getattr(live.channel, "logout", None)
            if logout is not None and live.config.account is not None:
                await logout(live.config.account)
            live.snapshot.update(running=False, connected=False, loggedOut=True)
        return {"channel": channel, "accountId": account or matches[0].config.account_id,
                "cleared": True}
