"""Files both ways: inbound photos, documents, voice notes and stickers reach the agent as
attachments (a photo downloaded through getFile only for a model that takes images), and files
in a reply (MEDIA: tokens) are uploaded with sendPhoto / sendDocument."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.channels.telegram.support import (
    PTB_WARNINGS,
    calls,
    mock_model,
    telegram_gateway,
    texts,
)
from tests.support.fakes.harness import Upload
from tests.support.fakes.telegram import TelegramFake
from tests.support.mock_openai import MockOpenAI, Reply
from tests.support.poll import until

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(PTB_WARNINGS)]
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x03\x00\x00\x00\x02"
       b"\x08\x02\x00\x00\x00rest-of-image")


async def test_a_photo_reaches_a_model_that_takes_images(
        tmp_path: Path, mock_openai: MockOpenAI) -> None:
    mock_openai.plan(Reply("a tiny picture"))
    async with TelegramFake() as fake, \
            telegram_gateway(tmp_path, fake, mock_model(mock_openai, images=True)):
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_photo(chat, ada, PNG, caption="what is this?")
        await until(lambda: texts(tg, chat) == ["a tiny picture"], within=10)
        content = mock_openai.requests[-1].body["messages"][-1]["content"]
        assert content[0] == {"type": "text", "text": "what is this?"}
        url = content[1]["image_url"]["url"]
        assert url == "data:image/jpeg;base64," + base64.b64encode(PNG).decode()
        assert fake.counts["getFile"] == 1 and fake.counts["file"] == 1


async def test_files_reach_a_text_model_as_placeholders(tmp_path: Path) -> None:
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake, streaming="off"):
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_document(chat, ada, b"%PDF-1.7", file_name="report.pdf",
                           mime_type="application/pdf", caption="see attached")
        tg.inject_voice(chat, ada, b"OggS-voice")
        tg.inject_sticker(chat, ada, b"RIFF-webp", emoji="👍")
        tg.inject_photo(chat, ada, PNG)
        await until(lambda: len(texts(tg, chat)) == 4, within=10)
        assert texts(tg, chat) == ["see attached\n[file: report.pdf, application/pdf]",
                                   "[audio: voice.ogg, audio/ogg]",
                                   "[sticker: sticker 👍, image/webp]",
                                   "[image: photo.jpg, image/jpeg]"]
        assert fake.counts["getFile"] == 0  # the echo model takes no images: nothing fetched


async def test_files_in_a_reply_are_uploaded(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "chart.png").write_bytes(PNG)
    (workspace / "notes.txt").write_text("some notes")
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake, streaming="off"):
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, f"Here you go\nMEDIA:{workspace / 'chart.png'}\n"
                                  f"MEDIA:{workspace / 'notes.txt'}")
        await until(lambda: len(tg.sent(chat)) == 3, within=10)
        text, photo, document = tg.sent(chat)
        assert text["text"] == "Here you go"
        assert "photo" in photo and "caption" not in photo
        assert document["document"]["file_name"] == "notes.txt"
        (upload,) = [c["photo"] for c in calls(fake, "sendPhoto")]
        assert isinstance(upload, Upload) and upload.data == PNG
        assert upload.filename == "chart.png"
        (doc,) = [c["document"] for c in calls(fake, "sendDocument")]
        assert isinstance(doc, Upload) and doc.data == b"some notes"


async def test_a_photo_telegram_refuses_goes_as_a_document(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "wide.png").write_bytes(PNG)
    async with TelegramFake() as fake, telegram_gateway(tmp_path, fake, streaming="off"):
        fake.error("sendPhoto", 400, "Bad Request: PHOTO_INVALID_DIMENSIONS", times=1)
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        tg.inject_text(chat, ada, f"MEDIA:{workspace / 'wide.png'}")
        await until(lambda: len(tg.sent(chat)) == 1, within=10)
        assert tg.sent(chat)[0]["document"]["file_name"] == "wide.png"
