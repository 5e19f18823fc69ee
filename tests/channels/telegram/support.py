"""Helpers for the Telegram channel tests: a gateway whose telegram account talks to the loopback
Bot API fake through python-telegram-bot, and readers of what the fake and the status saw."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from tests.support.fakes.harness import Call
from tests.support.fakes.telegram import TelegramFake, TgBot
from tests.support.gateway_server import GatewayServer, serve_gateway
from tests.support.mock_openai import MockOpenAI
from tests.support.ws_client import open_client

# python-telegram-bot 22 warns about its own coming timedelta types.
PTB_WARNINGS = "ignore::telegram.warnings.PTBDeprecationWarning"


def account(fake: TelegramFake, **keys: Any) -> dict[str, Any]:
    """The telegram account's config: the fake's token and URL, short polls, open DMs."""
    return {"bot_token": fake.token, "api_base_url": fake.url, "poll_timeout_s": 1,
            "poll_stall_s": 2, "dm_policy": "open", "allow_from": ["*"], **keys}


def config(fake: TelegramFake, extra: Mapping[str, Any] | None = None,
           **keys: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"channels": {"telegram": account(fake, **keys)},
                           "delivery": {"backoff_base_ms": 20, "backoff_max_ms": 200}}
    out.update(extra or {})
    return out


def mock_model(mock: MockOpenAI, *, images: bool = False) -> dict[str, Any]:
    """Config that makes the main agent talk to the mock OpenAI server."""
    model: dict[str, Any] = {"id": "mock-model", "input": ["text", "image"] if images
                             else ["text"]}
    return {"agents": [{"id": "main", "default": True, "model": "openai/mock-model"}],
            "plugins": {"entries": {"openai": {"enabled": True, "config": {
                "base_url": mock.url, "api_key_env": "CLAWGATE_TEST_NO_KEY", "max_retries": 0,
                "models": [model]}}}}}


@contextlib.asynccontextmanager
async def telegram_gateway(state: Path, fake: TelegramFake,
                           extra: Mapping[str, Any] | None = None,
                           **keys: Any) -> AsyncIterator[GatewayServer]:
    """A gateway with the telegram account configured; returns once the bot polls."""
    async with serve_gateway(state, config(fake, extra, **keys)) as server:
        yield server


async def status(server: GatewayServer, *, probe: bool = False) -> dict[str, Any]:
    """The telegram account's row of ``channels.status``."""
    async with open_client(server) as ws:
        result = await ws.ok("channels.status", {"probe": probe})
    rows = result["channelAccounts"]["telegram"]
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


def texts(tg: TgBot, chat: dict[str, Any] | int | None = None) -> list[str]:
    """What the bot's messages (in one chat, or all) say now (edits applied)."""
    return [str(m.get("text", "")) for m in tg.sent(chat)]


def calls(fake: TelegramFake, name: str) -> list[dict[str, Any]]:
    """The bodies of the calls of one Bot API method."""
    return [c.body if isinstance(c.body, dict) else {} for c in fake.calls_of(name)]


def to_chat(chat: dict[str, Any]) -> Any:
    """A matcher of Bot API calls addressed to ``chat``."""
    def match(call: Call) -> bool:
        body = call.body if isinstance(call.body, dict) else {}
        return str(body.get("chat_id")) == str(chat["id"])
    return match
