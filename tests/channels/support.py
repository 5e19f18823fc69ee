"""Helpers for channel tests: a gateway with the webhook channel pointed at a receiver."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.support.fakes.webhook import WebhookReceiver, sign
from tests.support.gateway_server import GatewayServer, serve_gateway

SECRET = "s3cret-for-the-webhook-channel"
OUT_TOKEN = "reply-token-123"


def webhook_config(hook: WebhookReceiver, **channel: Any) -> dict[str, Any]:
    """Config with the webhook channel's default account posting replies to ``hook``."""
    account = {"inbound_secret": SECRET, "outbound_url": f"{hook.url}/hook",
               "outbound_token": OUT_TOKEN, "dm_policy": "open", "allow_from": ["*"],
               **channel}
    return {"channels": {"webhook": account},
            "delivery": {"backoff_base_ms": 20, "backoff_max_ms": 200}}


@contextlib.asynccontextmanager
async def webhook_gateway(state: Path, hook: WebhookReceiver,
                          extra: Mapping[str, Any] | None = None,
                          **channel: Any) -> AsyncIterator[GatewayServer]:
    config = webhook_config(hook, **channel)
    config.update(extra or {})
    async with serve_gateway(state, config) as server:
        yield server


def message(text: str, *, sender: str = "alice", msg_id: str | None = None,
            **fields: Any) -> dict[str, Any]:
    return {"id": msg_id or str(uuid.uuid4()), "from": sender, "text": text, **fields}


async def post(http: httpx.AsyncClient, body: dict[str, Any], *, account: str = "default",
               secret: str = SECRET, headers: dict[str, str] | None = None) -> httpx.Response:
    raw = orjson.dumps(body)
    signed = sign(secret, raw) if headers is None else headers
    return await http.post(f"/channels/webhook/{account}/inbound", content=raw,
                           headers=signed)


def texts(hook: WebhookReceiver) -> list[str]:
    return [str(b["text"]) for b in hook.bodies("/hook")]  # type: ignore[index]
