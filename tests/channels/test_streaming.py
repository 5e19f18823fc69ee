"""Block streaming (``streaming = "block"``): completed paragraphs go out as their own messages
while the turn runs, and the final reply carries only what no block showed."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawgate.channels.streaming import BLOCK_MIN_CHARS, Blocks, block_end
from tests.channels.support import message, post, texts, webhook_gateway
from tests.channels.telegram.support import mock_model
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.mock_openai import MockOpenAI, Reply
from tests.support.poll import until

pytestmark = pytest.mark.anyio


def paragraph(word: str) -> str:
    return " ".join([word] * (BLOCK_MIN_CHARS // len(word) + 8)) + "."


def test_a_block_ends_at_a_paragraph_break_once_long_enough() -> None:
    one, two = paragraph("alpha"), paragraph("beta")
    assert block_end(one, 4000) == 0  # no break yet
    assert block_end("short.\n\n" + one, 4000) == 0  # the only break leaves too little
    text = f"{one}\n\n{two}"
    assert text[:block_end(text, 4000)] == one + "\n\n"
    assert block_end(f"{one}\n\n{two}\n\n", 4000) == len(text) + 2  # the latest break wins


def test_no_block_ends_inside_a_code_fence() -> None:
    code = "```python\n" + "x = 1\n\n" * 80 + "```\n"
    assert block_end(paragraph("intro") + "\n\n" + code[:300], 4000) == \
        len(paragraph("intro")) + 2
    assert block_end(code[:-4], 4000) == 0  # every break is inside the open fence


def test_text_longer_than_a_part_is_cut_where_the_chunker_cuts() -> None:
    text = paragraph("gamma") * 20
    end = block_end(text, 1000)
    assert 250 <= end <= 1000 and text[end - 1] in " ."


def test_the_final_reply_keeps_only_what_no_block_showed() -> None:
    blocks = Blocks(limit=2)
    blocks.record("r1", "one\n\n")
    assert blocks.rest("r1", "one\n\ntwo") == "two"
    assert blocks.rest("r1", "another text") == "another text"  # not what the blocks showed
    blocks.record("r2", "a")
    blocks.record("r3", "b")  # over the limit: r1 is forgotten, its reply goes out whole
    assert blocks.rest("r1", "one\n\ntwo") == "one\n\ntwo"


async def test_paragraphs_arrive_while_the_turn_runs(tmp_path: Path,
                                                     mock_openai: MockOpenAI) -> None:
    parts = [paragraph("first"), paragraph("second"), paragraph("third")]
    answer = "\n\n".join(parts)
    mock_openai.plan(Reply(answer, chunks=30, interval=0.1))
    async with WebhookReceiver() as hook, \
            webhook_gateway(tmp_path, hook, mock_model(mock_openai), streaming="block") \
            as server, server.client(token=None) as http:
        await post(http, message("tell me"))
        await until(lambda: texts(hook) == parts, within=20)
        calls = hook.calls_of("POST /hook")
        keys = [c.headers["idempotency-key"] for c in calls]
        assert [k.startswith("block:") for k in keys] == [True, True, False]
        assert hook.duplicates() == {}
        # The blocks were sent while the model was still streaming the rest.
        assert calls[0].at < calls[2].at - 0.5
        session = await server.gateway.runtime.store.transcript("agent:main:main")
        assert session[-1].content == answer  # the transcript has the whole reply
