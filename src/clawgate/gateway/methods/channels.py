"""Channel methods: ``channels.status``, ``channels.logout`` and DM pairing
(``channels.pairing.list``, ``.approve``, ``.deny``), in OpenClaw's shapes (reference §A.2)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from clawgate.channels.runtime import ChannelRuntime, lease_name
from clawgate.errors import Unavailable
from clawgate.gateway.protocol import Params, invalid, parse_params
from clawgate.gateway.rpc import ADMIN, PAIRING, READ, CallContext, CoreMethod
from clawgate.types import now_ms

APPROVED_TEXT = "You're approved: you can talk to me now."


class StatusParams(Params):
    probe: bool = False
    timeoutMs: int = Field(default=10_000, ge=100, le=120_000)


class LogoutParams(Params):
    channel: str = Field(min_length=1, max_length=64)
    accountId: str | None = Field(default=None, min_length=1, max_length=128)


class PairingListParams(Params):
    channel: str | None = Field(default=None, min_length=1, max_length=64)


class PairingDecideParams(Params):
    channel: str = Field(min_length=1, max_length=64)
    code: str = Field(min_length=1, max_length=32)
    notify: bool = True


def _channels(ctx: CallContext) -> ChannelRuntime:
    channels = ctx.gateway.runtime.channels
    if channels is None:
        raise Unavailable("this gateway runs no channels")
    return channels


async def channels_status(ctx: CallContext, raw: Any) -> dict[str, Any]:
    """OpenClaw's shape plus, as extra fields, the replicas and each account's owner
    (``ownerReplica``: the gateway that runs its monitor and sends its deliveries)."""
    p = parse_params(StatusParams, raw, "channels.status")
    channels = _channels(ctx)
    out = await channels.status(probe=p.probe, timeout_s=p.timeoutMs / 1000)
    replicas = await ctx.gateway.runtime.replicas()
    owner_of = {name: r["id"] for r in replicas for name in r["owns"]}
    for channel, rows in out["channelAccounts"].items():
        for row in rows:
            owner = row.get("ownerReplica") if row.get("owner") else None
            row["ownerReplica"] = owner or owner_of.get(lease_name(channel, row["accountId"]))
            row["owner"] = bool(row.get("owner"))
    out["replicas"] = replicas
    out["replicaId"] = channels.replica_id
    return out


async def channels_logout(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(LogoutParams, raw, "channels.logout")
    return await _channels(ctx).logout(p.channel, p.accountId)


async def pairing_list(ctx: CallContext, raw: Any) -> dict[str, Any]:
    p = parse_params(PairingListParams, raw, "channels.pairing.list")
    requests = await ctx.gateway.runtime.store.channels.pairing_requests(p.channel)
    return {"ts": now_ms(), "requests": [r.wire() for r in requests]}


async def _decide(ctx: CallContext, raw: Any, method: str, approve: bool) -> dict[str, Any]:
    p = parse_params(PairingDecideParams, raw, method)
    notify = APPROVED_TEXT if approve and p.notify else None
    request = await ctx.gateway.runtime.store.channels.decide_pairing(
        p.channel, p.code, approve, notify)
    if request is None:
        raise invalid(f"no pending pairing request {p.code!r} for channel {p.channel!r} "
                      "(it may have expired)")
    channels = ctx.gateway.runtime.channels
    if channels is not None and notify:
        channels.wake()
    wire = request.wire()
    if channels is not None:
        channels.pairing_changed({"action": "approved" if approve else "denied",
                                  "channel": wire.get("channel", p.channel),
                                  "accountId": wire.get("accountId"), "id": wire.get("id"),
                                  "name": wire.get("name")})
    return {"ok": True, "approved": approve, "request": wire}


async def pairing_approve(ctx: CallContext, raw: Any) -> dict[str, Any]:
    return await _decide(ctx, raw, "channels.pairing.approve", True)


async def pairing_deny(ctx: CallContext, raw: Any) -> dict[str, Any]:
    return await _decide(ctx, raw, "channels.pairing.deny", False)


METHODS = (
    CoreMethod("channels.status", READ, channels_status),
    CoreMethod("channels.logout", ADMIN, channels_logout),
    CoreMethod("channels.pairing.list", PAIRING, pairing_list),
    CoreMethod("channels.pairing.approve", PAIRING, pairing_approve),
    CoreMethod("channels.pairing.deny", PAIRING, pairing_deny),
)
