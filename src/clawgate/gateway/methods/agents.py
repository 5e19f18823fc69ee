"""Agent methods: ``agent`` (two responses), ``agent.wait``, ``agents.list``, ``models.list``,
``models.authStatus``.

``agent`` answers ``{runId, status: "accepted", acceptedAt}`` once the message is durable, then
— with the same request id — ``{runId, status: "ok"|"error", summary, result}`` when the run
ends (OpenClaw clients pass ``expectFinal`` to wait for the second one).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

from clawgate.agents.lanes import RunResult
from clawgate.agents.roster import Agent
from clawgate.agents.turn import Submission
from clawgate.gateway.methods.chat import user_content
from clawgate.gateway.methods.sessions import find_by_session_id
from clawgate.gateway.protocol import NoParams, Params, invalid, parse_params
from clawgate.gateway.rpc import ADMIN, READ, WRITE, CallContext, CoreMethod
from clawgate.providers.base import AuthAware
from clawgate.providers.profiles import reset_auth
from clawgate.types import now_ms

WAIT_DEFAULT_MS = 30_000


class AgentParams(Params):
    message: str = Field(max_length=1_000_000)
    idempotencyKey: str = Field(min_length=1, max_length=256)
    agentId: str | None = None
    sessionKey: str | None = Field(default=None, max_length=512)
    sessionId: str | None = None
    to: str | None = None
    replyTo: str | None = None
    channel: str | None = None
    accountId: str | None = None
    threadId: str | int | None = None
    thinking: str | None = None
    deliver: bool | None = None
    bestEffortDeliver: bool | None = None
    attachments: list[dict[str, Any]] | None = Field(default=None, max_length=16)
    timeout: float | None = Field(default=None, gt=0)  # seconds
    lane: str | None = None
    extraSystemPrompt: str | None = Field(default=None, max_length=100_000)
    label: str | None = None
    spawnedBy: str | None = None
    groupId: str | None = None
    groupChannel: str | None = None
    groupSpace: str | None = None
    inputProvenance: dict[str, Any] | None = None


class WaitParams(Params):
    runId: str = Field(min_length=1)
    timeoutMs: int = Field(default=WAIT_DEFAULT_MS, ge=0, le=24 * 3_600_000)


class ModelsParams(Params):
    agentId: Annotated[str, Field(min_length=1)] | None = None
    sessionKey: Annotated[str, Field(min_length=1)] | None = None
    authProfileId: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    provider: Annotated[str, Field(min_length=1)] | None = None
    includeDetails: bool = False
    includeProviderCapabilities: bool = False
    includeDefaultModels: bool = False
    preparedOnly: bool = False
    refresh: bool = False
    view: Literal["default", "configured", "all", "provider-config"] | None = None


class AuthStatusParams(Params):
    agentId: Annotated[str, Field(min_length=1)] | None = None
    refresh: bool = False
    includeProfileIdentity: bool = False




def auth_of(provider: object) -> tuple[str, list[dict[str, Any]]]:
    """(OpenClaw auth status, profile rows) of a provider. A provider with auth profiles
    (``AuthAware``) is ``static`` (OpenClaw's word for an API key) when a profile has a key,
    else ``missing`` — unless it talks to a loopback endpoint, which needs none (``ok``); one
    without profiles (the offline echo) needs nothing: ``ok``."""
    if not isinstance(provider, AuthAware):
        return "ok", []
    profiles = [{"profileId": p["id"], "type": "api_key", "source": p["source"],
                 "status": "static" if p["hasKey"] else "missing",
                 **({"reasonCode": "cooldown", "cooldownUntil": p["cooldownUntil"],
                     "cooldownRemainingMs": p["cooldownRemainingMs"]}
                    if p["state"] == "cooldown" else {}),
                 **({"lastUsedAt": p["lastUsed"]} if p["lastUsed"] else {}),
                 "expiry": None}
                for p in provider.auth_status()]
    if any(p["status"] == "static" for p in profiles):
        return "static", profiles
    host = urlsplit(str(getattr(provider, "base_url", ""))).hostname or ""
    local = host in ("localhost", "::1") or host.startswith("127.")
    return ("ok" if local else "missing"), profiles


def final_payload(result: RunResult, duration_ms: int | None = None) -> dict[str, Any]:
    """The second ``agent`` response (also what a repeat gets after the run ended)."""
    ok = result.status == "ok"
    meta: dict[str, Any] = {"stopReason": result.stop_reason, "usage": dict(result.usage),
                            "aborted": result.status == "aborted",
                            "sessionKey": result.session_key}
    if duration_ms is not None:
        meta["durationMs"] = duration_ms
    summary = "completed" if ok else (result.error or result.stop_reason or result.status)
    payloads = [{"text": result.text}] if result.text else []
    return {"runId": result.run_id, "status": "ok" if ok else "error", "summary": summary,
            "result": {"payloads": payloads, "meta": meta}}


async def agent(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(AgentParams, raw, "agent")
    gateway, run_id = ctx.gateway, p.idempotencyKey
    engine = gateway.runtime.engine
    if engine.in_flight(run_id):
        return {"runId": run_id, "status": "in_flight"}
    done = engine.result(run_id)
    if done is not None:
        return final_payload(done)
    session_key = p.sessionKey
    if session_key is None and p.sessionId is not None:
        session_key = await find_by_session_id(gateway, p.sessionId)
        if session_key is None:
            raise invalid(f"no session with sessionId {p.sessionId!r}")
    started = time.perf_counter()
    turn = await engine.submit(Submission(
        user_content(p.message, p.attachments), session_key=session_key, agent_id=p.agentId,
        channel=p.channel, run_id=run_id, extra_system_prompt=p.extraSystemPrompt))
    ctx.reply({"runId": run_id, "status": "accepted", "acceptedAt": now_ms()})
    try:
        result = await asyncio.wait_for(turn.result(), p.timeout)
    except TimeoutError:
        turn.abort()
        result = await turn.result()  # a vanished client must not cancel the run
    return final_payload(result, int((time.perf_counter() - started) * 1000))


async def agent_wait(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(WaitParams, raw, "agent.wait")
    engine = ctx.gateway.runtime.engine
    store = engine.store
    result = await engine.wait(p.runId, p.timeoutMs / 1000)
    if result is None and engine.find_run(p.runId) is not None:
        return {"runId": p.runId, "status": "timeout"}
    record = await store.get_run(p.runId)
    if record is None or record.status in ("queued", "running"):
        return {"runId": p.runId, "status": "timeout"}
    status = result.status if result is not None else record.status
    out: dict[str, Any] = {"runId": p.runId, "status": "ok" if status == "ok" else "error",
                           "startedAt": record.started_at}
    if record.ended_at is not None:
        out["endedAt"] = record.ended_at
    if status != "ok":
        error = (result.error if result else None) or record.error or record.stop_reason
        out["error"] = error or status
    return out


async def agents_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(NoParams, raw, "agents.list")
    roster = ctx.gateway.runtime.engine.roster
    return {"defaultId": roster.default.id, "mainKey": ctx.gateway.settings.config.session.main_key,
            "scope": "per-sender", "agents": [agent_row(a) for a in roster]}


def agent_row(agent: Agent) -> dict[str, Any]:
    """An ``agents.list`` row; ``model`` is ``{primary, fallbacks?}`` as in OpenClaw (the
    Control UI reads ``model.primary`` to decide whether the agent can chat)."""
    row = agent.describe()
    model: dict[str, Any] = {"primary": str(agent.models[0])}
    if len(agent.models) > 1:
        model["fallbacks"] = [str(m) for m in agent.models[1:]]
    row["model"] = model
    return row


def catalogue(ctx: CallContext, provider_id: str | None = None) -> list[dict[str, Any]]:
    """Every model of every loaded provider (OpenClaw's published catalogue rows), sorted by
    provider and id; ``available`` says whether the provider can be called (credentials)."""
    models: list[dict[str, Any]] = []
    for entry in ctx.generation.registry.providers.values():
        provider = entry.provider
        if provider_id is not None and provider.id != provider_id.lower():
            continue
        available = auth_of(provider)[0] != "missing"
        for info in provider.models():
            row: dict[str, Any] = {"id": info.id, "name": info.name or info.id,
                                   "provider": provider.id, "input": list(info.input),
                                   "available": available}
            if not available:
                row["unavailableReason"] = "missing credentials"
            if info.context_window is not None:
                row["contextWindow"] = info.context_window
            if info.max_output_tokens is not None:
                row["maxTokens"] = info.max_output_tokens
            if info.reasoning:
                row["reasoning"] = True
            if info.aliases:
                row["aliases"] = list(info.aliases)
            models.append(row)
    models.sort(key=lambda m: (m["provider"], m["id"]))
    return models


async def models_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """The catalogue; ``agentId``/``sessionKey`` scope it to an agent (every agent here shares
    the loaded providers, so they are checked, and an unknown agent is an error)."""
    p = parse_params(ModelsParams, raw, "models.list")
    engine = ctx.gateway.runtime.engine
    if p.sessionKey is not None or p.agentId is not None:
        engine.session_key(p.sessionKey, p.agentId)
    return {"models": catalogue(ctx, p.provider)}


async def models_auth_status(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Which loaded providers have what they need to be called."""
    p = parse_params(AuthStatusParams, raw, "models.authStatus")
    if p.agentId is not None:
        ctx.gateway.runtime.engine.roster.get(p.agentId)
    providers: list[dict[str, Any]] = []
    for entry in sorted(ctx.generation.registry.providers.values(),
                        key=lambda e: e.provider.id):
        provider = entry.provider
        status, profiles = auth_of(provider)
        providers.append({"provider": provider.id, "authProvider": provider.id,
                          "displayName": provider.id, "pluginId": entry.plugin_id,
                          "status": status, "profiles": profiles, "expiry": None})
    return {"ts": now_ms(), "providers": providers, "providerCapabilities": {}}


class AuthResetParams(Params):
    provider: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    profileId: Annotated[str, Field(min_length=1, max_length=200)] | None = None


async def models_auth_reset(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """Clear auth-profile cooldowns (one profile, one provider's, or all) so that the next turn
    may use them again; an unknown provider or profile is an error and changes nothing."""
    p = parse_params(AuthResetParams, raw, "models.authReset")
    providers = [e.provider for e in ctx.generation.registry.providers.values()]
    return {"ts": now_ms(), **reset_auth(providers, p.provider, p.profileId)}


METHODS = (
    CoreMethod("agent", WRITE, agent),
    CoreMethod("agent.wait", WRITE, agent_wait),
    CoreMethod("agents.list", READ, agents_list),
    CoreMethod("models.list", READ, models_list),
    CoreMethod("models.authStatus", READ, models_auth_status),
    CoreMethod("models.authReset", ADMIN, models_auth_reset),
)
