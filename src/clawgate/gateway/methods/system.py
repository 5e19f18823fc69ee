"""System methods: ``health``, ``status``, ``system-presence``, ``plugins.list``,
``plugins.reload``, ``config.get``, ``logs.tail`` and ``metrics.series``; plus the ``hello-ok``
payload.

``logs.tail`` reads the gateway's log file when one is set (``Gateway.log_file``); otherwise it
tails the gateway's in-memory ring of recent ``clawgate.*`` log records (:mod:`..logring`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from pydantic import Field

from clawgate.cron import heartbeat
from clawgate.cron.heartbeat import Heartbeat
from clawgate.errors import Unavailable
from clawgate.gateway.logring import REDACTED, URL_USERINFO, tail_file, tail_ring
from clawgate.gateway.protocol import NoParams, Params, parse_params
from clawgate.gateway.rpc import ADMIN, READ, CallContext, CoreMethod, Services
from clawgate.sessions import keys
from clawgate.sessions.listing import ListQuery
from clawgate.types import now_ms

EVENTS = ("connect.challenge", "agent", "chat", "tick", "presence", "health", "shutdown",
          "sessions.changed", "session.message", "logs.appended", "channels.pairing", "cron",
          "heartbeat")
# features.capabilities (OpenClaw's GATEWAY_SERVER_CAPS), only for what clawgate does:
# models.list answers the published catalogue (rows with ``available``) and takes agentId /
# sessionKey; chat.metadata takes sessionKey; sessions.patch takes unread with
# expectedMarkedUnreadAt. Not "model-catalog-snapshot": no models.snapshot event is pushed.
CAPABILITIES = ("published-model-catalog", "session-scoped-chat-metadata",
                "session-scoped-model-catalog", "session-unread-ack-contract")
SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "auth", "credential", "cookie",
                "dsn", "session_id", "private")
NOT_SECRET = frozenset({"main_key", "api_key_env"})  # names of things, not secrets
# Leaves under a secret-looking table that say how, not what (gateway.auth.mode).
PUBLIC_LEAVES = frozenset({"mode"})


class ReloadParams(Params):
    force: bool = False


class HealthParams(Params):
    probe: bool = False


class SeriesParams(Params):
    sinceMs: int | None = Field(default=None, ge=0)


class LogsTailParams(Params):
    cursor: int | None = Field(default=None, ge=0)
    limit: int = Field(default=500, ge=1, le=5000)
    maxBytes: int = Field(default=250_000, ge=1, le=1_000_000)


# -- hello-ok, presence, health -----------------------------------------------------------------

async def hello(gateway: Services, *, conn_id: str, protocol: int, role: str,
                scopes: frozenset[str], methods: list[str],
                joining: dict[str, Any] | None) -> dict[str, Any]:
    """The ``hello-ok`` payload for a connection that passed the handshake (reference §2.2);
    its presence snapshot already lists the ``joining`` connection's own entry."""
    settings = gateway.settings
    main = settings.config.session.main_key
    default = gateway.runtime.engine.roster.default
    policy = gateway.policy
    return {
        "type": "hello-ok",
        "protocol": protocol,
        "server": {"version": gateway.version, "connId": conn_id},
        "features": {"methods": methods, "events": list(EVENTS),
                     "capabilities": list(CAPABILITIES)},
        "snapshot": {
            "presence": [*gateway.hub.presence(), *([joining] if joining else [])],
            "health": await health_summary(gateway),
            "stateVersion": dict(gateway.hub.versions),
            "uptimeMs": gateway.uptime_ms,
            "configPath": str(settings.config_path),
            "stateDir": str(settings.state_dir),
            "sessionDefaults": {"defaultAgentId": default.id, "mainKey": main,
                                "mainSessionKey": keys.main_key(default.id, main),
                                "scope": "per-sender"},
            "authMode": gateway.auth_mode,
        },
        "auth": {"role": role, "scopes": sorted(scopes)},
        "policy": {"maxPayload": policy.max_payload, "maxBufferedBytes": policy.connection_buffer,
                   "tickIntervalMs": int(policy.tick_interval_s * 1000)},
    }


def _recent(rows: tuple[dict[str, Any], ...], now: int) -> list[dict[str, Any]]:
    return [{"key": r["key"], "updatedAt": r.get("updatedAt"),
             "age": max(0, now - r.get("updatedAt", now))} for r in rows]


def _heartbeat(beat: Heartbeat | None, running: bool) -> dict[str, Any]:
    """An agent's heartbeat as configured; ``enabled`` says whether it runs now (a gateway
    with heartbeats on — ``set-heartbeats`` — and an interval for this agent)."""
    if beat is None:
        return {"enabled": False, "every": "0m", "everyMs": None, "prompt": "",
                "target": "none", "ackMaxChars": 0}
    return {"enabled": running, "every": f"{beat.every_ms // 60_000}m",
            "everyMs": beat.every_ms, "prompt": beat.prompt, "target": beat.target,
            "ackMaxChars": beat.ack_max_chars}


async def health_summary(gateway: Services) -> dict[str, Any]:
    """HealthSummary (reference §2.3): reads the store only — no plugin work."""
    started = time.perf_counter()
    store, roster = gateway.runtime.store, gateway.runtime.engine.roster
    agents = list(roster)
    count, page, pages = await asyncio.gather(
        store.count(), store.list_sessions(ListQuery(limit=5)),
        asyncio.gather(*(store.list_sessions(ListQuery(agent_id=a.id, limit=5))
                         for a in agents)))
    beats = heartbeat.plan(gateway.settings)
    cron = gateway.runtime.cron
    running = cron is not None and cron.leading and cron.heartbeats.enabled
    now = now_ms()
    rows = [{"agentId": a.id, "name": a.name, "isDefault": a is roster.default,
             "heartbeat": _heartbeat(beats.get(a.id), running),
             "sessions": {"path": str(store.path), "count": own.total,
                          "recent": _recent(own.rows, now)}}
            for a, own in zip(agents, pages, strict=True)]
    return {
        "ok": True, "ts": now, "durationMs": int((time.perf_counter() - started) * 1000),
        "heartbeatSeconds": _heartbeat_seconds(gateway), "defaultAgentId": roster.default.id,
        "agents": rows,
        "sessions": {"path": str(store.path), "count": count, "recent": _recent(page.rows, now)},
        "channels": {}, "channelOrder": [], "channelLabels": {},
    }


def _heartbeat_seconds(gateway: Services) -> int:
    cron = gateway.runtime.cron
    try:
        return 0 if cron is None else cron.heartbeats.seconds()
    except Unavailable:  # not started yet (or stopped)
        return 0


async def health(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(HealthParams, raw, "health")
    return await health_summary(ctx.gateway)


async def status(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "status")
    gateway = ctx.gateway
    runtime = gateway.runtime
    engine, store = runtime.engine, runtime.store
    records = ctx.generation.registry.records.values()
    replicas = await runtime.replicas()
    return {
        "ok": True, "version": gateway.version, "uptimeMs": gateway.uptime_ms,
        "defaultAgentId": engine.roster.default.id,
        "agents": [a.describe() for a in engine.roster],
        "sessions": {"count": await store.count(), "path": str(store.path)},
        "plugins": {"generation": ctx.generation.id, "total": len(records),
                    "loaded": sum(r.status == "loaded" for r in records),
                    "errors": sum(r.status == "error" for r in records),
                    "methods": sorted(ctx.generation.registry.methods)},
        "connections": len(gateway.hub.connections),
        "counters": gateway.runtime.metrics.counters(),
        # Extra fields (OpenClaw clients ignore them): the gateways on this store and who
        # owns what (``owns``: lease names — ``cron``, ``channel.<channel>.<account>``).
        "replicaId": runtime.replica.id,
        "replicas": replicas,
        "cronLeader": next((r["id"] for r in replicas if "cron" in r["owns"]), None),
    }


async def system_presence(ctx: CallContext, raw: Any) -> list[dict[str, Any]]:
    parse_params(NoParams, raw, "system-presence")
    return ctx.gateway.hub.presence()


async def plugins_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "plugins.list")
    registry = ctx.generation.registry
    return {"generation": ctx.generation.id,
            "plugins": [r.as_dict() for r in registry.records.values()],
            "diagnostics": [d.as_dict() for d in registry.diagnostics]}


async def plugins_reload(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Re-read the config and rescan plugins; a changed plan swaps in a new generation."""
    params = parse_params(ReloadParams, raw, "plugins.reload")
    generation, changed = await ctx.gateway.reload_plugins(force=params.force)
    registry = generation.registry
    return {"ok": True, "changed": changed, "generation": generation.id,
            "plugins": [r.as_dict() for r in registry.records.values()],
            "diagnostics": [d.as_dict() for d in registry.diagnostics]}


# -- config.get -----------------------------------------------------------------------------------

def redact(value: Any) -> Any:
    """A copy fit to show an operator: the values of secret-looking keys are replaced (whatever
    their type; booleans and nulls kept), and credentials inside URLs (``user:pw@``) removed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = str(key).lower()
            # "max_tokens" counts tokens; it is not one.
            secret = (name not in NOT_SECRET and not name.endswith("tokens")
                      and any(w in name for w in SECRET_WORDS))
            keep = item is None or isinstance(item, bool)
            out[key] = REDACTED if secret and not keep and not isinstance(item, dict | list) \
                else redact(item) if not secret else _redact_all(item)
        return out
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return URL_USERINFO.sub(r"\1" + REDACTED + "@", value)
    return value


def _redact_all(value: Any) -> Any:
    """Everything under a secret-looking key: structure kept, every leaf replaced."""
    if isinstance(value, dict):
        return {k: v if str(k).lower() in PUBLIC_LEAVES and isinstance(v, str)
                else _redact_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_all(v) for v in value]
    return value if value is None or isinstance(value, bool) else REDACTED


async def config_get(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "config.get")
    settings = ctx.gateway.settings
    path = settings.config_path

    def read() -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    data = await asyncio.to_thread(read)
    return {"path": str(path), "exists": data is not None, "valid": True,
            "config": redact(settings.config.model_dump(mode="json")),
            "hash": hashlib.sha256(data or b"").hexdigest()}


# -- logs -----------------------------------------------------------------------------------------

async def logs_tail(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(LogsTailParams, raw, "logs.tail")
    log_file = ctx.gateway.log_file
    if log_file is not None:
        return await asyncio.to_thread(tail_file, log_file, p.cursor, p.limit, p.maxBytes)
    return tail_ring(ctx.gateway.log_ring, p.cursor, p.limit, p.maxBytes)


# -- metrics.series -------------------------------------------------------------------------------

async def metrics_series(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """The gateway's ring of metric samples (what the Control UI's Overview charts draw)."""
    p = parse_params(SeriesParams, raw, "metrics.series")
    series = ctx.gateway.series
    return {"ts": now_ms(), "intervalMs": int(series.interval_s * 1000),
            "capacity": series.capacity, "startedAt": ctx.gateway.started_at,
            "samples": [s.wire() for s in series.samples(p.sinceMs)],
            "current": series.current(now_ms()).wire()}


METHODS = (
    CoreMethod("health", READ, health),
    CoreMethod("status", READ, status),
    CoreMethod("system-presence", READ, system_presence),
    CoreMethod("plugins.list", READ, plugins_list),
    CoreMethod("plugins.reload", ADMIN, plugins_reload),
    CoreMethod("config.get", READ, config_get),  # redacted, so read access (as in OpenClaw)
    CoreMethod("logs.tail", READ, logs_tail),
    CoreMethod("metrics.series", READ, metrics_series),
)
