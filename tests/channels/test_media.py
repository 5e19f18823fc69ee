"""Files in replies: ``MEDIA:`` tokens are split out of the text and sent as parts of their own,
from the agents' workspaces and media roots only, capped in size; URLs are downloaded."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from clawgate.channels.media import split_media
from tests.channels.support import message, post, webhook_gateway
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.poll import until

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def bodies(hook: WebhookReceiver) -> list[dict[str, Any]]:
    return [b for b in hook.bodies("/hook") if isinstance(b, dict)]


async def test_a_workspace_file_is_sent_after_the_text(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "chart.png").write_bytes(PNG)
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook) as server, \
            server.client(token=None) as http:
        await post(http, message(f"Here it is\nMEDIA:{workspace / 'chart.png'}"))
        await until(lambda: len(bodies(hook)) >= 2, within=20)
        text, file = bodies(hook)
        assert text["text"] == "Here it is" and text["parts"] == 2
        assert file["text"] == "" and file["part"] == 2
        attachment = file["attachment"]
        assert attachment["name"] == "chart.png" and attachment["mime_type"] == "image/png"
        assert attachment["kind"] == "image" and attachment["url"] is None
        assert base64.b64decode(attachment["data_base64"]) == PNG


async def test_files_outside_the_roots_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("do not post me")
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path / "state", hook) as server, \
            server.client(token=None) as http:
        await post(http, message(f"leak MEDIA:{secret} and MEDIA:/nonexistent/x.bin"))
        await until(lambda: len(bodies(hook)) >= 3, within=20)
        first, second, third = bodies(hook)
        assert first["text"] == "leak and"
        assert second["text"] == "[attachment secret.txt not sent]"
        assert third["text"] == "[attachment x.bin not sent]"
        assert all("attachment" not in b for b in bodies(hook))


async def test_a_media_root_and_the_size_cap(tmp_path: Path) -> None:
    root = tmp_path / "exports"
    root.mkdir()
    (root / "small.txt").write_text("fine")
    (root / "big.bin").write_bytes(b"x" * 2_000_000)
    extra = {"delivery": {"media_roots": ["exports"], "media_max_mb": 1,
                          "backoff_base_ms": 20, "backoff_max_ms": 200}}
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook, extra) as server, \
            server.client(token=None) as http:
        await post(http, message(f"MEDIA:{root / 'small.txt'}\nMEDIA:{root / 'big.bin'}"))
        await until(lambda: len(bodies(hook)) >= 2, within=20)
        small, big = bodies(hook)
        assert small["parts"] == 2  # no text part: the reply was files only
        assert base64.b64decode(small["attachment"]["data_base64"]) == b"fine"
        assert small["attachment"]["mime_type"] == "text/plain"
        assert big["text"] == "[attachment big.bin not sent]"


async def test_a_url_is_downloaded_and_kept(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook) as server, \
            server.client(token=None) as http:
        url = f"{server.url}/health"
        await post(http, message(f"status: MEDIA:{url}"))
        await until(lambda: len(bodies(hook)) >= 2, within=20)
        attachment = bodies(hook)[1]["attachment"]
        assert attachment["url"] == url and attachment["mime_type"] == "application/json"
        assert attachment["kind"] == "file" and attachment["name"] == "health"
        assert b"ok" in base64.b64decode(attachment["data_base64"])


def test_tokens_in_code_and_invalid_sources_stay_text() -> None:
    text = "```\nMEDIA:/etc/passwd\n```\nsee MEDIA:not-a-path and MEDIA:`/a/b.png`."
    cleaned, sources = split_media(text)
    assert sources == ("/a/b.png",)
    assert "MEDIA:/etc/passwd" in cleaned and "MEDIA:not-a-path" in cleaned
    assert split_media("no media here") == ("no media here", ())
    many = "\n".join(f"MEDIA:/f/{n}.png" for n in range(30)) + "\nMEDIA:/f/0.png"
    assert len(split_media(many)[1]) == 10
