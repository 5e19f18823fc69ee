"""The Discord fake, driven by hikari's real GatewayBot (REST + Gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import hikari
import pytest

from tests.support.fakes.discord_api import DiscordFake, Intent
from tests.support.fakes.harness import Upload

pytestmark = pytest.mark.anyio

INTENTS = hikari.Intents.ALL_UNPRIVILEGED | hikari.Intents.MESSAGE_CONTENT


@pytest.fixture
async def fake() -> AsyncIterator[DiscordFake]:
    async with DiscordFake() as server:
        yield server


def make_bot(fake: DiscordFake, intents: hikari.Intents = INTENTS, *,
             token: str | None = None) -> hikari.GatewayBot:
    # logs=None / banner=None / no update check: hikari then touches nothing process-wide.
    return hikari.GatewayBot(token or fake.token, rest_url=fake.rest_url, intents=intents,
                             logs=None, banner=None, suppress_optimization_warning=True)


class Inbox:
    def __init__(self, bot: hikari.GatewayBot) -> None:
        self.events: list[hikari.MessageCreateEvent] = []
        bot.subscribe(hikari.MessageCreateEvent, self.add)

    async def add(self, event: hikari.MessageCreateEvent) -> None:
        self.events.append(event)

    def contents(self, *, humans_only: bool = True) -> list[str | None]:
        return [e.message.content for e in self.events if not (humans_only and e.is_bot)]


@pytest.fixture
async def running(fake: DiscordFake) -> AsyncIterator[tuple[hikari.GatewayBot, Inbox]]:
    bot = make_bot(fake)
    inbox = Inbox(bot)
    await asyncio.wait_for(bot.start(check_for_updates=False), 10)
    try:
        yield bot, inbox
    finally:
        await bot.close()


async def test_login_receive_and_send(fake: DiscordFake,
                                      running: tuple[hikari.GatewayBot, Inbox]) -> None:
    bot, inbox = running
    identify = await fake.wait_for("gateway:IDENTIFY")
    assert identify.body["intents"] == int(INTENTS)
    connect = fake.calls_of("gateway:connect")[0]
    assert connect.query["v"] == "10" and connect.query["encoding"] == "json"
    assert connect.query["compress"] == "zlib-stream"  # frames went out zlib-compressed
    me = bot.get_me()
    assert me is not None and me.id == int(fake.bot_user["id"])

    guild = fake.guild("Test Guild")
    channel = fake.text_channel(guild, "general")
    ada = fake.user("ada")
    fake.inject_message(channel, ada, "hello bot")
    dm_message = fake.inject_message(fake.dm(ada), ada, "psst")
    await fake.wait_until(lambda: inbox.contents() == ["hello bot", "psst"])
    assert inbox.events[0].message.guild_id == int(guild["id"])

    sent = await bot.rest.create_message(int(channel["id"]), "hi ada",
                                         reply=int(inbox.events[0].message.id))
    assert sent.content == "hi ada" and sent.referenced_message is not None
    assert fake.history(channel)[-1]["message_reference"]["message_id"] == str(
        inbox.events[0].message.id)
    edited = await bot.rest.edit_message(int(channel["id"]), sent, "hi ada (edited)")
    assert edited.content == "hi ada (edited)" and edited.edited_timestamp is not None
    await bot.rest.trigger_typing(int(channel["id"]))
    thread = await bot.rest.create_message_thread(int(channel["id"]), sent, "follow-up")
    assert thread.id == sent.id and thread.parent_id == int(channel["id"])
    in_thread = fake.inject_message(fake.channels[str(thread.id)], ada, "in the thread")
    await fake.wait_until(lambda: "in the thread" in inbox.contents())
    upload = await bot.rest.create_message(int(dm_message["channel_id"]), "file",
                                           attachment=hikari.Bytes(b"data", "notes.txt"))
    assert upload.attachments[0].filename == "notes.txt"
    assert fake.attachments[str(upload.attachments[0].id)] == b"data"
    await bot.rest.delete_message(int(channel["id"]), sent)
    assert all(m["id"] != str(sent.id) for m in fake.history(channel))
    assert in_thread["position"] == 0
    post = await fake.wait_for("POST /channels/{channel_id}/messages")
    assert post.headers["authorization"] == f"Bot {fake.token}"


async def test_content_over_2000_chars_is_an_invalid_form_body(
        fake: DiscordFake, running: tuple[hikari.GatewayBot, Inbox]) -> None:
    bot, _ = running
    channel = fake.text_channel(fake.guild(), "general")
    with pytest.raises(hikari.BadRequestError) as raised:
        await bot.rest.create_message(int(channel["id"]), "x" * 2001)
    assert raised.value.code == 50035
    assert "content" in raised.value.errors
    with pytest.raises(hikari.NotFoundError):
        await bot.rest.create_message(123, "nowhere")


async def test_message_content_intent_rule(fake: DiscordFake) -> None:
    bot = make_bot(fake, hikari.Intents.ALL_UNPRIVILEGED)
    inbox = Inbox(bot)
    await asyncio.wait_for(bot.start(check_for_updates=False), 10)
    try:
        channel = fake.text_channel(fake.guild(), "general")
        ada = fake.user("ada")
        fake.inject_message(channel, ada, "not for you")
        fake.inject_message(channel, ada, f"<@{fake.bot_user['id']}> for you")
        fake.inject_message(fake.dm(ada), ada, "dm text")
        await fake.wait_until(lambda: len(inbox.events) == 3)
        assert inbox.contents() == [None, f"<@{fake.bot_user['id']}> for you", "dm text"]
    finally:
        await bot.close()


async def test_resume_after_a_dropped_socket_replays_missed_events_once(
        fake: DiscordFake, running: tuple[hikari.GatewayBot, Inbox]) -> None:
    _, inbox = running
    channel = fake.text_channel(fake.guild(), "general")
    ada = fake.user("ada")
    fake.inject_message(channel, ada, "before")
    await fake.wait_until(lambda: inbox.contents() == ["before"])
    assert fake.gateway.drop() == 1
    fake.inject_message(channel, ada, "while away")  # buffered for the session
    resume = await fake.wait_for("gateway:RESUME", within=15)
    assert resume.body["session_id"] in fake.gateway.sessions
    await fake.wait_until(lambda: inbox.contents() == ["before", "while away"], within=10)
    fake.inject_message(channel, ada, "after")
    await fake.wait_until(lambda: inbox.contents() == ["before", "while away", "after"])
    assert fake.calls_of("gateway:connect")[-1].path == "/resume"
    assert fake.counts["gateway:IDENTIFY"] == 1


async def test_invalid_session_makes_the_bot_identify_again(
        fake: DiscordFake, running: tuple[hikari.GatewayBot, Inbox]) -> None:
    _, inbox = running
    fake.gateway.invalidate(resumable=False)
    await fake.wait_until(lambda: fake.counts["gateway:IDENTIFY"] == 2, within=15)
    channel = fake.text_channel(fake.guild(), "general")
    fake.inject_message(channel, fake.user("ada"), "new session")
    await fake.wait_until(lambda: inbox.contents() == ["new session"], within=10)


async def test_rate_limited_send_is_retried_by_hikari(
        fake: DiscordFake, running: tuple[hikari.GatewayBot, Inbox]) -> None:
    bot, _ = running
    channel = fake.text_channel(fake.guild(), "general")
    route = "POST /channels/{channel_id}/messages"
    fake.rate_limit(route, retry_after=0.2)
    sent = await bot.rest.create_message(int(channel["id"]), "patient")
    assert sent.content == "patient"
    assert fake.counts[route] == 2
    assert [m["content"] for m in fake.history(channel)] == ["patient"]


async def test_bucket_limit_is_enforced_with_headers() -> None:
    async with DiscordFake(route_limit=2, route_window=0.3) as fake:
        channel = fake.text_channel(fake.guild(), "general")
        rest = hikari.RESTApp(url=fake.rest_url)
        await rest.start()
        try:
            async with rest.acquire(fake.token, hikari.TokenType.BOT) as client:
                for n in range(3):
                    await client.create_message(int(channel["id"]), f"m{n}")
        finally:
            await rest.close()
        # hikari read the bucket headers and waited instead of hitting a 429.
        assert [m["content"] for m in fake.history(channel)] == ["m0", "m1", "m2"]
        assert fake.counts["POST /channels/{channel_id}/messages"] == 3  # no 429 needed


async def test_bad_token_is_rejected(fake: DiscordFake) -> None:
    bot = make_bot(fake, token="MTAw.bad.token")
    with pytest.raises(hikari.UnauthorizedError):
        await asyncio.wait_for(bot.start(check_for_updates=False), 10)
    await bot.close()
    assert fake.counts["GET /gateway/bot"] == 1
    assert Intent.MESSAGE_CONTENT == int(hikari.Intents.MESSAGE_CONTENT)


async def test_reconnect_request_is_followed_by_a_resume(
        fake: DiscordFake, running: tuple[hikari.GatewayBot, Inbox]) -> None:
    bot, inbox = running
    guild = fake.guild("Joined later")
    await fake.wait_until(lambda: bot.cache.get_guild(int(guild["id"])) is not None)
    channel = fake.text_channel(guild, "general")
    await fake.wait_until(lambda: bot.cache.get_guild_channel(int(channel["id"])) is not None)
    fake.gateway.reconnect()
    await fake.wait_for("gateway:RESUME", within=15)
    fake.inject_message(channel, fake.user("ada"), "after reconnect")
    await fake.wait_until(lambda: inbox.contents() == ["after reconnect"], within=10)
    assert fake.counts["gateway:IDENTIFY"] == 1


async def test_enforced_nonce_returns_the_first_message(
        fake: DiscordFake, running: tuple[hikari.GatewayBot, Inbox]) -> None:
    bot, _ = running
    channel = fake.text_channel(fake.guild(), "general")
    first = await bot.rest.create_message(int(channel["id"]), "once", nonce="intent-1:1")
    again = await bot.rest.create_message(int(channel["id"]), "once", nonce="intent-1:1")
    other = await bot.rest.create_message(int(channel["id"]), "twice", nonce="intent-1:2")
    assert again.id == first.id and other.id != first.id
    assert [m["content"] for m in fake.history(channel)] == ["once", "twice"]
    with pytest.raises(hikari.BadRequestError) as raised:
        await bot.rest.create_message(int(channel["id"]), "x", nonce="n" * 26)
    assert "nonce" in raised.value.errors


async def test_a_user_message_can_carry_files(
        fake: DiscordFake, running: tuple[hikari.GatewayBot, Inbox]) -> None:
    _, inbox = running
    ada = fake.user("ada")
    sent = fake.inject_message(fake.dm(ada), ada, "a picture",
                               files=[Upload("files[0]", "cat.png", "image/png", b"\x89PNG")])
    await fake.wait_until(lambda: inbox.contents() == ["a picture"])
    attachment = inbox.events[0].message.attachments[0]
    assert attachment.filename == "cat.png" and attachment.media_type == "image/png"
    assert attachment.size == 4 and attachment.url == sent["attachments"][0]["url"]
    assert await attachment.read() == b"\x89PNG"
