"""Live feeds: ``sessions.subscribe`` / ``.unsubscribe`` (``sessions.changed`` events),
``sessions.messages.subscribe`` / ``.unsubscribe`` (``session.message`` events) and
``logs.subscribe`` / ``.unsubscribe`` (``logs.appended`` events, :mod:`..logfeed`).

A subscription belongs to the calling connection and ends with it; the hub keeps it
(:class:`~clawgate.gateway.hub.Subscriptions`, bounded per connection) and the relay delivers
to exactly the subscribers. As in OpenClaw, ``sessions.subscribe`` takes ``sessions.list``
params: with any, it also answers the first page (``{subscribed, list}``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from clawgate.errors import RpcError
from clawgate.gateway.hub import Peer
from clawgate.gateway.logfeed import MAX_FOLLOWERS
from clawgate.gateway.methods.sessions import ListParams, list_page
from clawgate.gateway.protocol import Params, parse_params
from clawgate.gateway.rpc import READ, CallContext, CoreMethod

Name = Annotated[str, Field(min_length=1)]


class FollowParams(Params):
    key: Annotated[str, Field(min_length=1, max_length=512)]
    agentId: Name | None = None
    includeApprovals: bool | None = None  # clawgate has no approvals: nothing to replay


class UnfollowParams(Params):
    key: Annotated[str, Field(min_length=1, max_length=512)]
    agentId: Name | None = None


def _peer(ctx: CallContext) -> Peer | None:
    """The hub's handle on the calling connection (None if it is already leaving)."""
    return ctx.gateway.hub.by_id.get(ctx.conn.conn_id)


async def sessions_subscribe(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(ListParams, raw, "sessions.subscribe")
    peer = _peer(ctx)
    if peer is not None:
        ctx.gateway.hub.subs.follow_sessions(peer)
    if peer is None or not p.model_fields_set:
        return {"subscribed": peer is not None}
    return {"subscribed": True, "list": await list_page(ctx, p)}


async def sessions_unsubscribe(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(Params, raw, "sessions.unsubscribe")
    peer = _peer(ctx)
    if peer is not None:
        ctx.gateway.hub.subs.follow_sessions(peer, on=False)
    return {"subscribed": False}


async def messages_subscribe(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(FollowParams, raw, "sessions.messages.subscribe")
    _, key = ctx.gateway.runtime.engine.session_key(p.key, p.agentId)
    peer = _peer(ctx)
    if peer is None:
        return {"subscribed": False, "key": key}
    subs = ctx.gateway.hub.subs
    if not subs.follow(peer, key):
        raise RpcError("INVALID_REQUEST",
                       f"this connection already follows {subs.max_keys} sessions' messages; "
                       "unsubscribe one first", details={"limit": subs.max_keys})
    return {"subscribed": True, "key": key}


async def messages_unsubscribe(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(UnfollowParams, raw, "sessions.messages.unsubscribe")
    _, key = ctx.gateway.runtime.engine.session_key(p.key, p.agentId)
    peer = _peer(ctx)
    if peer is not None:
        ctx.gateway.hub.subs.unfollow(peer, key)
    return {"subscribed": False, "key": key}


class LogsFollowParams(Params):
    limit: int = Field(default=500, ge=1, le=5000)  # of the first tail, as in logs.tail
    maxBytes: int = Field(default=250_000, ge=1, le=1_000_000)


async def logs_subscribe(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(LogsFollowParams, raw, "logs.subscribe")
    peer = _peer(ctx)
    if peer is None:
        return {"subscribed": False}
    first = ctx.gateway.log_feed.follow(peer, p.limit, p.maxBytes)
    if first is None:
        raise RpcError("INVALID_REQUEST",
                       f"{MAX_FOLLOWERS} connections already follow the log; poll logs.tail",
                       details={"limit": MAX_FOLLOWERS})
    return {"subscribed": True, **first}


async def logs_unsubscribe(ctx: CallContext, raw: Any) -> dict[str, Any]:
    parse_params(Params, raw, "logs.unsubscribe")
    peer = _peer(ctx)
    if peer is not None:
        ctx.gateway.log_feed.unfollow(peer)
    return {"subscribed": False}


METHODS = (
    CoreMethod("sessions.subscribe", READ, sessions_subscribe),
    CoreMethod("sessions.unsubscribe", READ, sessions_unsubscribe),
    CoreMethod("sessions.messages.subscribe", READ, messages_subscribe),
    CoreMethod("sessions.messages.unsubscribe", READ, messages_unsubscribe),
    CoreMethod("logs.subscribe", READ, logs_subscribe),
    CoreMethod("logs.unsubscribe", READ, logs_unsubscribe),
)
