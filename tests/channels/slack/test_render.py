"""Markdown -> mrkdwn, and Slack events -> messages (the channel's pure parts)."""

from __future__ import annotations

import pytest

from clawgate.bundled.slack.normalize import Identity, message_of, plain, slash_message
from clawgate.bundled.slack.render import mrkdwn

ME = Identity("U0BOT", "B0BOT", "clawgate", "T1", "team")


@pytest.mark.parametrize(("markdown", "expected"), [
    ("**bold** and __bold__", "*bold* and *bold*"),
    ("*italic* and _italic_", "_italic_ and _italic_"),
    ("***both***", "*_both_*"),
    ("~~gone~~", "~gone~"),
    ("`a < b && c`", "`a &lt; b &amp;&amp; c`"),
    ("x < y & z > w", "x &lt; y &amp; z &gt; w"),
    ("<!channel> <@U123>", "&lt;!channel&gt; &lt;@U123&gt;"),  # a reply cannot ping or forge
    ("[docs](https://x.io/a?b=1&c=2)", "<https://x.io/a?b=1&amp;c=2|docs>"),
    ("![chart](https://x.io/c.png)", "<https://x.io/c.png|chart>"),
    ("[rel](./file.md)", "rel (./file.md)"),
    ("<https://auto.link>", "<https://auto.link>"),
    ("# Title\n## Sub **x**", "*Title*\n*Sub x*"),
    ("- one\n* two\n  + three", "• one\n• two\n  • three"),
    ("> quoted **b**", "> quoted *b*"),
    ("```python\nif a<b:\n    **not bold**\n```", "```\nif a&lt;b:\n    **not bold**\n```"),
    ("```\nleft open", "```\nleft open\n```"),
    ("snake_case_name, 2*3*4 and a **dangling", "snake_case_name, 2*3*4 and a **dangling"),
    ("[a|b](https://x.io)", "<https://x.io|a¦b>"),
])
def test_mrkdwn(markdown: str, expected: str) -> None:
    assert mrkdwn(markdown) == expected


def test_plain_text_for_the_agent() -> None:
    text = ("<@U1> and <@U2|bob> in <#C1|general> or <#C2>, <!here>, "
            "<https://x.io|the site>, <https://y.io>, <mailto:a@b.c|a@b.c>, a &lt; b &amp;&amp; c")
    assert plain(text, {"U1": "ada"}) == (
        "@ada and @bob in #general or #C2, @here, the site (https://x.io), https://y.io, "
        "a@b.c (mailto:a@b.c), a < b && c")


def event(**fields: object) -> dict[str, object]:
    return {"type": "message", "channel": "C1", "user": "U1", "ts": "1.000001", "text": "hi",
            "channel_type": "channel", **fields}


def test_message_and_app_mention_are_the_same_message() -> None:
    text = "<@U0BOT> help me"
    a = message_of(event(text=text), ME)
    b = message_of({**event(text=text, type="app_mention"), "channel_type": None}, ME)
    assert a is not None and b is not None
    assert a == b  # same dedupe key, text and mention flag, whichever survives
    assert (a.message_id, a.text, a.mentioned, a.chat_type) == ("C1:1.000001", "help me", True,
                                                                "group")


@pytest.mark.parametrize(("fields", "what"), [
    ({"subtype": "message_changed"}, None),
    ({"subtype": "message_deleted"}, None),
    ({"subtype": "channel_join"}, None),
    ({"subtype": "bot_message", "bot_id": "B0OTHER"}, None),
    ({"bot_id": "B0OTHER"}, None),
    ({"type": "reaction_added"}, None),
    ({"ts": None}, None),
    ({"bot_id": "B0BOT"}, "self"),
    ({"user": "U0BOT"}, "self"),
    ({"subtype": "thread_broadcast", "thread_ts": "0.5"}, "thread"),
    ({"subtype": "file_share", "files": [{"id": "F1", "mimetype": "image/png", "size": 3,
                                          "name": "a.png", "url_private_download": "u"}]},
     "file"),
])
def test_which_events_are_messages(fields: dict[str, object], what: str | None) -> None:
    message = message_of(event(**fields), ME)
    if what is None:
        assert message is None
        return
    assert message is not None
    if what == "self":
        assert message.from_self is True
    elif what == "thread":
        assert message.thread == "0.5" and not message.from_self
    else:
        (file,) = message.attachments
        assert (file.kind, file.file_id, file.mime_type, file.size, file.name) == (
            "image", "F1", "image/png", 3, "a.png")


def test_direct_messages_and_threads() -> None:
    dm = message_of(event(channel="D1", channel_type="im", thread_ts="1.000001"), ME)
    assert dm is not None and dm.chat_type == "direct" and dm.thread is None  # its own ts
    assert dm.conversation == "D1" and dm.sender == "U1"


def test_slash_commands() -> None:
    commands = frozenset({"status", "help", "new"})
    payload = {"command": "/clawd", "text": "status", "channel_id": "D1", "user_id": "U1",
               "trigger_id": "9.9", "user_name": "ada"}
    message = slash_message(payload, "/clawd", commands)
    assert message is not None
    assert (message.text, message.message_id, message.chat_type, message.mentioned) == (
        "/status", "slash:9.9", "direct", True)
    asked = slash_message({**payload, "text": "what is up", "channel_id": "C1"}, "/clawd",
                          commands)
    assert asked is not None and asked.text == "what is up" and asked.chat_type == "group"
    empty = slash_message({**payload, "text": ""}, "/clawd", commands)
    assert empty is not None and empty.text == "/help"
    assert slash_message({**payload, "command": "/other"}, "/clawd", commands) is None
