"""The Slack channel over Socket Mode, end to end: the fake sends envelopes, a real gateway
receives them through slack-sdk, the echo agent answers, the fake receives the Web API calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.slack.support import slack_gateway, status_row, texts
from tests.support.fakes.slack import SlackFake
from tests.support.poll import until

pytestmark = pytest.mark.anyio


async def test_dm_round_trip(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_message(dm, ada, "hello **there**")
        await until(lambda: texts(fake, dm) == ["hello *there*"], within=10)
        row = await status_row(server)
        assert row["mode"] == "socket" and row["connected"] is True
        assert row["bot"]["id"] == fake.bot_user_id
