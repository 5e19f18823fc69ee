"""Helpers for the tests of the wired cron service: a real gateway (uvicorn on 127.0.0.1, real
SQLite) whose scheduler and heartbeats run on a :class:`FakeClock` the test moves, optionally
with the webhook channel pointed at a :class:`WebhookReceiver`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from clawgate.gateway.app import Gateway
from tests.channels.support import webhook_config
from tests.cron.conftest import FakeClock
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.gateway_server import GatewayServer, serve_gateway
from tests.support.poll import until
from tests.support.ws_client import WsClient

MINUTE = 60_000
QUIET_HEARTBEAT = {"heartbeat": {"every": "0m"}}  # no heartbeat unless a test wants one


def merge(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """Config tables merged one level deep (later parts win)."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out


@contextlib.asynccontextmanager
async def cron_gateway(state: Path, clock: FakeClock, config: Mapping[str, Any] | None = None,
                       *, hook: WebhookReceiver | None = None,
                       **channel: Any) -> AsyncIterator[GatewayServer]:
    """A gateway whose cron service runs on ``clock``; with ``hook`` the webhook channel's
    default account posts to it (``channel`` are more account keys)."""
    parts: list[Mapping[str, Any]] = [QUIET_HEARTBEAT, {"cron": {"delivery_timeout_s": 10}}]
    if hook is not None:
        parts.append(webhook_config(hook, **channel))
    parts.append(config or {})

    def prepare(gateway: Gateway) -> None:
        assert gateway.runtime.cron is not None
        gateway.runtime.cron.clock = clock

    async with serve_gateway(state, merge(*parts), prepare=prepare) as server:
        yield server


def isolated(message: str = "report", *, every_ms: int = MINUTE, **extra: Any) -> dict[str, Any]:
    """``cron.add`` params of an isolated job (every ``every_ms``)."""
    return {"name": extra.pop("name", "isolated job"),
            "schedule": extra.pop("schedule", {"kind": "every", "everyMs": every_ms}),
            "sessionTarget": "isolated",
            "payload": {"kind": "agentTurn", "message": message, **extra.pop("payload", {})},
            **extra}


def announce(**delivery: Any) -> dict[str, Any]:
    """An announce delivery to the webhook channel's default account."""
    return {"mode": "announce", "channel": "webhook", "to": "alice", **delivery}


async def runs_of(ws: WsClient, job_id: str, count: int = 1,
                  within: float = 20.0) -> list[dict[str, Any]]:
    """The job's run entries (newest first) once it has at least ``count``."""
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        nonlocal found
        found = (await ws.ok("cron.runs", {"id": job_id}))["entries"]
        return len(found) >= count

    await until(enough, within=within)
    return found
