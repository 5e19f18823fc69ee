"""The Discord channel's REST side, called as the core calls it (``send``, ``edit``, ``typing``,
``probe``, ``fetch``) against the fake through hikari: what Discord receives, and how its
errors reach the delivery queue (retryable or not, after how long)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from clawgate import (
    Account,
    Attachment,
    ChannelAuthError,
    ChannelSendError,
    OutboundMedia,
    OutboundMessage,
    Target,
)
from clawgate.bundled.discord.channel import DiscordChannel
from tests.channels.discord.support import PATCH, POST, body
from tests.support.fakes.discord_api import DiscordFake
from tests.support.fakes.harness import Upload

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[DiscordFake]:
    async with DiscordFake() as server:
        yield server


@pytest.fixture
async def channel() -> AsyncIterator[DiscordChannel]:
    plugin = DiscordChannel()
    await plugin.open(None)
    try:
        yield plugin
    finally:
        await plugin.close(None)


def account(fake: DiscordFake, **config: Any) -> Account:
    return Account("discord", "default", {
        "bot_token": fake.token, "api_base_url": fake.rest_url, "rate_limit_wait_s": 0.2,
        "timeout_s": 1, **config})


def part(to: str, text: str, key: str = "intent-1:1", **target: Any) -> OutboundMessage:
    return OutboundMessage(Target(to, **target), text, key)


async def test_send_reply_thread_and_file(fake: DiscordFake, channel: DiscordChannel) -> None:
    general = fake.text_channel(fake.guild(), "general")
    ada = fake.user("ada")
    asked = fake.inject_message(general, ada, "question")
    me = account(fake)
    receipt = await channel.send(me, part(general["id"], "**answer** @everyone", "i:1",
                                          chat_type="group", reply_to=asked["id"]))
    sent = fake.history(general)[-1]
    assert receipt.message_ids == (sent["id"],)
    assert sent["content"] == "**answer** @everyone"  # Markdown as written, Discord renders it
    assert sent["message_reference"]["message_id"] == asked["id"]
    payload = body(fake.calls_of(POST)[-1])
    mentions = payload["allowed_mentions"]  # no @everyone/@here/role pings, no reply ping
    assert mentions["parse"] == ["users"] and not mentions.get("replied_user", False)
    thread = fake.thread(general, "topic")
    await channel.send(me, part(general["id"], "in the thread", "i:2", chat_type="group",
                                thread=thread["id"]))
    assert [m["content"] for m in fake.history(thread)] == ["in the thread"]
    media = OutboundMedia("file", "notes.txt", "text/plain", b"hello file")
    file_part = OutboundMessage(Target(general["id"], "group"), "", "i:3", media=media)
    receipt = await channel.send(me, file_part)
    stored = fake.history(general)[-1]
    assert stored["id"] == receipt.message_ids[0] and stored["content"] == ""
    assert stored["attachments"][0]["filename"] == "notes.txt"
    assert fake.attachments[stored["attachments"][0]["id"]] == b"hello file"
    upload = fake.calls_of(POST)[-1].body
    assert isinstance(upload["files[0]"], Upload)


async def test_a_retried_part_is_not_created_twice(fake: DiscordFake,
                                                   channel: DiscordChannel) -> None:
    dm = fake.dm(fake.user("ada"))
    me = account(fake)
    first = await channel.send(me, part(dm["id"], "once", "intent-9:1"))
    again = await channel.send(me, part(dm["id"], "once", "intent-9:1"))
    assert first == again and [m["content"] for m in fake.history(dm)] == ["once"]


async def test_edit_typing_probe_and_fetch(fake: DiscordFake, channel: DiscordChannel) -> None:
    ada = fake.user("ada")
    dm = fake.dm(ada)
    me = account(fake)
    receipt = await channel.send(me, part(dm["id"], "draft"))
    await channel.edit(me, Target(dm["id"]), receipt.message_ids[0], "final")
    assert fake.history(dm)[-1]["content"] == "final"
    assert body(fake.calls_of(PATCH)[-1])["allowed_mentions"]["parse"] == ["users"]
    await channel.typing(me, Target(dm["id"]))
    assert fake.counts["POST /channels/{channel_id}/typing"] == 1
    assert await channel.probe(me) == {"ok": True, "bot": {"id": fake.bot_user["id"],
                                                           "username": "clawgate"}}
    photo = fake.inject_message(dm, ada, "look", files=[
        Upload("files[0]", "cat.png", "image/png", b"\x89PNG...")])["attachments"][0]
    data, mime = await channel.fetch(me, Attachment("image", photo["url"], "image/png"))
    assert data == b"\x89PNG..." and mime == "image/png"


async def test_errors_reach_the_queue_with_the_right_flags(fake: DiscordFake,
                                                           channel: DiscordChannel) -> None:
    dm = fake.dm(fake.user("ada"))
    me = account(fake)

    async def refused() -> ChannelSendError:
        with pytest.raises(ChannelSendError) as raised:
            await channel.send(me, part(dm["id"], "x"))
        return raised.value

    fake.fail_status(POST, 503)
    error = await refused()
    assert error.retryable and "503" in str(error)
    fake.error(POST, 50013, "Missing Permissions", status=403)
    error = await refused()
    assert not error.retryable and "Missing Permissions" in str(error)
    fake.error(POST, 50035, "Invalid Form Body", status=400)
    assert not (await refused()).retryable
    fake.hang(POST, seconds=10)
    error = await refused()
    assert error.retryable
    with pytest.raises(ChannelSendError) as nowhere:
        await channel.send(me, part("123", "x"))
    assert not nowhere.value.retryable and "Unknown Channel" in str(nowhere.value)
    with pytest.raises(ChannelSendError) as too_long:
        await channel.send(me, part(dm["id"], "x" * 2001))
    assert not too_long.value.retryable
    receipt = await channel.send(me, part(dm["id"], "to delete", "d:1"))  # then deleted:
    del fake.messages[dm["id"]][receipt.message_ids[0]]
    with pytest.raises(ChannelSendError) as gone:
        await channel.edit(me, Target(dm["id"]), receipt.message_ids[0], "edited")
    assert not gone.value.retryable and "Unknown Message" in str(gone.value)


async def test_a_long_rate_limit_says_when_to_retry() -> None:
    async with DiscordFake(route_limit=1, route_window=1.0) as fake:
        plugin = DiscordChannel()
        try:
            dm = fake.dm(fake.user("ada"))
            fake.rate_limit(POST, retry_after=3.0)
            with pytest.raises(ChannelSendError) as raised:
                await plugin.send(account(fake), part(dm["id"], "x"))
            assert raised.value.retryable and raised.value.retry_after_s is not None
            # X-RateLimit-Reset is an epoch time in milliseconds: the client's figure may be
            # up to a rounding (0.5 ms) above the 3 s the platform said.
            assert 2.0 < raised.value.retry_after_s <= 3.001
        finally:
            await plugin.close(None)


async def test_a_refused_token_is_an_auth_error(fake: DiscordFake,
                                                channel: DiscordChannel) -> None:
    dm = fake.dm(fake.user("ada"))
    wrong = account(fake, bot_token="MTAwMDAwMDAwMDAwMDAwMDAx.not.the-token")
    with pytest.raises(ChannelAuthError) as raised:
        await channel.send(wrong, part(dm["id"], "x"))
    assert "401" in str(raised.value) and "Reset Token" in raised.value.fix
    assert (await channel.probe(wrong))["ok"] is False


async def test_a_stopped_channel_refuses_to_send(fake: DiscordFake) -> None:
    plugin = DiscordChannel()
    await plugin.close(None)
    with pytest.raises(ChannelSendError) as raised:
        await plugin.send(account(fake), part("1", "x"))
    assert raised.value.retryable and "stopped" in str(raised.value)
