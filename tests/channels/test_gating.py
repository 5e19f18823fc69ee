"""Group policy, mention gating, routing to bound agents, DM scopes and commands, through the
webhook channel of a real gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.support import message, post, texts, webhook_gateway
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio
AGENTS = {"agents": [{"id": "main", "default": True}, {"id": "ops"}]}


def group(text: str, conversation: str = "room-1", **fields: object) -> dict[str, object]:
    return message(text, chat_type="group", conversation=conversation, **fields)


async def test_groups_need_to_be_listed_and_the_bot_mentioned(tmp_path: Path) -> None:
    channel = {"groups": {"room-1": {"require_mention": True}, "room-2": {"require_mention":
                                                                          False}},
               "mention_patterns": [r"\bclaw\b"]}
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook, **channel) as server, \
            server.client(token=None) as http:
        unlisted = await post(http, group("hello", conversation="room-9", mentioned=True))
        assert unlisted.json()["outcome"] == "dropped"
        quiet = await post(http, group("we were talking about lunch", name="Bob"))
        assert quiet.json()["outcome"] == "context"
        asked = await post(http, group("hey claw, thoughts?", name="Ann"))
        assert asked.json()["outcome"] == "admitted"
        assert asked.json()["session_key"] == "agent:main:webhook:group:room-1"
        await until(lambda: len(texts(hook)) == 1)
        reply = texts(hook)[0]  # the echo agent repeats what it got: the context came first
        assert "Bob: we were talking about lunch" in reply and "Ann: hey claw" in reply
        free = await post(http, group("no mention needed", conversation="room-2"))
        assert free.json()["outcome"] == "admitted"
        await until(lambda: len(texts(hook)) == 2)


async def test_a_thread_keeps_its_own_context(tmp_path: Path) -> None:
    channel = {"groups": {"room-1": {"require_mention": True}}}
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook, **channel) as server, \
            server.client(token=None) as http:
        for body in (group("chatter in the room", name="Bob"),
                     group("chatter in the thread", name="Cy", thread="t-1")):
            assert (await post(http, body)).json()["outcome"] == "context"
        asked = await post(http, group("what now?", name="Ann", thread="t-1", mentioned=True))
        assert asked.json()["session_key"] == "agent:main:webhook:group:room-1:thread:t-1"
        await until(lambda: len(texts(hook)) == 1)
        reply = texts(hook)[0]  # the thread's session gets the thread's chatter only
        assert "Cy: chatter in the thread" in reply and "chatter in the room" not in reply
        room = await post(http, group("and here?", name="Ann", mentioned=True))
        assert room.json()["session_key"] == "agent:main:webhook:group:room-1"
        await until(lambda: len(texts(hook)) == 2)
        assert "Bob: chatter in the room" in texts(hook)[1]


async def test_group_policy_open_and_sender_allowlist(tmp_path: Path) -> None:
    channel = {"group_policy": "open", "group_allow_from": ["ann"]}
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook, **channel) as server, \
            server.client(token=None) as http:
        bob = await post(http, group("hi", conversation="any", sender="bob", mentioned=True))
        assert bob.json()["outcome"] == "dropped"
        ann = await post(http, group("hi", conversation="any", sender="ann", mentioned=True))
        assert ann.json()["outcome"] == "admitted"


async def test_bindings_route_to_agents_and_dm_scopes(tmp_path: Path) -> None:
    extra = {**AGENTS, "bindings": [{"agent": "ops", "match": {"channel": "webhook",
                                                               "peer": "pager"}}],
             "session": {"dm_scope": "per-channel-peer"}}
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook, extra) as server, \
            server.client(token=None) as http:
        paged = await post(http, message("disk full", sender="pager"))
        assert paged.json()["session_key"] == "agent:ops:webhook:direct:pager"
        other = await post(http, message("hi", sender="carol"))
        assert other.json()["session_key"] == "agent:main:webhook:direct:carol"
        await until(lambda: len(texts(hook)) == 2)


async def test_account_agent_and_per_account_dm_scope(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, \
            webhook_gateway(tmp_path, hook, AGENTS, agent="ops",
                            dm_scope="per-account-channel-peer") as server, \
            server.client(token=None) as http:
        r = await post(http, message("hi", sender="dave"))
        assert r.json()["session_key"] == "agent:ops:webhook:default:direct:dave"


async def test_commands_from_the_channel(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook) as server, \
            server.client(token=None) as http:
        await post(http, message("remember this"))
        await until(lambda: texts(hook) == ["remember this"])
        status = await post(http, message("/status"))
        assert status.json()["outcome"] == "command"
        await until(lambda: len(texts(hook)) == 2)
        assert "Session: agent:main:main" in texts(hook)[1]
        await post(http, message("/new"))
        await until(lambda: texts(hook)[-1:] == ["Started a new session."])
        history = await server.gateway.runtime.store.transcript("agent:main:main")
        assert history == []  # a fresh transcript; commands are not stored
        async with open_client(server) as ws:  # the same command from chat.send
            ack = await ws.ok("chat.send", {"sessionKey": "main", "message": "/help",
                                            "idempotencyKey": "h1"})
            assert ack["status"] == "started"


async def test_the_gateways_own_messages_never_come_back_in(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook) as server, \
            server.client(token=None) as http:
        echoed = await post(http, message("⚠️ The reply could not be completed", origin="clawgate"))
        assert echoed.json()["outcome"] == "dropped"
        assert await server.gateway.runtime.store.get("agent:main:main") is None
