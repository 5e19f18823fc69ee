"""What clients show around a chat: ``agent.identity.get``, ``commands.list``, ``chat.metadata``,
``system.info``, ``config.schema`` and ``diagnostics.lanes``; and the methods of concepts
clawgate does not have yet (approvals, questions, tasks, updates), which answer the empty truth
in OpenClaw's shapes.

Everything here is read from the gateway as it is: the roster, the plugin generation captured
for the request, the engine's lanes, the machine. Blocking reads (``/proc``, disk usage) run in
a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from clawgate.agents import commands
from clawgate.config import Config
from clawgate.diagnostics.metrics import rss_bytes
from clawgate.errors import RpcError
from clawgate.gateway.methods.agents import catalogue
from clawgate.gateway.protocol import NoParams, Params, parse_params
from clawgate.gateway.rpc import ADMIN, APPROVALS, READ, WRITE, CallContext, CoreMethod
from clawgate.plugins.registry import Command
from clawgate.types import now_ms

Name = Annotated[str, Field(min_length=1)]


class IdentityParams(Params):
    agentId: Name | None = None
    sessionKey: str | None = None


class CommandsParams(Params):
    sessionKey: Name | None = None
    agentId: Name | None = None
    provider: Name | None = None
    scope: Literal["text", "native", "both"] | None = None
    includeArgs: bool = False


class MetadataParams(Params):
    agentId: Name | None = None
    authProfileId: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    sessionKey: Name | None = None


class ListingParams(Params):
    """Params of the approval lists (OpenClaw's take optional filters)."""

    sessionKey: Name | None = None
    agentId: Name | None = None


class TasksParams(Params):
    status: str | list[str] | None = None
    agentId: Name | None = None
    sessionKey: Name | None = None
    limit: int | None = Field(default=None, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=512)
    sortBy: Literal["updatedAt", "endedAt"] | None = None


class UpdateStatusParams(Params):
    refreshCheckout: bool = False


# -- agents and commands ----------------------------------------------------------------------

async def agent_identity(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(IdentityParams, raw, "agent.identity.get")
    agent, _ = ctx.gateway.runtime.engine.session_key(p.sessionKey or None, p.agentId)
    out: dict[str, Any] = {"agentId": agent.id, "name": agent.name,
                           "nameSource": "config" if agent.name != agent.id else "default"}
    if agent.identity.get("emoji"):
        out["emoji"] = agent.identity["emoji"]
    if agent.identity.get("avatar"):
        avatar = agent.identity["avatar"]
        out.update(avatar=avatar, avatarSource="config", avatarStatus=(
            "data" if avatar.startswith("data:") else
            "remote" if avatar.startswith(("http://", "https://")) else "local"))
    else:
        out["avatarStatus"] = "none"
    return out


def command_rows(plugin_commands: dict[str, Command] | Any) -> list[dict[str, Any]]:
    """The built-in and plugin slash commands in OpenClaw's ``commands.list`` rows."""
    rows = []
    for row in commands.catalogue(plugin_commands):
        name = row["name"]
        plugin = row["source"] == "plugin"
        rows.append({"name": name, "textAliases": [f"/{name}"],
                     "description": row["description"][:2000],
                     "source": "plugin" if plugin else "native",
                     "category": "tools" if plugin else "session", "scope": "text",
                     # plugin handlers get the text after the name; the built-ins take none
                     "acceptsArgs": plugin})
    return rows


async def commands_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(CommandsParams, raw, "commands.list")
    ctx.gateway.runtime.engine.session_key(p.sessionKey, p.agentId)  # unknown agent: error
    rows = [] if p.scope == "native" else command_rows(ctx.generation.registry.commands)
    return {"commands": rows}


async def chat_metadata(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """What a chat composer needs for a session: its models and commands."""
    p = parse_params(MetadataParams, raw, "chat.metadata")
    agent, _ = ctx.gateway.runtime.engine.session_key(p.sessionKey, p.agentId)
    out: dict[str, Any] = {"agentId": agent.id, "models": catalogue(ctx),
                           "commands": command_rows(ctx.generation.registry.commands),
                           "swarmEnabled": False}
    if p.sessionKey is not None:
        out["runtimeSelectionLocked"] = False
    return out


# -- the machine and the config --------------------------------------------------------------

def _machine(state_dir: str) -> dict[str, Any]:
    """Host facts that need a blocking read (memory, disk). Runs in a worker thread."""
    out: dict[str, Any] = {}
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        out["memoryTotalBytes"] = os.sysconf("SC_PHYS_PAGES") * page
        out["memoryFreeBytes"] = os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        out.update(memoryTotalBytes=0, memoryFreeBytes=0)
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), None)
        if model:
            out["cpuModel"] = model
    except OSError:
        pass
    try:
        disk = shutil.disk_usage(state_dir)
        out.update(diskPath=state_dir, diskTotalBytes=disk.total, diskAvailableBytes=disk.free)
    except OSError:
        pass
    rss = rss_bytes()
    # Python has no separate JS-style heap: the process's resident memory stands for both.
    out["processMemory"] = {"rssBytes": rss, "heapUsedBytes": rss, "heapTotalBytes": rss}
    return out


async def system_info(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "system.info")
    gateway = ctx.gateway
    uname = platform.uname()
    host = socket.gethostname()
    out: dict[str, Any] = {
        "machineName": host, "hostname": host, "platform": sys.platform,
        "release": uname.release, "arch": uname.machine,
        "osLabel": f"{uname.system} {uname.release}".strip(),
        "nodeVersion": f"python {platform.python_version()}",  # the runtime, in OpenClaw's slot
        "pid": os.getpid(), "uptimeMs": gateway.uptime_ms, "cpuCount": os.cpu_count() or 1,
        "port": gateway.settings.config.gateway.port,
    }
    if hasattr(os, "getloadavg"):
        out["loadAverage"] = list(os.getloadavg())
    out.update(await asyncio.to_thread(_machine, str(gateway.settings.state_dir)))
    return out


def config_json_schema(ctx: CallContext) -> dict[str, Any]:
    """``Config``'s JSON Schema with each enabled plugin's ``configSchema`` placed under
    ``plugins.entries.<id>.config`` (channel plugins list their channels)."""
    schema = Config.model_json_schema()
    defs = schema.get("$defs", {})
    entries: dict[str, Any] = {}
    for meta in ctx.gateway.runtime.host.snapshot.enabled():
        if meta.id is None or meta.manifest is None:
            continue
        entry: dict[str, Any] = {
            "type": "object", "additionalProperties": False,
            "properties": {"enabled": {"type": ["boolean", "null"]},
                           "config": meta.manifest.config_schema}}
        if meta.manifest.channels:
            entry["x-clawgate-channels"] = list(meta.manifest.channels)
        entries[meta.id] = entry
    plugins = defs.get("PluginsConfig")
    if plugins is not None and entries:
        current = plugins["properties"].get("entries", {})
        plugins["properties"]["entries"] = {**current, "properties": entries}
    return schema


async def config_schema(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "config.schema")
    return {"schema": config_json_schema(ctx), "uiHints": {},
            "version": ctx.gateway.version,
            "generatedAt": datetime.now(UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")}


# -- lanes -----------------------------------------------------------------------------------

async def diagnostics_lanes(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """The engine's lanes as they are now: the global lane (``max_concurrent``) and the
    per-session lanes summed as OpenClaw's dynamic lanes."""
    parse_params(NoParams, raw, "diagnostics.lanes")
    lanes = ctx.gateway.runtime.engine.lanes
    engine = ctx.gateway.settings.config.engine
    keys = lanes.keys()
    queued = {k: sum(r.cancel_reason is None for r in lanes.queued(k)) for k in keys}
    main = {"lane": "main", "queuedCount": sum(queued.values()), "activeCount": lanes.running,
            "maxConcurrent": engine.max_concurrent, "draining": ctx.gateway.draining,
            "generation": ctx.generation.id, "blockedBy": None}
    dynamic = None
    if keys:
        dynamic = {"laneCount": len(keys),
                   "activeCount": sum(lanes.active(k) is not None for k in keys),
                   "queuedCount": sum(queued.values()),
                   "queuedLaneCount": sum(1 for n in queued.values() if n)}
    return {"ts": now_ms(), "lanes": [main], "dynamic": dynamic}


# -- concepts clawgate does not have yet -----------------------------------------------------

async def empty_approvals(ctx: CallContext, raw: Any) -> list[Any]:
    """No tool asks for approval here: the list is empty."""
    parse_params(ListingParams, raw, ctx.method)
    return []


async def question_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "question.list")
    return {"questions": []}


async def tasks_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(TasksParams, raw, "tasks.list")
    return {"tasks": []}


async def update_status(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Updates are not managed by this gateway: no update run, nothing known to be newer."""
    parse_params(UpdateStatusParams, raw, "update.status")
    return {"sentinel": None, "updateAvailable": None}


async def update_run(ctx: CallContext, raw: Any) -> None:
    raise RpcError("UNAVAILABLE", "updates are not managed by this gateway; upgrade clawgate "
                   "with your package manager", details={"reason": "not-managed"})


METHODS = (
    CoreMethod("agent.identity.get", READ, agent_identity),
    CoreMethod("commands.list", READ, commands_list),
    CoreMethod("chat.metadata", READ, chat_metadata),
    CoreMethod("system.info", READ, system_info),
    CoreMethod("config.schema", READ, config_schema),
    CoreMethod("diagnostics.lanes", READ, diagnostics_lanes),
    CoreMethod("exec.approval.list", APPROVALS, empty_approvals),
    CoreMethod("plugin.approval.list", APPROVALS, empty_approvals),
    CoreMethod("openclaw.approval.list", APPROVALS, empty_approvals),
    CoreMethod("question.list", WRITE, question_list),
    CoreMethod("tasks.list", READ, tasks_list),
    CoreMethod("update.status", ADMIN, update_status),
    CoreMethod("update.run", ADMIN, update_run),
)
