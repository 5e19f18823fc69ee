"""Helpers for the Discord channel tests: a real gateway whose Discord account points at the
loopback fake (REST through ``api_base_url``; the Gateway URL comes from the fake's
``GET /gateway/bot``, as on Discord)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.fakes.discord_api import DiscordFake
from tests.support.gateway_server import GatewayServer, serve_gateway
from tests.support.poll import until

DRIP = Path(__file__).resolve().parent / "plugins"
POST = "POST /channels/{channel_id}/messages"
PATCH = "PATCH /channels/{channel_id}/messages/{message_id}"
TYPING = "POST /channels/{channel_id}/typing"


def discord_config(fake: DiscordFake, **channel: Any) -> dict[str, Any]:
    """Config with the Discord channel's default account on ``fake``: DMs open, guild
    channels open (mention-gated), no previews (an echo's one-delta preview would race the
    answer; tests of previews ask for ``streaming="partial"``), short delivery backoffs. A key
    given as None is left out."""
    account = {"bot_token": fake.token, "api_base_url": fake.rest_url, "dm_policy": "open",
               "allow_from": ["*"], "group_policy": "open", "streaming": "off", **channel}
    account = {key: value for key, value in account.items() if value is not None}
    return {"channels": {"discord": account},
            "delivery": {"backoff_base_ms": 20, "backoff_max_ms": 200}}


def drip(chunk_chars: int = 6, interval_ms: int = 150) -> dict[str, Any]:
    """Config that makes the main agent answer through the slow ``drip`` test provider."""
    return {"plugins": {"load_paths": [str(DRIP)],
                        "entries": {"drip": {"config": {"chunk_chars": chunk_chars,
                                                        "interval_ms": interval_ms}}}},
            "agents": [{"id": "main", "model": "drip/drip"}]}


async def status(server: GatewayServer, account: str = "default", *,
                 probe: bool = False) -> dict[str, Any]:
    """The account's ``channels.status`` row."""
    channels = server.gateway.runtime.channels
    assert channels is not None
    result = await channels.status(probe=probe)
    rows = [r for r in result["channelAccounts"]["discord"] if r["accountId"] == account]
    assert rows, result
    return rows[0]


async def ready(server: GatewayServer, account: str = "default") -> bool:
    found = await status(server, account)
    return bool(found.get("connected") and found.get("bot"))


@contextlib.asynccontextmanager
async def discord_gateway(state: Path, fake: DiscordFake,
                          extra: Mapping[str, Any] | None = None, *, connected: bool = True,
                          env: Mapping[str, str] | None = None,
                          **channel: Any) -> AsyncIterator[GatewayServer]:
    """A gateway with the Discord account on ``fake``, waited until its Gateway session is
    ready (unless ``connected=False``)."""
    config = discord_config(fake, **channel)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    async with serve_gateway(state, config, env=env) as server:
        if connected:
            await until(lambda: ready(server), within=15)
        yield server


def bot_texts(fake: DiscordFake, channel: dict[str, Any] | str) -> list[str]:
    """What the bot wrote in a channel, oldest first (current content, after edits)."""
    return [m["content"] for m in fake.history(channel)
            if m["author"]["id"] == fake.bot_user["id"]]


def posts(fake: DiscordFake, channel: dict[str, Any] | str) -> list[Any]:
    """The bot's ``POST /channels/{id}/messages`` calls to a channel."""
    cid = channel if isinstance(channel, str) else channel["id"]
    return [c for c in fake.calls_of(POST) if c.path.split("/")[4] == cid]


def body(call: Any) -> dict[str, Any]:
    """The JSON payload of a message call (plain JSON or multipart ``payload_json``)."""
    import orjson

    data = call.body
    if isinstance(data, dict) and "payload_json" in data:
        raw = data["payload_json"]
        return dict(orjson.loads(raw if isinstance(raw, str | bytes) else raw.data))
    return dict(data or {})
