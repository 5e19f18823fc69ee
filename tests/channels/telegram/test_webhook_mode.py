"""Webhook mode: setWebhook with the secret token at start; Telegram's POSTs to
/channels/telegram/<account>/webhook are checked (secret in constant time, body) and answered
200 only after the update is durable; a redelivery is 200 and changes nothing."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from tests.channels.telegram.support import (
    PTB_WARNINGS,
    SECRET,
    calls,
    status,
    texts,
    webhook_gateway,
)
from tests.support.fakes.telegram import TelegramFake
from tests.support.poll import until

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(PTB_WARNINGS)]
PATH = "/channels/telegram/default/webhook"


async def test_updates_arrive_through_the_webhook(tmp_path: Path) -> None:
    async with TelegramFake() as fake, webhook_gateway(tmp_path, fake) as server:
        await fake.wait_for("setWebhook", within=10)
        registered = calls(fake, "setWebhook")[0]
        assert registered["url"] == f"{server.url}{PATH}"
        assert registered["secret_token"] == SECRET
        assert orjson.loads(registered["allowed_updates"]) == ["message"]
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        update = tg.inject_text(chat, ada, "hello by webhook")
        await until(lambda: texts(tg, chat) == ["hello by webhook"], within=10)
        (delivery,) = [d for d in tg.deliveries if d.update_id == update["update_id"]]
        assert delivery.status == 200
        assert fake.counts["getUpdates"] == 0 and fake.counts["deleteWebhook"] == 0

        async def described() -> bool:
            row = await status(server)
            return isinstance(row.get("webhookPending"), int) and row["connected"] is True

        await until(described, within=10)
        row = await status(server)
        assert row["mode"] == "webhook" and row["webhookPath"] == PATH


async def test_secrets_bodies_and_redeliveries(tmp_path: Path) -> None:
    async with TelegramFake() as fake, webhook_gateway(tmp_path, fake) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        await fake.wait_for("setWebhook", within=10)
        tg = fake.bot
        ada = tg.user("Ada")
        chat = tg.private_chat(ada)
        # Build an update without queueing it at the fake: the test plays Telegram here.
        message = {"message_id": 77, "date": 1_700_000_000, "chat": chat, "from": ada,
                   "text": "posted by hand"}
        body = orjson.dumps({"update_id": 555, "message": message})
        good = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
                        {"X-Telegram-Bot-Api-Secret-Token": SECRET[:-1]}):
            refused = await http.post(PATH, content=body, headers=headers)
            assert refused.status_code == 401, refused.text
        for bad in (b"{not json", b"[1, 2]", orjson.dumps({"message": message})):
            r = await http.post(PATH, content=bad, headers=good)
            assert r.status_code == 400, (bad, r.text)
        assert (await http.get(PATH, headers=good)).status_code == 405
        assert (await http.post("/channels/telegram/default/other", content=body,
                                headers=good)).status_code == 404
        store = server.gateway.runtime.store
        assert await store.get("agent:main:main") is None  # nothing refused got in
        accepted = await http.post(PATH, content=body, headers=good)
        assert accepted.status_code == 200
        assert accepted.json() == {"ok": True, "outcome": "admitted"}
        # Durable before the 200: its dedupe row was committed with its run.
        assert await store.channels.seen("telegram", "default", f"{chat['id']}:77")
        again = await http.post(PATH, content=body, headers=good)  # Telegram retried
        assert again.status_code == 200
        assert again.json() == {"ok": True, "outcome": "duplicate"}
        await until(lambda: texts(tg, chat) == ["posted by hand"], within=10)
        joined = orjson.dumps({"update_id": 556, "message": {**message, "message_id": 78,
                                                            "text": None,
                                                            "new_chat_members": [ada]}})
        skipped = await http.post(PATH, content=joined, headers=good)
        assert skipped.json() == {"ok": True, "outcome": "skipped"}
