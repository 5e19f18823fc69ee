"""Helpers for the Telegram channel tests: a gateway whose telegram account talks to the loopback
Bot API fake through python-telegram-bot, and readers of what the fake and the status saw."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from clawgate.gateway.app import Gateway
from tests.support.fakes.harness import Call
from tests.support.fakes.telegram import TelegramFake, TgBot
from tests.support.gateway_server import TOKEN, GatewayServer, _Server, serve_gateway, settings
from tests.support.mock_openai import MockOpenAI
from tests.support.poll import until
from tests.support.ws_client import open_client

SECRET = "webhook-secret_of-the-test-1234"
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


@contextlib.asynccontextmanager
async def webhook_gateway(state: Path, fake: TelegramFake,
                          **keys: Any) -> AsyncIterator[GatewayServer]:
    """A gateway whose telegram account is in webhook mode, its ``webhook_url`` the gateway's
    own route (so the port is bound before the config is made)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/channels/telegram/default/webhook"
    keys = {"mode": "webhook", "webhook_url": url, "webhook_secret": SECRET, **keys}
    gateway = Gateway(settings(state, config(fake, **keys)),
                      env={"CLAWGATE_GATEWAY_TOKEN": TOKEN}, host="127.0.0.1", port=0,
                      drain_deadline_s=5)
    server = _Server(uvicorn.Config(gateway.app, lifespan="on", log_config=None,
                                    log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="telegram-webhook-gateway")
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait((task, listening), timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            raise RuntimeError("the gateway did not start (see the log for why)")
        yield GatewayServer(gateway, sock)
    finally:
        listening.cancel()
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


async def status(server: GatewayServer, *, probe: bool = False) -> dict[str, Any]:
    """The telegram account's row of ``channels.status``."""
    async with open_client(server) as ws:
        result = await ws.ok("channels.status", {"probe": probe})
    rows = result["channelAccounts"]["telegram"]
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


async def settled(server: GatewayServer) -> dict[str, Any]:
    """The account's status row once no delivery is pending: the platform may show a reply a
    moment before the gateway has recorded it as sent."""
    async def done() -> dict[str, Any] | None:
        row = await status(server)
        return row if row["pendingDeliveries"] == 0 else None

    row: dict[str, Any] = await until(done, interval=0.05)
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
