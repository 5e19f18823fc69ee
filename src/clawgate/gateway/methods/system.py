"""System methods: ``health``, ``status``, ``system-presence``, ``plugins.list``,
``config.get`` and ``logs.tail``; plus the ``hello-ok`` payload and the in-memory log ring.

``logs.tail`` reads the gateway's log file when one is set (``gateway.log_file``); otherwise
it tails a ring of the gateway's recent ``clawgate.*`` log records, kept by a logging handler
that the tick loop installs for the gateway's serving lifetime (one handler per gateway object,
removed when the gateway stops). Records below the loggers' configured level never reach it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import socket
import sys
import time
from collections import deque
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field

from clawgate.gateway.methods import ADMIN, READ, CallContext, CoreMethod, attached, method_names
from clawgate.gateway.protocol import Params, parse_params
from clawgate.gateway.ws import broadcast
from clawgate.sessions import keys
from clawgate.sessions.listing import ListQuery

if TYPE_CHECKING:
    from clawgate.gateway.app import Gateway
    from clawgate.gateway.ws import Connection

EVENTS = ("connect.challenge", "agent", "chat", "tick", "presence", "health", "shutdown",
          "sessions.changed")
REDACTED = "__REDACTED__"
SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "auth", "credential", "cookie",
                "dsn", "session_id", "private")
NOT_SECRET = frozenset({"main_key", "api_key_env"})  # names of things, not secrets
URL_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
LOG_RING_ATTR = "_clawgate_ws_log_ring"
LOG_RING_SIZE = 2000


class NoParams(Params):
    pass


class HealthParams(Params):
    probe: bool = False


class LogsTailParams(Params):
    cursor: int | None = Field(default=None, ge=0)
    limit: int = Field(default=500, ge=1, le=5000)
    maxBytes: int = Field(default=250_000, ge=1, le=1_000_000)


def now_ms() -> int:
    return int(time.time() * 1000)


# -- hello-ok, presence, health -----------------------------------------------------------------

async def hello(gateway: Gateway, conn: Connection) -> dict[str, Any]:
    """The ``hello-ok`` payload for a connection that passed the handshake (reference §2.2)."""
    from clawgate.gateway.ws import tick_interval

    settings = gateway.settings
    main = settings.config.session.main_key
    default = gateway.engine.roster.default
    health = await health_summary(gateway)
    return {
        "type": "hello-ok",
        "protocol": conn.protocol,
        "server": {"version": gateway.version(), "connId": conn.conn_id,
                   "host": socket.gethostname()},
        "features": {"methods": method_names(gateway.plugins.current), "events": list(EVENTS)},
        "snapshot": {
            "presence": presence(gateway, joining=conn),
            "health": health,
            "stateVersion": dict(versions(gateway)),
            "uptimeMs": gateway.uptime_ms,
            "configPath": str(settings.config_path),
            "stateDir": str(settings.state_dir),
            "sessionDefaults": {"defaultAgentId": default.id, "mainKey": main,
                                "mainSessionKey": keys.main_key(default.id, main),
                                "scope": "per-sender"},
            "authMode": gateway.credentials.mode,
        },
        "auth": {"role": conn.role, "scopes": sorted(conn.scopes)},
        "policy": {"maxPayload": conn.max_payload, "maxBufferedBytes": conn.max_bytes,
                   "tickIntervalMs": int(tick_interval(gateway) * 1000)},
    }


def versions(gateway: Gateway) -> dict[str, int]:
    """``stateVersion``: how often presence (and health) changed since start."""
    return attached(gateway, "_clawgate_ws_versions", lambda: {"presence": 0, "health": 0})


def announce_presence(gateway: Gateway) -> None:
    """A connection joined or left: bump the presence version and tell everyone."""
    versions(gateway)["presence"] += 1
    broadcast(gateway, "presence", {"presence": presence(gateway)})


def presence(gateway: Gateway, joining: Connection | None = None) -> list[dict[str, Any]]:
    """Presence entries: the gateway itself, then every authorized connection."""
    host = socket.gethostname()
    entries: list[dict[str, Any]] = [{
        "host": host, "version": gateway.version(), "platform": sys.platform,
        "mode": "gateway", "reason": "self", "text": f"Gateway: {host}", "ts": now_ms(),
    }]
    conns = [c for c in gateway.connections if c.authorized]
    if joining is not None and joining not in conns:
        conns.append(joining)
    for conn in conns:
        client = conn.client
        entry: dict[str, Any] = {"ip": conn.address, "reason": "connect", "ts": conn.connected_at,
                                 "roles": [conn.role], "scopes": sorted(conn.scopes)}
        if client is not None:
            entry.update(version=client.version, platform=client.platform, mode=client.mode)
            for name in ("deviceFamily", "modelIdentifier", "instanceId"):
                if getattr(client, name):
                    entry[name] = getattr(client, name)
            if client.displayName:
                entry["text"] = client.displayName
        entries.append(entry)
    return entries


async def health_summary(gateway: Gateway) -> dict[str, Any]:
    """HealthSummary (reference §2.3): reads the store only — no plugin work."""
    started = time.perf_counter()
    store = gateway.store
    count, page = await asyncio.gather(store.count(), store.list_sessions(ListQuery(limit=5)))
    now = now_ms()
    recent = [{"key": r["key"], "updatedAt": r.get("updatedAt"),
               "age": now - r.get("updatedAt", now)} for r in page.rows]
    return {
        "ok": True, "ts": now, "durationMs": round((time.perf_counter() - started) * 1000, 3),
        "heartbeatSeconds": 0, "defaultAgentId": gateway.engine.roster.default.id,
        "agents": [{"id": a.id, "name": a.name, "isDefault": a is gateway.engine.roster.default}
                   for a in gateway.engine.roster],
        "sessions": {"path": str(store.path), "count": count, "recent": recent},
        "channels": {}, "channelOrder": [], "channelLabels": {},
    }


async def health(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(HealthParams, raw, "health")
    return await health_summary(ctx.gateway)


async def status(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "status")
    gateway = ctx.gateway
    records = ctx.generation.registry.records.values()
    return {
        "ok": True, "version": gateway.version(), "uptimeMs": gateway.uptime_ms,
        "defaultAgentId": gateway.engine.roster.default.id,
        "agents": [a.describe() for a in gateway.engine.roster],
        "sessions": {"count": await gateway.store.count(), "path": str(gateway.store.path)},
        "plugins": {"generation": ctx.generation.id, "total": len(records),
                    "loaded": sum(r.status == "loaded" for r in records),
                    "errors": sum(r.status == "error" for r in records),
                    "methods": sorted(ctx.generation.registry.methods)},
        "connections": len(gateway.connections),
        "counters": gateway.metrics.counters(),
    }


async def system_presence(ctx: CallContext, raw: Any) -> list[dict[str, Any]]:
    parse_params(NoParams, raw, "system-presence")
    return presence(ctx.gateway)


async def plugins_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "plugins.list")
    registry = ctx.generation.registry
    return {"generation": ctx.generation.id,
            "plugins": [r.as_dict() for r in registry.records.values()],
            "diagnostics": [d.as_dict() for d in registry.diagnostics]}


async def plugins_reload(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Re-read the config and rescan plugins; a changed plan swaps in a new generation."""
    parse_params(NoParams, raw, "plugins.reload")
    generation, changed = await ctx.gateway.reload_plugins()
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
        return {k: _redact_all(v) for k, v in value.items()}
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

# Which gateway the current task works for: set by the gateway for its lifespan and for every
# request it serves (tasks inherit it), so one gateway's log ring skips another's records (I6).
SERVING: ContextVar[object | None] = ContextVar("clawgate_serving_gateway", default=None)


class LogRing(logging.Handler):
    """The newest ``capacity`` log records as JSON lines, numbered from 1: those of its own
    gateway, and untagged ones (plugin threads, libraries) that no gateway can claim."""

    def __init__(self, capacity: int = LOG_RING_SIZE, owner: object | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.lines: deque[tuple[int, str]] = deque(maxlen=capacity)
        self.last = 0
        self.owner = owner

    def filter(self, record: logging.LogRecord) -> bool:
        serving = SERVING.get()
        return (serving is None or serving is self.owner) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            line = orjson.dumps({"time": stamp.replace("+00:00", "Z"),
                                 "level": record.levelname.lower(), "subsystem": record.name,
                                 # credentials in URLs never reach a log reader
                                 "msg": URL_USERINFO.sub(r"\1" + REDACTED + "@",
                                                         record.getMessage())}).decode()
        except Exception:
            self.handleError(record)
            return
        self.last += 1  # emit runs under the handler's lock
        self.lines.append((self.last, line))

    def snapshot(self) -> tuple[list[tuple[int, str]], int]:
        with self.lock or _NO_LOCK:
            return list(self.lines), self.last


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def install_log_ring(gateway: Gateway) -> LogRing:
    """Attach this gateway's ring to the ``clawgate`` logger (once per gateway object)."""
    ring: LogRing | None = getattr(gateway, LOG_RING_ATTR, None)
    if ring is None:
        ring = LogRing(owner=gateway)
        setattr(gateway, LOG_RING_ATTR, ring)
    logger = logging.getLogger("clawgate")
    if ring not in logger.handlers:
        logger.addHandler(ring)
    return ring


def remove_log_ring(gateway: Gateway) -> None:
    ring: LogRing | None = getattr(gateway, LOG_RING_ATTR, None)
    if ring is not None:
        logging.getLogger("clawgate").removeHandler(ring)


def tail_ring(ring: LogRing, cursor: int | None, limit: int, max_bytes: int) -> dict[str, Any]:
    lines, last = ring.snapshot()
    first = lines[0][0] if lines else last + 1
    reset = cursor is not None and (cursor > last or cursor < first - 1)
    if cursor is None or reset:  # the newest lines that fit
        chosen: list[tuple[int, str]] = []
        used = 0
        for seq, line in reversed(lines[-limit:]):
            if used + len(line) + 1 > max_bytes:
                break
            chosen.append((seq, line))
            used += len(line) + 1
        chosen.reverse()
        truncated = len(chosen) < len(lines)
    else:  # the oldest lines after the cursor that fit
        after = [(s, line) for s, line in lines if s > cursor]
        chosen, used = [], 0
        for seq, line in after[:limit]:
            if used + len(line) + 1 > max_bytes:
                break
            chosen.append((seq, line))
            used += len(line) + 1
        truncated = len(chosen) < len(after)
    end = chosen[-1][0] if chosen else (last if cursor is None or reset else cursor)
    out: dict[str, Any] = {"file": "memory:clawgate", "cursor": end, "size": last,
                           "lines": [line for _, line in chosen]}
    if truncated:
        out["truncated"] = True
    if reset:
        out["reset"] = True
    return out


def tail_file(path: Path, cursor: int | None, limit: int, max_bytes: int) -> dict[str, Any]:
    """Complete lines of a log file; ``cursor`` is a byte offset. Blocking."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return {"file": str(path), "cursor": 0, "size": 0, "lines": []}
    reset = cursor is not None and cursor > size
    tail = cursor is None or reset
    start = max(0, size - max_bytes) if tail else int(cursor or 0)
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(min(max_bytes, size - start))
    skip = data.find(b"\n") + 1 if tail and start > 0 else 0
    end = data.rfind(b"\n") + 1
    body = data[skip:end] if end > skip else b""
    lines = body.decode("utf-8", "replace").splitlines()
    consumed = start + skip + len(body)
    truncated = consumed < size
    if len(lines) > limit:
        truncated = True
        if tail:
            lines = lines[-limit:]
        else:
            lines = lines[:limit]
            consumed = start + skip + sum(len(x.encode()) + 1 for x in lines)
    out: dict[str, Any] = {"file": str(path), "cursor": consumed, "size": size, "lines": lines}
    if truncated:
        out["truncated"] = True
    if reset:
        out["reset"] = True
    return out


async def logs_tail(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(LogsTailParams, raw, "logs.tail")
    log_file = getattr(ctx.gateway, "log_file", None)
    if log_file:
        return await asyncio.to_thread(tail_file, Path(log_file), p.cursor, p.limit, p.maxBytes)
    ring: LogRing = getattr(ctx.gateway, LOG_RING_ATTR, None) or LogRing()
    return tail_ring(ring, p.cursor, p.limit, p.maxBytes)


METHODS = (
    CoreMethod("health", READ, health),
    CoreMethod("status", READ, status),
    CoreMethod("system-presence", READ, system_presence),
    CoreMethod("plugins.list", READ, plugins_list),
    CoreMethod("plugins.reload", ADMIN, plugins_reload),
    CoreMethod("config.get", ADMIN, config_get),
    CoreMethod("logs.tail", READ, logs_tail),
)
