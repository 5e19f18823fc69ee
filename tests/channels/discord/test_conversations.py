"""Discord end to end: a message over the fake's Gateway -> a real gateway -> the agent -> the
reply POSTed to the fake's REST API, through hikari. DMs with previews, guild channels with
mention gating, threads as their own sessions, long replies, the bot's own and other bots'
messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.channels.discord.support import (
    PATCH,
    TYPING,
    body,
    bot_texts,
    discord_gateway,
    drip,
    posts,
    status,
)
from tests.support.fakes.discord_api import DiscordFake
from tests.support.fakes.harness import Upload
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio


async def test_dm_round_trip_with_preview_edits(tmp_path: Path) -> None:
    text = "The quick brown fox jumps over the lazy dog, twice."
    async with DiscordFake() as fake, \
            discord_gateway(tmp_path, fake, drip(chunk_chars=6, interval_ms=300),
                            streaming="partial") as server:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.inject_message(dm, ada, text)
        await until(lambda: bot_texts(fake, dm) == [text], within=15)
        sent = posts(fake, dm)
        assert len(sent) == 1, [body(c) for c in sent]  # the preview became the answer
        first = body(sent[0])
        assert first["content"] != text and text.startswith(first["content"].rstrip("…"))
        assert first["allowed_mentions"]["parse"] == ["users"]
        assert len(first["nonce"]) == 25 and first["enforce_nonce"] is True
        edits = [c for c in fake.calls_of(PATCH) if c.path.split("/")[4] == dm["id"]]
        assert len(edits) >= 2 and body(edits[-1])["content"] == text
        assert [c for c in fake.calls_of(TYPING) if c.path.split("/")[4] == dm["id"]]
        row = await status(server)
        assert row["connected"] is True and row["mode"] == "gateway"
        assert row["bot"] == {"id": fake.bot_user["id"], "username": "clawgate"}
        assert row["lastEventAt"] and row["lastInboundAt"] and row["reconnectAttempts"] == 0
        store = server.gateway.runtime.store

        async def recorded() -> bool:
            return [m.content for m in await store.transcript("agent:main:main")] == [text, text]

        await until(recorded, within=5)


async def test_guild_channel_is_mention_gated(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake) as server:
        general = fake.text_channel(fake.guild("Guild"), "general")
        ada = fake.user("ada")
        bot = fake.bot_user["id"]
        fake.inject_message(general, ada, "chatter the bot should only keep as context")
        fake.inject_message(general, ada, f"<@{bot}> what is up?")
        await until(lambda: len(bot_texts(fake, general)) == 1, within=10)
        reply = bot_texts(fake, general)[0]
        # The unaddressed message came along as context; the mention was taken out.
        assert "Ada: chatter the bot should only keep as context" in reply
        assert reply.endswith("Ada: what is up?") and "<@" not in reply
        answer = fake.history(general)[-1]
        fake.inject_message(general, ada, "and a reply to you", reply_to=answer)  # addressed
        fake.inject_message(general, ada, f"<@!{bot}>  nickname form")
        await until(lambda: len(bot_texts(fake, general)) == 3, within=10)
        assert bot_texts(fake, general)[1:] == ["Ada: and a reply to you", "Ada: nickname form"]
        key = f"agent:main:discord:group:{general['id']}"
        assert len(await server.gateway.runtime.store.transcript(key)) == 6
        assert posts(fake, general)[0].body.get("message_reference") is None  # reply_to off


async def test_threads_are_sessions_of_their_own(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake) as server:
        general = fake.text_channel(fake.guild("Guild"), "general")
        ada = fake.user("ada")
        bot = fake.bot_user["id"]
        thread = fake.thread(general, "a topic", owner=ada)
        fake.inject_message(thread, ada, f"<@{bot}> in the thread")
        await until(lambda: bot_texts(fake, thread) == ["Ada: in the thread"], within=10)
        fake.inject_message(general, ada, f"<@{bot}> in the channel")
        await until(lambda: bot_texts(fake, general) == ["Ada: in the channel"], within=10)
        store = server.gateway.runtime.store
        base = f"agent:main:discord:group:{general['id']}"
        in_thread = await store.transcript(f"{base}:thread:{thread['id']}")
        assert [m.content for m in in_thread] == ["Ada: in the thread"] * 2
        assert [m.content for m in await store.transcript(base)] == ["Ada: in the channel"] * 2


async def test_a_long_reply_is_split_at_2000_characters_and_17_lines(tmp_path: Path) -> None:
    lines = "\n".join(f"line {n}: " + "word " * 20 for n in range(40))
    block = "\n\n".join("paragraph " + "x" * 150 + " " + "lorem ipsum " * 40 for _ in range(10))
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake):
        ada = fake.user("ada")
        dm = fake.dm(ada)
        for text in (lines, block):
            before = len(bot_texts(fake, dm))
            fake.inject_message(dm, ada, text)
            await until(lambda t=text, b=before: "".join(bot_texts(fake, dm)[b:]) == t,
                        within=15)
            parts = bot_texts(fake, dm)[before:]
            assert len(parts) >= 3
            shape = [(len(p), len(p.rstrip("\n").split("\n"))) for p in parts]
            assert all(size <= 2000 and count <= 17 for size, count in shape), shape


async def test_own_and_other_bots_messages_are_not_answered(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake) as server:
        robot = fake.user("robot")
        robot["bot"] = True
        general = fake.text_channel(fake.guild("Guild"), "general")
        bot = fake.bot_user["id"]
        fake.inject_message(fake.dm(robot), robot, "beep from another bot")
        fake.inject_message(general, robot, f"<@{bot}> beep in the channel")
        ada = fake.user("ada")
        # One channel's messages are admitted in order: had the robot's been taken, its
        # reply would come first.
        fake.inject_message(general, ada, f"<@{bot}> a human")
        await until(lambda: bot_texts(fake, general) == ["Ada: a human"], within=10)
        assert bot_texts(fake, fake.dm(robot)) == []
        # The bot's own reply came back over the Gateway and was not taken as a message.
        key = f"agent:main:discord:group:{general['id']}"
        assert len(await server.gateway.runtime.store.transcript(key)) == 2
        assert len(fake.history(general)) == 3


async def test_other_bots_are_answered_when_allowed(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(tmp_path, fake, allow_bots=True):
        robot = fake.user("robot")
        robot["bot"] = True
        fake.inject_message(fake.dm(robot), robot, "beep")
        await until(lambda: bot_texts(fake, fake.dm(robot)) == ["beep"], within=10)


async def test_dm_pairing_then_approval(tmp_path: Path) -> None:
    async with DiscordFake() as fake, \
            discord_gateway(tmp_path, fake, dm_policy="pairing", allow_from=[]) as server, \
            open_client(server) as ws:
        ada = fake.user("ada")
        dm = fake.dm(ada)
        fake.inject_message(dm, ada, "hello?")
        await until(lambda: len(bot_texts(fake, dm)) == 1, within=10)
        found = re.search(r"approve this code: ([A-Z0-9]{8})", bot_texts(fake, dm)[0])
        assert found is not None and "clawgate pairing approve discord" in bot_texts(fake, dm)[0]
        listed = await ws.ok("channels.pairing.list", {"channel": "discord"})
        assert [r["id"] for r in listed["requests"]] == [ada["id"]]
        await ws.ok("channels.pairing.approve", {"channel": "discord", "code": found.group(1),
                                                 "notify": True})
        await until(lambda: len(bot_texts(fake, dm)) == 2, within=10)  # "you're approved"
        fake.inject_message(dm, ada, "now?")
        await until(lambda: bot_texts(fake, dm)[-1] == "now?", within=10)


async def test_reply_to_first_and_images_for_a_model_that_takes_them(tmp_path: Path) -> None:
    async with DiscordFake() as fake, discord_gateway(
            tmp_path, fake, drip(chunk_chars=500, interval_ms=0), reply_to_mode="first"):
        general = fake.text_channel(fake.guild("Guild"), "general")
        ada = fake.user("ada")
        asked = fake.inject_message(
            general, ada, f"<@{fake.bot_user['id']}> what is this?",
            files=[Upload("files[0]", "cat.png", "image/png", b"\x89PNG cat")])
        await until(lambda: len(bot_texts(fake, general)) == 1, within=10)
        answer = fake.history(general)[-1]
        assert answer["content"] == "Ada: what is this? [1 image(s)]"
        assert answer["message_reference"]["message_id"] == asked["id"]
        assert fake.counts["GET attachment"] == 1  # fetched from the CDN URL
