"""``sessions.compact``: compact a session now, the memory flush first (OpenClaw's params and
result).

Params ``{key, agentId?, maxLines?}``; the result is ``{ok, key, compacted, reason?,
result?: {summary, firstKeptEntryId, tokensBefore, tokensAfter}, kept?, memoryFlush?}``.
``ok`` is false only when the compaction failed (the summary call, say), with ``reason``
saying why; nothing to compact is ``{ok: true, compacted: false, reason}``. A session with
an active or queued run is refused (retry after it finishes). ``maxLines`` keeps at most that
many of the newest messages verbatim; unlike OpenClaw, which then trims the transcript file,
nothing is deleted: the older messages are summarised and stay in the store.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from clawgate.gateway.protocol import Params, parse_params
from clawgate.gateway.rpc import WRITE, CallContext, CoreMethod


class CompactParams(Params):
    key: Annotated[str, Field(min_length=1, max_length=512)]
    agentId: str | None = Field(default=None, min_length=1, max_length=128)
    maxLines: int | None = Field(default=None, ge=1, le=1_000_000)


async def sessions_compact(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(CompactParams, raw, "sessions.compact")
    engine = ctx.gateway.runtime.engine
    agent, key = engine.session_key(p.key, p.agentId)
    outcome = await engine.compact(key, agent_id=agent.id, max_lines=p.maxLines,
                                   busy="refuse")
    return {"key": key, **outcome.wire()}


METHODS = (CoreMethod("sessions.compact", WRITE, sessions_compact),)
