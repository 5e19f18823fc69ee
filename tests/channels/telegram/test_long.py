"""A reply of 10,000 characters of Markdown (paragraphs, emphasis, links and a code block longer
than a message) reaches Telegram as messages of at most 4,096 characters, each valid HTML with
its own entities, that together say the whole reply in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.telegram.support import PTB_WARNINGS, calls, mock_model, telegram_gateway
from tests.support.fakes.telegram import TelegramFake
from tests.support.mock_openai import MockOpenAI, Reply
from tests.support.poll import until

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(PTB_WARNINGS)]


def long_reply() -> str:
    paragraphs = [f"Paragraph {n} has **bold {n}**, _italic_ and a [link](https://example.com/"
                  f"{n}) & <angle brackets>. " + "Words go on and on. " * 8
                  for n in range(12)]
    code = "```python\n" + "\n".join(f"print({n})  # line {n} of the code" for n in range(180)) \
        + "\n```"
    text = "\n\n".join(paragraphs[:6] + [code] + paragraphs[6:]) + "\n\n"
    pad = 10_000 - len(text)
    return text + ("more words " * 100)[:pad - 1] + "."  # exactly 10,000 characters


async def test_a_10000_character_reply_is_split_into_valid_parts(
        tmp_path: Path, mock_openai: MockOpenAI) -> None:
    reply = long_reply()
    assert len(reply) == 10_000
    mock_openai.plan(Reply(reply))
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, mock_model(mock_openai)) as server:
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, "write a lot")

        async def settled() -> bool:
            stats = await server.gateway.runtime.store.channels.stats("telegram", "default")
            return len(tg.sent(chat)) >= 3 and stats.pending == 0

        await until(settled, within=20)
        messages = tg.sent(chat)
        assert 3 <= len(messages) <= 4
        assert all(len(m["text"]) <= 4096 for m in messages)
        # Every part went as HTML: none needed the plain retry.
        sends = calls(fake, "sendMessage") + calls(fake, "editMessageText")
        assert sends and all(c.get("parse_mode") == "HTML" for c in sends)
        kinds = {e["type"] for m in messages for e in m.get("entities", [])}
        assert {"bold", "italic", "text_link", "pre"} <= kinds
        shown = " ".join(m["text"] for m in messages).split()
        expected = (reply.replace("**", "").replace("_italic_", "italic")
                    .replace("```python", "").replace("```", ""))
        for n in range(12):
            expected = expected.replace(f"[link](https://example.com/{n})", "link")
        assert shown == expected.split()
