"""The Telegram plugin as the gateway loads it: the library stays out of a gateway without a
Telegram account; bad account config is a clear status naming the key; secrets come from the
environment."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.channels.telegram.support import PTB_WARNINGS, texts
from tests.support.fakes.telegram import TelegramFake
from tests.support.gateway_server import in_process, serve_gateway
from tests.support.poll import until

ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(PTB_WARNINGS)]

PROBE = textwrap.dedent("""
    import asyncio, sys, tempfile
    from pathlib import Path
    from clawgate import config
    from clawgate.plugins.host import PluginHost

    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            settings = config.Settings(config.parse({}), state_dir=Path(tmp),
                                       config_path=Path(tmp) / "c.toml")
            host = PluginHost(settings)
            await host.start()
            registry = host.current.registry
            print("telegram" in registry.channels, "start" in registry.commands,
                  "telegram" in sys.modules)
            await host.aclose()

    asyncio.run(main())
""")


def test_a_zero_config_gateway_does_not_import_the_library() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False"]


async def account_row(tmp_path: Path, account: dict[str, Any],
                      env: dict[str, str] | None = None) -> dict[str, Any]:
    async with in_process(tmp_path, {"channels": {"telegram": account}}, env=env) as app:
        channels = app.gateway.runtime.channels
        assert channels is not None
        status = await channels.status()
        row: dict[str, Any] = status["channelAccounts"]["telegram"][0]
        return row


@pytest.mark.parametrize(("account", "named"), [
    ({"bot_token": "1:a", "mode": "webhook"}, "webhook_"),  # webhook_url and _secret
    ({"bot_token": "1:a", "mode": "webhook", "webhook_url": "https://x.y/h"}, "webhook_secret"),
    ({"bot_token": "1:a", "mode": "push"}, "mode"),
    ({"bot_token": "1:a", "poll_timeout_s": 90}, "poll_timeout_s"),
    ({"bot_token": "1:a", "api_base_url": "ftp://x"}, "api_base_url"),
    ({"bot_token": "1:a", "token": "typo"}, "token"),
    ({}, "bot_token"),
    ({"bot_token_env": "CLAWGATE_TEST_UNSET_TOKEN"}, "CLAWGATE_TEST_UNSET_TOKEN"),
])
async def test_bad_config_is_a_status_naming_the_key(tmp_path: Path, account: dict[str, Any],
                                                    named: str) -> None:
    row = await account_row(tmp_path, account)
    assert row["configured"] is False and row["running"] is False
    assert named in row["lastError"], row["lastError"]


async def test_the_token_from_the_environment(tmp_path: Path) -> None:
    async with TelegramFake() as fake:
        account = {"bot_token_env": "MY_TG_TOKEN", "api_base_url": fake.url,
                   "poll_timeout_s": 1, "dm_policy": "open", "allow_from": ["*"],
                   "streaming": "off"}
        async with serve_gateway(tmp_path, {"channels": {"telegram": account}},
                                 env={"MY_TG_TOKEN": fake.token}):
            tg = fake.bot
            ada = tg.user("Ada")
            chat = tg.private_chat(ada)
            tg.inject_text(chat, ada, "token from env")
            await until(lambda: texts(tg, chat) == ["token from env"], within=10)
