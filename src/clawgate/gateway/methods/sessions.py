"""Session methods: ``sessions.list``, ``.preview``, ``.patch``, ``.reset``, ``.delete`` and
``.resolve`` (reference §2.3, semantics §4).

``sessions.list`` goes through ``engine.list_sessions``: one SQL page and dict lookups in the
metadata snapshot captured once per call — it never loads plugins or rescans (I4, I7).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from pydantic import Field

from clawgate.agents.roster import ModelRef
from clawgate.errors import ClawgateError, SessionNotFound
from clawgate.gateway.protocol import Params, invalid, parse_params
from clawgate.gateway.rpc import READ, WRITE, CallContext, CoreMethod, Services
from clawgate.plugins.host import Generation
from clawgate.providers.base import text_of
from clawgate.sessions import keys
from clawgate.sessions.listing import DEFAULT_LIMIT, MAX_LIMIT, ListQuery
from clawgate.sessions.schema import COLUMN_BY_WIRE, SessionEntry
from clawgate.sessions.transcript import StoredMessage
from clawgate.types import QueueMode, now_ms

KeyText = Annotated[str, Field(min_length=1, max_length=512)]


class ListParams(Params):
    limit: int | None = Field(default=None, ge=1)
    offset: int = Field(default=0, ge=0, le=10_000_000)
    activeMinutes: float | None = Field(default=None, gt=0, le=1e9)  # ~1,900 years
    includeGlobal: bool = False
    includeUnknown: bool = False
    includeDerivedTitles: bool = False  # accepted for classic clients; titles not derived yet
    includeLastMessage: bool = False  # accepted for classic clients; previews not attached yet
    configuredAgentsOnly: bool = False  # every session belongs to a configured agent here
    label: str | None = None
    spawnedBy: str | None = None
    agentId: str | None = None
    search: str | None = Field(default=None, max_length=256)


class PreviewParams(Params):
    keys: list[str] = Field(min_length=1, max_length=64)
    limit: int = Field(default=12, ge=1, le=200)
    maxChars: int = Field(default=240, ge=1, le=20_000)


class PatchParams(Params):
    key: KeyText
    label: str | None = Field(default=None, max_length=512)
    model: str | None = Field(default=None, max_length=256)
    sendPolicy: Literal["allow", "deny"] | None = None
    queueMode: QueueMode | None = None
    thinkingLevel: str | None = Field(default=None, max_length=32)
    verboseLevel: str | None = Field(default=None, max_length=32)
    reasoningLevel: str | None = Field(default=None, max_length=32)
    responseUsage: Literal["on", "off", "tokens", "full"] | None = None


class ResetParams(Params):
    key: KeyText
    reason: Literal["new", "reset"] | None = None


class DeleteParams(Params):
    key: KeyText
    deleteTranscript: bool = True


class ResolveParams(Params):
    key: str | None = Field(default=None, min_length=1, max_length=512)
    sessionId: str | None = Field(default=None, min_length=1, max_length=128)
    label: str | None = Field(default=None, min_length=1, max_length=512)
    agentId: str | None = None
    spawnedBy: str | None = None
    includeGlobal: bool = True
    includeUnknown: bool = True


def entry_dict(entry: SessionEntry) -> dict[str, Any]:
    """A SessionEntry in OpenClaw's wire names (absent values omitted)."""
    out = entry.wire()
    out.pop("extra", None)
    out["sessionStartedAt"] = entry.started_at
    return out


async def find_by_session_id(gateway: Services, session_id: str) -> str | None:
    page = await gateway.runtime.store.list_sessions(ListQuery(
        search=session_id, include_global=True, include_unknown=True, limit=MAX_LIMIT))
    return next((r["key"] for r in page.rows if r.get("sessionId") == session_id), None)


def defaults(gateway: Services, generation: Generation, agent_id: str | None) -> dict[str, Any]:
    ref = gateway.runtime.engine.roster.get(agent_id).models[0]
    provider = generation.registry.provider(ref.provider)
    window = None
    if provider is not None:
        window = next((m.context_window for m in provider.models() if m.id == ref.model), None)
    return {"modelProvider": ref.provider, "model": ref.model, "contextTokens": window}


async def sessions_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(ListParams, raw, "sessions.list")
    gateway = ctx.gateway
    limit = min(p.limit or DEFAULT_LIMIT, MAX_LIMIT)
    query = ListQuery(agent_id=p.agentId, label=p.label, spawned_by=p.spawnedBy,
                      search=p.search, active_minutes=p.activeMinutes,
                      include_global=p.includeGlobal, include_unknown=p.includeUnknown,
                      limit=limit, offset=p.offset)
    page = await gateway.runtime.engine.list_sessions(query)
    return {"ts": now_ms(), "path": str(gateway.runtime.store.path), "count": len(page.rows),
            "totalCount": page.total, "offset": page.offset, "limitApplied": limit,
            "nextOffset": page.next_offset, "hasMore": page.has_more,
            "defaults": defaults(gateway, ctx.generation, p.agentId), "sessions": list(page.rows)}


def preview_text(message: StoredMessage, max_chars: int) -> str:
    text = text_of({"content": message.content})
    if not text and message.tool_calls:
        names = [str((c.get("function") or {}).get("name", "?")) for c in message.tool_calls]
        text = f"[tool calls: {', '.join(names)}]"
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


async def sessions_preview(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(PreviewParams, raw, "sessions.preview")
    engine = ctx.gateway.runtime.engine

    async def one(raw_key: str) -> dict[str, Any]:
        try:
            _, key = engine.session_key(raw_key)
            rows = await engine.store.transcript(key, limit=p.limit)
        except SessionNotFound:
            return {"key": raw_key, "status": "missing", "items": []}
        except ClawgateError:
            return {"key": raw_key, "status": "error", "items": []}
        items = [{"role": m.role, "text": preview_text(m, p.maxChars)} for m in rows
                 if not (m.extra or {}).get("silent")]  # the memory flush turn is not shown
        return {"key": key, "status": "ok" if items else "empty", "items": items}

    previews = await asyncio.gather(*(one(k) for k in p.keys))
    return {"ts": now_ms(), "previews": list(previews)}


def resolve_model(ctx: CallContext, key: str, text: str) -> tuple[str | None, str | None]:
    """(provider_override, model_override) for a patch's ``model``; the agent's own default
    model clears the override. The provider must be loaded in the current generation."""
    agent = ctx.gateway.runtime.engine.roster.get(keys.agent_of(key))
    ref = ModelRef.parse(text) if "/" in text else ModelRef(agent.models[0].provider, text)
    if ctx.generation.registry.provider(ref.provider) is None:
        raise invalid(f"model not allowed: {ref} (no loaded plugin provides {ref.provider!r})")
    if ref == agent.models[0]:
        return None, None
    return ref.provider, ref.model


async def sessions_patch(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(PatchParams, raw, "sessions.patch")
    gateway = ctx.gateway
    engine = gateway.runtime.engine
    agent, key = engine.session_key(p.key)
    fields: dict[str, Any] = {}
    wire: dict[str, Any] = {}
    for name in p.model_fields_set - {"key"}:
        wire[name] = getattr(p, name)
        if name == "model":
            provider, model = resolve_model(ctx, key, p.model) if p.model else (None, None)
            fields.update(provider_override=provider, model_override=model)
        else:
            fields[COLUMN_BY_WIRE[name].name] = getattr(p, name)
    entry = await engine.patch_session(key, agent_id=agent.id, wire=wire, **fields)
    out: dict[str, Any] = {"ok": True, "path": str(engine.store.path), "key": key,
                           "entry": entry_dict(entry)}
    if "model" in p.model_fields_set:
        ref = agent.models[0]
        out["resolved"] = {"modelProvider": entry.provider_override or ref.provider,
                           "model": entry.model_override or ref.model}
    return out


async def sessions_reset(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(ResetParams, raw, "sessions.reset")
    engine = ctx.gateway.runtime.engine
    agent, key = engine.session_key(p.key)
    entry = await engine.reset_session(key, agent_id=agent.id, reason=p.reason or "reset")
    return {"ok": True, "key": key, "entry": entry_dict(entry)}


async def sessions_delete(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(DeleteParams, raw, "sessions.delete")
    engine = ctx.gateway.runtime.engine
    agent, key = engine.session_key(p.key)
    deleted = await engine.delete_session(key, agent_id=agent.id)
    return {"ok": True, "key": key, "deleted": deleted, "archived": []}


async def sessions_resolve(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(ResolveParams, raw, "sessions.resolve")
    gateway = ctx.gateway
    engine, store = gateway.runtime.engine, gateway.runtime.store
    given = [n for n in ("key", "sessionId", "label") if getattr(p, n) is not None]
    if len(given) != 1:
        raise invalid("invalid sessions.resolve params: give exactly one of key, sessionId, "
                      "label")
    found: str | None
    if p.key is not None:
        _, key = engine.session_key(p.key, p.agentId)
        found = key if await store.get(key) is not None else None
    elif p.sessionId is not None:
        found = await find_by_session_id(gateway, p.sessionId)
    else:
        page = await store.list_sessions(ListQuery(
            label=p.label, agent_id=p.agentId, spawned_by=p.spawnedBy,
            include_global=p.includeGlobal, include_unknown=p.includeUnknown, limit=1))
        found = page.rows[0]["key"] if page.rows else None
    return {"ok": True, "key": found} if found else {"ok": False}


METHODS = (
    CoreMethod("sessions.list", READ, sessions_list),
    CoreMethod("sessions.preview", READ, sessions_preview),
    CoreMethod("sessions.resolve", READ, sessions_resolve),
    CoreMethod("sessions.patch", WRITE, sessions_patch),
    CoreMethod("sessions.reset", WRITE, sessions_reset),
    CoreMethod("sessions.delete", WRITE, sessions_delete),
)
