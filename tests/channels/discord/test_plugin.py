"""The Discord plugin as the gateway runs it: hikari stays out of a gateway without a Discord
account and touches nothing process-wide when it runs, config mistakes name the key, the
Message Content intent can be turned off (mention-only), the Gateway URL can be overridden,
and files travel both ways."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from tests.channels.discord.support import bot_texts, discord_gateway, posts, status
from tests.support.fakes.discord_api import DiscordFake, Intent
from tests.support.fakes.harness import Upload
from tests.support.poll import until

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]

PROBE = textwrap.dedent("""
    import asyncio, sys, tempfile
    from pathlib import Path
    from clawgate import config
    from clawgate.plugins.host import PluginHost

    async def main(cases):
        for channels in cases:
            with tempfile.TemporaryDirectory() as tmp:
                settings = config.Settings(config.parse({"channels": channels}),
                                           state_dir=Path(tmp),
                                           config_path=Path(tmp) / "c.toml")
                host = PluginHost(settings)
                await host.start()
                registered = sorted(host.current.registry.channels)
                await host.aclose()
            print("hikari" in sys.modules, "aiohttp" in sys.modules, ",".join(registered))

    asyncio.run(main(eval(sys.argv[1])))
""")


def test_hikari_stays_out_until_an_account_starts() -> None:
    # Zero config, then configured but not started (the plugin host alone).
    cases = [{}, {"discord": {"bot_token": "a.b.c"}}]
    out = subprocess.run([sys.executable, "-c", PROBE, repr(cases)], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")[:2]
    assert len(lines) == 2 and all(line.startswith("False False ") for line in lines), lines
    assert all("discord" in line.split()[2].split(",") for line in lines)  # yet registered


async def test_hikari_touches_nothing_process_wide(tmp_path: Path) -> None:
    import hikari  # noqa: F401  (importing it and aiohttp has its own effects: not ours to test)

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    filters = list(warnings.filters)
    sigint, sigterm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake):
        ada = fake.user("ada")
        fake.inject_message(fake.dm(ada), ada, "hi")
        await until(lambda: bot_texts(fake, fake.dm(ada)) == ["hi"], within=10)
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert "check for package updates" not in names
    assert root.handlers == handlers and root.level == level
    assert warnings.filters == filters and logging.logThreads
    assert signal.getsignal(signal.SIGINT) is sigint
    assert signal.getsignal(signal.SIGTERM) is sigterm


async def test_bad_config_names_the_key(tmp_path: Path) -> None:
    async with DiscordFake() as fake:
        async with discord_gateway(tmp_path / "a", fake, connected=False,
                                   bot_token="not a token") as server:
            row = await status(server)
            assert row["configured"] is False and "bot_token" in row["lastError"]
        async with discord_gateway(tmp_path / "b", fake, connected=False,
                                   intents={"message_content": "yes"}) as server:
            row = await status(server)
            assert "intents.message_content" in row["lastError"]
        async with discord_gateway(tmp_path / "c", fake, connected=False,
                                   bot_token=None,
                                   bot_token_env="NO_SUCH_DISCORD_TOKEN") as server:
            assert "NO_SUCH_DISCORD_TOKEN" in (await status(server))["lastError"]
        assert fake.counts["gateway:connect"] == 0


async def test_the_token_may_come_from_the_environment(tmp_path: Path) -> None:
    async with DiscordFake() as fake:
        config = {"bot_token_env": "TEST_DISCORD_TOKEN"}
        async with discord_gateway(tmp_path, fake, env={"TEST_DISCORD_TOKEN": fake.token},
                                   **config, bot_token=None):
            identify = await fake.wait_for("gateway:IDENTIFY")
            assert identify.body["token"] == fake.token


async def test_without_message_content_guild_messages_are_mention_only(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(
            tmp_path, fake, intents={"message_content": False},
            groups={"*": {"require_mention": False}}) as server:
        identify = fake.calls_of("gateway:IDENTIFY")[0]
        assert not identify.body["intents"] & Intent.MESSAGE_CONTENT
        row = await status(server)
        assert "mention" in row["intentsWarning"] and row["messageContent"] is False
        general = fake.text_channel(fake.guild("Guild"), "general")
        ada = fake.user("ada")
        bot = fake.bot_user["id"]
        fake.inject_message(general, ada, "arrives without content")
        fake.inject_message(general, ada, f"<@{bot}> with a mention")
        await until(lambda: bot_texts(fake, general) == ["Ada: with a mention"], within=10)
        fake.inject_message(fake.dm(ada), ada, "DMs keep their content")
        await until(lambda: bot_texts(fake, fake.dm(ada)) == ["DMs keep their content"],
                    within=10)
        assert len(posts(fake, general)) == 1


async def test_the_gateway_url_can_be_overridden(tmp_path: Path) -> None:
    async with DiscordFake() as fake:
        override = fake.ws_url + "/resume"  # the fake serves its Gateway there too
        async with discord_gateway(tmp_path, fake, gateway_url=override):
            assert fake.calls_of("gateway:connect")[0].path == "/resume"


async def test_files_in_and_out(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "chart.png").write_bytes(b"\x89PNG chart")
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake, streaming="off"):
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.inject_message(dm, ada, "see MEDIA:./chart.png", files=[
            Upload("files[0]", "cat.jpg", "image/jpeg", b"\xff\xd8 cat")])
        # The echo model takes no images: the attachment reaches it as a placeholder; its
        # reply carries the MEDIA token, sent as a file part after the text.
        await until(lambda: len(fake.history(dm)) == 3, within=10)
        text, upload = fake.history(dm)[1:]
        assert text["content"] == "see\n[image: cat.jpg, image/jpeg]"
        assert upload["content"] == "" and upload["attachments"][0]["filename"] == "chart.png"
        assert fake.attachments[upload["attachments"][0]["id"]] == b"\x89PNG chart"
