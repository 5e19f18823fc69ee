"""Helpers for the Slack channel's tests: a gateway whose Slack account talks to a SlackFake."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.fakes.slack import SlackFake
from tests.support.gateway_server import GatewayServer, serve_gateway


def slack_config(fake: SlackFake, *, extra: Mapping[str, Any] | None = None,
                 **account: Any) -> dict[str, Any]:
    """Config with the Slack channel's default account pointed at ``fake`` (Socket Mode,
    open DMs, short keepalive and delivery backoff)."""
    channel = {"bot_token": fake.bot_token, "app_token": fake.app_token,
               "api_base_url": fake.api_url, "ping_interval_s": 0.2, "dm_policy": "open",
               "allow_from": ["*"], **account}
    config: dict[str, Any] = {"channels": {"slack": channel},
                              "delivery": {"backoff_base_ms": 20, "backoff_max_ms": 200}}
    config.update(extra or {})
    return config


@contextlib.asynccontextmanager
async def slack_gateway(state: Path, fake: SlackFake, *, extra: Mapping[str, Any] | None = None,
                        connected: bool = True, env: Mapping[str, str] | None = None,
                        **account: Any) -> AsyncIterator[GatewayServer]:
    """A served gateway with the Slack account; waits for its Socket Mode connection."""
    async with serve_gateway(state, slack_config(fake, extra=extra, **account),
                             env=env) as server:
        if connected and account.get("mode", "socket") == "socket":
            await fake.wait_until(lambda: fake.connections, within=10)
            await until_status(server, lambda row: row.get("connected") is True)
        yield server


async def status_row(server: GatewayServer, account: str = "default") -> dict[str, Any]:
    """The account's ``channels.status`` row."""
    channels = server.gateway.runtime.channels
    assert channels is not None
    status = await channels.status()
    rows = [r for r in status["channelAccounts"]["slack"] if r["accountId"] == account]
    assert rows, status
    return rows[0]


async def until_status(server: GatewayServer, check: Any, within: float = 10.0) -> dict[str, Any]:
    """Poll the account's status row until ``check(row)`` holds; the row."""
    from tests.support.poll import until

    found: dict[str, Any] = {}

    async def ok() -> bool:
        found.update(await status_row(server))
        return bool(check(found))

    await until(ok, within=within)
    return found


def openai_model(url: str, *, images: bool = False) -> dict[str, Any]:
    """Config making the default agent use the mock OpenAI server at ``url`` (model
    ``openai/mock``; it takes images when ``images``). Needs ``OPENAI_API_KEY`` in the env."""
    model: dict[str, Any] = {"id": "mock"}
    if images:
        model["input"] = ["text", "image"]
    return {"plugins": {"entries": {"openai": {"enabled": True, "config": {
        "base_url": url, "models": [model]}}}},
        "agents": [{"id": "main", "default": True, "model": "openai/mock"}]}


OPENAI_ENV = {"OPENAI_API_KEY": "test-key"}


def bot_posts(fake: SlackFake, conversation: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's messages in a conversation, oldest first (as they read now: edits applied)."""
    return [m for m in fake.history(conversation) if m.get("bot_id") == fake.bot_id]


def texts(fake: SlackFake, conversation: dict[str, Any]) -> list[str]:
    return [str(m.get("text", "")) for m in bot_posts(fake, conversation)]
