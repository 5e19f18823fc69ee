"""Session methods: ``sessions.list``, ``.preview``, ``.describe``, ``.patch``, ``.reset``,
``.delete`` and ``.resolve`` (reference §2.3, semantics §4).

``sessions.list`` goes through ``engine.list_sessions``: one SQL page and dict lookups in the
metadata snapshot captured once per call — it never loads plugins or rescans (I4, I7).

Params accept every field OpenClaw's schema accepts (and refuse others, as OpenClaw does). A
field whose concept clawgate has is honoured; the others are accepted and change nothing:
clawgate has no owners, pins, boards, projects or session groups, so filters on them match
what is true here (``pinned: true``, ``hasBoard: true`` and ``archived: true`` find nothing,
owner and creator filters see every session), and patch fields of features it lacks are kept
out of the store.
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
from clawgate.sessions.listing import DEFAULT_LIMIT, LISTED, MAX_LIMIT, ListQuery, SessionRow
from clawgate.sessions.schema import COLUMN_BY_WIRE, SessionEntry
from clawgate.sessions.transcript import StoredMessage
from clawgate.types import QueueMode, now_ms

KeyText = Annotated[str, Field(min_length=1, max_length=512)]
Name = Annotated[str, Field(min_length=1)]


class ProfileRelation(Params):
    profileId: Name
    relationship: Literal["owned", "created", "involving"]


class ListParams(Params):
    limit: int | None = Field(default=None, ge=1)
    offset: int = Field(default=0, ge=0, le=10_000_000)
    cursor: str | None = Field(default=None, min_length=1, max_length=1024)  # a nextCursor
    activeMinutes: float | None = Field(default=None, gt=0, le=1e9)  # ~1,900 years
    activeOnly: bool = False
    requireLastInteraction: bool = False
    sortBy: Literal["updatedAt", "lastInteractionAt", "activity"] | None = None
    includeGlobal: bool = False
    includeUnknown: bool = False
    excludeSubagents: bool = False
    excludeCron: bool = False
    excludeSystem: bool = False
    configuredAgentsOnly: bool = False  # every session belongs to a configured agent here
    includeDerivedTitles: bool = False  # accepted; titles are not derived yet
    includeLastMessage: bool = False  # accepted; previews are not attached yet
    includeActivitySummary: bool = False
    label: str | None = Field(default=None, min_length=1, max_length=512)
    projectId: Name | None = None
    workspaceDir: Name | None = None
    group: str | None = None
    pinned: bool | None = None
    boardFace: Literal["chat", "dashboard"] | None = None
    hasBoard: bool | None = None
    creatorId: Name | None = None
    ownerId: Name | None = None
    ownerFirst: bool = False
    involvingMe: bool = False
    profileRelation: ProfileRelation | None = None
    involvingProfileId: Name | None = None
    includePeople: bool = False
    spawnedBy: str | None = None
    agentId: str | None = None
    channel: str | None = Field(default=None, min_length=1, max_length=128)  # clawgate's own
    search: str | None = Field(default=None, max_length=256)
    archived: bool | Literal["all"] | None = None

    def finds_nothing(self) -> bool:
        """True when a filter asks for something no clawgate session has (a pin, a board, an
        archived row: a deleted session's row is gone, its messages kept)."""
        return self.pinned is True or self.hasBoard is True or self.archived is True


class PreviewParams(Params):
    keys: list[str] = Field(min_length=1, max_length=64)
    limit: int = Field(default=12, ge=1, le=200)
    maxChars: int = Field(default=240, ge=1, le=20_000)


class PatchParams(Params):
    key: KeyText
    agentId: Name | None = None
    label: str | None = Field(default=None, max_length=512)
    model: str | None = Field(default=None, max_length=256)
    sendPolicy: Literal["allow", "deny"] | None = None
    queueMode: QueueMode | None = None
    thinkingLevel: str | None = Field(default=None, max_length=32)
    verboseLevel: str | None = Field(default=None, max_length=32)
    reasoningLevel: str | None = Field(default=None, max_length=32)
    responseUsage: Literal["on", "off", "tokens", "full"] | None = None
    unread: bool | None = None
    expectedMarkedUnreadAt: float | None = Field(default=None, ge=0)
    # OpenClaw fields of features clawgate does not have: accepted, not stored.
    expectedSessionId: Name | None = None
    expectedLifecycleRevision: Name | None = None
    expectedPermissionMode: str | None = None
    expectedSandboxMode: str | None = None
    expectedNativeRuntimeConsent: str | None = None
    expectedToolOverrides: dict[str, Any] | None = None
    autoLabel: str | None = Field(default=None, max_length=512)
    icon: str | None = None
    color: str | None = None
    category: str | None = Field(default=None, max_length=512)
    boardFace: Literal["chat", "dashboard"] | None = None
    boardPresentation: Literal["split", "expanded"] | None = None
    statusNote: str | None = Field(default=None, max_length=120)
    attention: Literal["hand", "key", "alert", "flag", "lock", "hourglass"] | None = None
    ttlMinutes: int | None = Field(default=None, ge=1, le=120)
    archived: bool | None = None
    pinned: bool | None = None
    contextWindow: str | None = None
    fastMode: bool | Literal["auto"] | None = None
    toolOverrides: dict[str, Any] | None = None
    traceLevel: str | None = None
    elevatedLevel: str | None = None
    execHost: str | None = None
    execSecurity: str | None = None
    execAsk: str | None = None
    execNode: str | None = None
    permissionMode: Literal["read-only", "guarded", "workspace", "full"] | None = None
    sandboxMode: Literal["off"] | None = None
    nativeRuntimeConsent: str | None = None
    agentRuntime: str | None = None
    completionOwnerSessionKey: str | None = None
    inheritedToolPolicyVersion: Literal[1] | None = None
    inheritedToolAllow: list[str] | None = None
    inheritedToolDeny: list[str] | None = None
    groupActivation: Literal["mention", "always"] | None = None


# Patch fields stored in session columns (the rest are accepted and not stored, or handled).
STORED_PATCH = frozenset({"label", "model", "sendPolicy", "queueMode", "thinkingLevel",
                          "verboseLevel", "reasoningLevel", "responseUsage"})


class DescribeParams(Params):
    key: KeyText
    agentId: Name | None = None
    includeDerivedTitles: bool = False
    includeLastMessage: bool = False


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
    extra = out.pop("extra", None) or {}
    out["sessionStartedAt"] = entry.started_at
    out.update(read_state(extra))
    return out


def read_state(extra: dict[str, Any]) -> dict[str, Any]:
    """The session's read state (``unread``, ``markedUnreadAt``), kept in ``extra``."""
    return {"unread": bool(extra.get("unread", False)),
            "markedUnreadAt": extra.get("markedUnreadAt")}


def session_row(gateway: Services, entry: SessionEntry) -> SessionRow:
    """The session as a ``sessions.list`` row, plus its live run state (``hasActiveRun``,
    ``activeRunIds``, ``status: "running"`` while a run is active) and read state."""
    row: SessionRow = {}
    for col in LISTED:
        value = getattr(entry, col.name)
        if value is not None:
            row[col.wire] = value
    row["kind"] = keys.row_kind(entry.key, entry.chat_type)
    row.update(read_state(entry.extra or {}))
    lanes = gateway.runtime.engine.lanes
    active = lanes.active(entry.key)
    queued = [r.run_id for r in lanes.queued(entry.key) if r.cancel_reason is None]
    row["hasActiveRun"] = active is not None
    row["activeRunIds"] = ([active.run_id] if active else []) + queued
    if active is not None:
        row["status"] = "running"
    return row


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


async def list_page(ctx: CallContext, p: ListParams) -> dict[str, Any]:
    """The ``sessions.list`` payload for parsed params (``sessions.subscribe`` shares it)."""
    gateway = ctx.gateway
    engine = gateway.runtime.engine
    limit = min(p.limit or DEFAULT_LIMIT, MAX_LIMIT)
    if p.agentId is not None:
        engine.roster.get(p.agentId)  # an unknown agent is an error, not an empty page
    only: tuple[str, ...] | None = None
    if p.activeOnly:
        only = tuple(engine.lanes.active_keys())
    if p.finds_nothing() or only == ():
        rows: list[SessionRow] = []
        total, offset, more, next_offset = 0, p.offset, False, None
        next_cursor, capped = None, False
        if p.cursor is not None:  # still checked: a bad cursor is an error on any page
            ListQuery(cursor=p.cursor, offset=p.offset)
    else:
        query = ListQuery(agent_id=p.agentId, label=p.label, spawned_by=p.spawnedBy,
                          channel=p.channel, search=p.search, active_minutes=p.activeMinutes,
                          include_global=p.includeGlobal, include_unknown=p.includeUnknown,
                          exclude_cron=p.excludeCron, exclude_subagents=p.excludeSubagents,
                          keys=only, limit=limit, offset=p.offset, cursor=p.cursor)
        page = await engine.list_sessions(query)
        rows, total, offset = list(page.rows), page.total, page.offset
        more, next_offset = page.has_more, page.next_offset
        next_cursor, capped = page.next_cursor, page.total_capped
    for row in rows:  # live run state, from memory (no store work)
        active = engine.lanes.active(row["key"])
        row["hasActiveRun"] = active is not None
        if active is not None:
            row["status"] = "running"
    return {"ts": now_ms(), "path": str(gateway.runtime.store.path), "count": len(rows),
            "totalCount": total, "offset": offset, "limitApplied": limit,
            "nextOffset": next_offset, "nextCursor": next_cursor, "hasMore": more,
            "totalCountCapped": capped,
            "defaults": defaults(gateway, ctx.generation, p.agentId), "sessions": rows}


async def sessions_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    return await list_page(ctx, parse_params(ListParams, raw, "sessions.list"))


async def sessions_describe(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """``{session: row}`` of one session, or ``{session: null}`` when there is none."""
    p = parse_params(DescribeParams, raw, "sessions.describe")
    engine = ctx.gateway.runtime.engine
    _, key = engine.session_key(p.key, p.agentId)
    entry = await engine.store.get(key)
    return {"session": session_row(ctx.gateway, entry) if entry is not None else None}


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


def unread_patch(p: PatchParams, current: dict[str, Any]) -> dict[str, Any] | None:
    """The new ``extra`` for an ``unread`` patch, or None when it must not apply: marking read
    with an ``expectedMarkedUnreadAt`` that is no longer the current mark (the session was
    marked unread again since the client looked) leaves it unread."""
    if "unread" not in p.model_fields_set:
        return None
    extra = dict(current)
    if p.unread:
        extra.update(unread=True, markedUnreadAt=now_ms())
        return extra
    if ("expectedMarkedUnreadAt" in p.model_fields_set
            and p.expectedMarkedUnreadAt != current.get("markedUnreadAt")):
        return None
    extra.pop("markedUnreadAt", None)
    extra["unread"] = False
    return extra


async def sessions_patch(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(PatchParams, raw, "sessions.patch")
    gateway = ctx.gateway
    engine = gateway.runtime.engine
    agent, key = engine.session_key(p.key, p.agentId)
    fields: dict[str, Any] = {}
    wire: dict[str, Any] = {}
    for name in p.model_fields_set & STORED_PATCH:
        wire[name] = getattr(p, name)
        if name == "model":
            provider, model = resolve_model(ctx, key, p.model) if p.model else (None, None)
            fields.update(provider_override=provider, model_override=model)
        else:
            fields[COLUMN_BY_WIRE[name].name] = getattr(p, name)
    if "unread" in p.model_fields_set:
        current = await engine.store.get(key)
        extra = unread_patch(p, (current.extra if current else None) or {})
        if extra is not None:
            fields["extra"] = extra
            wire["unread"] = extra["unread"]
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
    CoreMethod("sessions.describe", READ, sessions_describe),
    CoreMethod("sessions.resolve", READ, sessions_resolve),
    CoreMethod("sessions.patch", WRITE, sessions_patch),
    CoreMethod("sessions.reset", WRITE, sessions_reset),
    CoreMethod("sessions.delete", WRITE, sessions_delete),
)
