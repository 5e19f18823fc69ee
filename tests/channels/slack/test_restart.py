"""A real `clawgate gateway` process with a Slack account, killed with SIGKILL mid-reply: after
a restart nothing acknowledged is lost and nothing is answered twice."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from tests.channels.slack.support import texts
from tests.gateway.test_process import GatewayProcess
from tests.support.fakes.slack import SlackFake
from tests.support.poll import until

pytestmark = pytest.mark.anyio

CONFIG = textwrap.dedent('''
    [channels.slack]
    bot_token = "{bot}"
    app_token = "{app}"
    api_base_url = "{api}"
    ping_interval_s = 0.2
    streaming = "off"
    dm_policy = "open"
    allow_from = ["*"]

    [delivery]
    backoff_base_ms = 50
    backoff_max_ms = 200
''')


async def test_kill_9_while_the_reply_is_being_posted(tmp_path: Path) -> None:
    async with SlackFake() as fake:
        config = CONFIG.format(bot=fake.bot_token, app=fake.app_token, api=fake.api_url)
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.hang("chat.postMessage", seconds=30)
        state = tmp_path / "state"
        gateway = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(gateway.wait_ready)
            await fake.wait_until(lambda: fake.connections, within=20)
            fake.inject_message(dm, ada, "survive")
            await fake.wait_for("chat.postMessage", within=20)  # admitted, acked, reply held
            assert fake.unacked == []
            gateway.proc.kill()
            await asyncio.to_thread(gateway.proc.wait, 10)
        finally:
            gateway.stop()
        await fake.wait_until(lambda: not fake.connections, within=10)
        fake.inject_message(dm, ada, "while down")  # Slack keeps it until someone connects
        again = GatewayProcess(state, config=config)
        try:
            await asyncio.to_thread(again.wait_ready)
            await until(lambda: sorted(texts(fake, dm)) == ["survive", "while down"], within=20)
            await until(lambda: not fake.unacked, within=10)
            assert sorted(texts(fake, dm)) == ["survive", "while down"]
        finally:
            again.stop()
