"""The webhook channel end to end: a signed inbound POST -> the echo agent -> the reply POSTed
to a receiver, through a real gateway on 127.0.0.1."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from tests.channels.support import OUT_TOKEN, SECRET, message, post, texts, webhook_gateway
from tests.support.fakes.webhook import WebhookReceiver, sign
from tests.support.poll import until

pytestmark = pytest.mark.anyio


async def test_round_trip(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook) as server, \
            server.client(token=None) as http:
        r = await post(http, message("hello over http", msg_id="m-1"))
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["accepted"] is True and body["outcome"] == "admitted"
        assert body["session_key"] == "agent:main:main"
        call = await hook.wait_for(lambda c: c.name == "POST /hook", within=10)
        assert call.headers["authorization"] == f"Bearer {OUT_TOKEN}"
        sent = WebhookReceiver.json(call)
        assert sent["text"] == "hello over http"  # type: ignore[index]
        assert sent["to"] == "alice" and sent["part"] == 1 and sent["parts"] == 1  # type: ignore[index]
        assert call.headers["idempotency-key"] == f"{sent['intent_id']}:1"  # type: ignore[index]
        assert hook.duplicates() == {}


async def test_fifty_conversations_at_once(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, \
            webhook_gateway(tmp_path, hook, dm_scope="per-channel-peer") as server, \
            server.client(token=None) as http:
        replies = await asyncio.gather(*(post(http, message(f"hi from {n}", sender=f"u{n}"))
                                         for n in range(50)))
        assert {r.status_code for r in replies} == {202}
        await until(lambda: len(texts(hook)) == 50, within=20)
        assert sorted(texts(hook)) == sorted(f"hi from {n}" for n in range(50))
        assert hook.duplicates() == {}


async def test_bad_signatures_and_bodies(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook) as server, \
            server.client(token=None) as http:
        raw = orjson.dumps(message("x"))
        missing = await http.post("/channels/webhook/default/inbound", content=raw)
        assert missing.status_code == 401 and "missing" in missing.json()["error"]["message"]
        wrong = await post(http, message("x"), secret="not-the-secret-at-all")
        assert wrong.status_code == 401 and "bad" in wrong.json()["error"]["message"]
        stale = sign(SECRET, raw, timestamp=int(time.time()) - 600)
        old = await http.post("/channels/webhook/default/inbound", content=raw, headers=stale)
        assert old.status_code == 401 and "5 minutes" in old.json()["error"]["message"]
        for bad, why in ((b"not json", "not valid JSON"), (b"[1]", "JSON object"),
                         (orjson.dumps({"id": "1", "from": "a"}), "`text` is required"),
                         (orjson.dumps({**message("x"), "chat_type": "room"}), "chat_type"),
                         (orjson.dumps({**message("x"), "extra": 1}), "unknown field")):
            r = await http.post("/channels/webhook/default/inbound", content=bad,
                                headers=sign(SECRET, bad))
            assert r.status_code == 400 and why in r.json()["error"]["message"], (bad, r.text)
        nowhere = await post(http, message("x"), account="ghost")
        assert nowhere.status_code == 404
        assert hook.calls == [] or not texts(hook)  # nothing was admitted


async def test_a_replayed_id_is_a_duplicate(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook, webhook_gateway(tmp_path, hook) as server, \
            server.client(token=None) as http:
        first = await post(http, message("once", msg_id="same"))
        again = await post(http, message("once", msg_id="same"))
        assert first.status_code == 202 and again.status_code == 200
        assert again.json() == {"duplicate": True}
        await until(lambda: len(texts(hook)) == 1)
        runs = await server.gateway.runtime.store.transcript("agent:main:main")
        assert [m.content for m in runs] == ["once", "once"]


PROBE = textwrap.dedent("""
    import asyncio, sys, tempfile
    from pathlib import Path
    from clawgate import config
    from clawgate.runtime import Runtime

    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            cfg = {"channels": {"webhook": {"inbound_secret": "s" * 16}}}
            settings = config.Settings(config.parse(cfg), state_dir=Path(tmp),
                                       config_path=Path(tmp) / "c.toml")
            runtime = Runtime(settings, channels=True)
            await runtime.start()
            try:
                print("httpx" in sys.modules)
            finally:
                await runtime.aclose()

    asyncio.run(main())
""")


def test_httpx_stays_out_until_a_reply_is_sent() -> None:
    """A webhook account that only receives (or a gateway with none) never loads httpx."""
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False"]
