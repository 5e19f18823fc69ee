"""The Slack account's config and credentials: clear errors naming the key or the fix, never
echoing a token; secrets from the environment; slack-sdk stays out of a gateway that has no
Slack account."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.channels.slack.support import slack_config, slack_gateway, texts, until_status
from tests.support.fakes.slack import SlackFake
from tests.support.gateway_server import serve_gateway
from tests.support.poll import until

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]


async def test_a_refused_bot_token_shows_the_fix(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, connected=False,
                                                  bot_token="xoxb-revoked") as server:
        row = await until_status(server, lambda r: r.get("lastError"))
        assert "Slack refused the bot token (invalid_auth)" in row["lastError"]
        assert "Bot User OAuth Token" in row["lastError"] and "xoxb-revoked" not in str(row)
        assert row["connected"] is False and fake.counts["apps.connections.open"] == 0


async def test_a_refused_app_token_shows_the_fix(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, connected=False,
                                                  app_token="xapp-1-wrong") as server:
        row = await until_status(server, lambda r: r.get("lastError"))
        assert "Slack refused the app token (invalid_auth)" in row["lastError"]
        assert "connections:write" in row["lastError"] and fake.connections == {}


async def test_swapped_tokens_are_named_without_echoing_them(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, connected=False,
                                                  bot_token=fake.app_token) as server:
        row = await until_status(server, lambda r: r.get("lastError"))
        assert "bot_token is not a bot token" in row["lastError"]
        assert fake.app_token not in str(row) and fake.counts["auth.test"] == 0


@pytest.mark.parametrize(("account", "key"), [
    ({"app_token": None}, "'app_token' is a required property"),
    ({"mode": "http"}, "'signing_secret' is a required property"),
    ({"mode": "webhook"}, "'webhook' is not one of ['socket', 'http']"),
    ({"ping_interval_s": 0}, "ping_interval_s"),
    ({"bot_tokn": "x"}, "'bot_tokn' was unexpected"),
])
async def test_bad_config_names_the_key(tmp_path: Path, account: dict[str, object],
                                        key: str) -> None:
    async with SlackFake() as fake:
        config = slack_config(fake, **account)
        channel = config["channels"]["slack"]
        for name, value in account.items():
            if value is None:
                channel.pop(name)
        async with serve_gateway(tmp_path, config) as server:
            row = await until_status(server, lambda r: r.get("lastError"))
            assert row["configured"] is False and key in row["lastError"], row["lastError"]
            assert row["running"] is False and fake.calls_of(lambda c: True) == []


async def test_tokens_from_the_environment(tmp_path: Path) -> None:
    async with SlackFake() as fake:
        config = slack_config(fake)
        channel = config["channels"]["slack"]
        del channel["bot_token"], channel["app_token"]
        channel.update(bot_token_env="SLACK_BOT", app_token_env="SLACK_APP")
        async with serve_gateway(tmp_path, config, env={"SLACK_BOT": fake.bot_token,
                                                        "SLACK_APP": fake.app_token}):
            await fake.wait_until(lambda: fake.connections, within=10)
            ada = fake.user("ada")
            fake.inject_message(fake.im(ada), ada, "from env")
            await until(lambda: texts(fake, fake.im(ada)) == ["from env"], within=10)


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
            channels = sorted(host.current.registry.channels)
            await host.aclose()
        print("slack" in channels, "slack_sdk" in sys.modules, "aiohttp" in sys.modules)

    asyncio.run(main())
""")


def test_slack_sdk_stays_out_of_a_gateway_without_a_slack_account() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]  # registered, nothing imported
