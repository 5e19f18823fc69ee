"""Groups, supergroups and forum topics: mention gating (an @bot entity, a reply to the bot,
/cmd@bot, mention_patterns), context kept from unaddressed chatter, one session per topic with
replies in the topic; DM pairing through /start and the command menu."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.channels.telegram.support import PTB_WARNINGS, calls, telegram_gateway, texts, to_chat
from tests.support.fakes.telegram import TelegramFake
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(PTB_WARNINGS)]
CODE = re.compile(r"approve this code: ([A-Z0-9]{8})")
GREETING = "Hi! Send me a message and I'll answer. /help lists the commands."


async def test_mention_gating_in_a_group(tmp_path: Path) -> None:
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, group_policy="open", streaming="off",
                             mention_patterns=[r"\bclaw\b"]) as server:
        tg = fake.bot
        group = tg.group("Team")
        bob = tg.user("Bob")
        tg.inject_text(group, bob, "just chatter")
        tg.inject_message(group, bob, text="@other_bot not for us",
                          entities=[{"type": "mention", "offset": 0, "length": 10}])
        tg.inject_mention(group, bob, "what's up?")
        await until(lambda: len(texts(tg, group)) == 1, within=10)
        reply = texts(tg, group)[0]
        context, current = reply.split("[Current message - respond to this]")
        assert "Bob: just chatter" in context and "Bob: @other_bot not for us" in context
        assert current.strip() == "Bob: @clawgate_bot what's up?"
        asked = tg.sent(group)[0]
        tg.inject_reply(group, bob, "a reply to the bot", to=asked)
        await until(lambda: len(texts(tg, group)) == 2, within=10)
        assert texts(tg, group)[1] == "Bob: a reply to the bot"
        tg.inject_text(group, bob, "hey claw, you there?")
        await until(lambda: len(texts(tg, group)) == 3, within=10)
        tg.inject_command(group, bob, "status")  # /status@clawgate_bot
        await until(lambda: len(texts(tg, group)) == 4, within=10)
        assert "main" in texts(tg, group)[3]
        key = f"agent:main:telegram:group:{group['id']}"
        session = await server.gateway.runtime.store.transcript(key)
        assert len(session) == 6  # three addressed messages and their replies (not /status)


async def test_forum_topics_are_sessions_of_their_own(tmp_path: Path) -> None:
    slow = {"plugins": {"entries": {"echo": {"config": {"delay_ms": 500}}}}}  # to see typing
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, slow, group_policy="open",
                             streaming="off") as server:
        tg = fake.bot
        forum = tg.group("Forum", forum=True)
        ann = tg.user("Ann")
        # Message 1 of a forum is in the General topic (thread id 1, which replies leave out):
        # created topics come after it.
        tg.inject_text(forum, ann, "in General, unaddressed")
        ideas = tg.create_topic(forum, "Ideas")
        bugs = tg.create_topic(forum, "Bugs")
        tg.inject_mention(forum, ann, "idea one", thread_id=ideas)
        tg.inject_mention(forum, ann, "bug one", thread_id=bugs)
        await until(lambda: len(texts(tg, forum)) == 2, within=10)
        by_topic = {m["message_thread_id"]: m["text"] for m in tg.sent(forum)}
        assert sorted(by_topic) == sorted([ideas, bugs])
        assert by_topic[ideas].endswith("Ann: @clawgate_bot idea one")
        assert by_topic[bugs] == "Ann: @clawgate_bot bug one"
        assert {c["message_thread_id"] for c in calls(fake, "sendChatAction")} == {
            str(ideas), str(bugs)}
        store = server.gateway.runtime.store
        for topic in (ideas, bugs):
            key = f"agent:main:telegram:group:{forum['id']}:topic:{topic}"
            assert len(await store.transcript(key)) == 2, key


async def test_replies_thread_when_reply_to_mode_says_so(tmp_path: Path) -> None:
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, reply_to_mode="first", streaming="off"):
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        asked = tg.inject_text(chat, ada, "thread me")["message"]
        await until(lambda: texts(tg, chat) == ["thread me"], within=10)
        assert tg.sent(chat)[0]["reply_to_message"]["message_id"] == asked["message_id"]


async def test_start_gets_a_pairing_code_then_a_greeting(tmp_path: Path) -> None:
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, dm_policy="pairing", allow_from=[],
                             streaming="off") as server:
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_command(chat, ada, "start")
        await until(lambda: any(CODE.search(t) for t in texts(tg, chat)), within=10)
        code = next(m.group(1) for t in texts(tg, chat) if (m := CODE.search(t)))
        store = server.gateway.runtime.store
        assert await store.get("agent:main:main") is None  # nothing reached the agent
        async with open_client(server) as ws:
            approved = await ws.ok("channels.pairing.approve", {"channel": "telegram",
                                                                "code": code})
            assert approved["approved"] is True
        await until(lambda: len(texts(tg, chat)) == 2, within=10)  # "you were approved"
        tg.inject_command(chat, ada, "start")
        await until(lambda: texts(tg, chat)[-1:] == [GREETING], within=10)
        tg.inject_text(chat, ada, "now we talk")
        await until(lambda: texts(tg, chat)[-1:] == ["now we talk"], within=10)
        session = await store.transcript("agent:main:main")
        assert [m.content for m in session] == ["now we talk", "now we talk"]
        menu = tg.commands[('{"type":"default"}', "")]
        names = [c["command"] for c in menu]
        assert {"start", "new", "reset", "stop", "status", "help"} <= set(names)
        assert all(1 <= len(c["description"]) <= 256 for c in menu)
        assert fake.calls_of(to_chat(chat))  # every answer went to Ada's chat


async def test_a_group_upgraded_to_a_supergroup_is_followed(tmp_path: Path) -> None:
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, group_policy="open", streaming="off"):
        tg = fake.bot
        basic = tg.group("Old", supergroup=False)
        bob = tg.user("Bob")
        tg.inject_mention(basic, bob, "still there?")
        upgraded = tg.migrate(basic)  # before the reply: its send gets migrate_to_chat_id
        await until(lambda: len(texts(tg, upgraded)) == 1, within=10)
        assert texts(tg, upgraded) == ["Bob: @clawgate_bot still there?"]
        assert texts(tg, basic) == []
