"""The Slack channel in HTTP mode: the fake's Events API sender POSTs signed requests to the
gateway's /channels/slack/<account>/events route, as Slack does."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from tests.channels.slack.support import slack_gateway, status_row, texts
from tests.support.fakes.slack import SlackFake
from tests.support.fakes.slack_events import event_callback, sign
from tests.support.poll import until

pytestmark = pytest.mark.anyio


def http_account(fake: SlackFake, **extra: object) -> dict[str, object]:
    return {"mode": "http", "signing_secret": fake.signing_secret, **extra}


async def test_url_verification_and_signatures(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, **http_account(fake)) as server:
        url = f"{server.url}/channels/slack/default/events"
        assert await fake.events.verify_url(url) is True
        assert await fake.events.verify_url(url, secret="not-the-secret") is False
        body = orjson.dumps(event_callback(fake, {"type": "message", "text": "x"}))
        async with httpx.AsyncClient() as http:
            unsigned = await http.post(url, content=body)
            assert unsigned.status_code == 401 and "missing" in unsigned.text
            stale = await http.post(url, content=body, headers=sign(
                fake.signing_secret, body, timestamp=int(time.time()) - 301))
            assert stale.status_code == 401 and "5 minutes" in stale.text
            forged = await http.post(url, content=body + b" ", headers=sign(
                fake.signing_secret, body))
            assert forged.status_code == 401 and "bad X-Slack-Signature" in forged.text
            junk = b"not json"
            bad = await http.post(url, content=junk, headers=sign(fake.signing_secret, junk))
            assert bad.status_code == 400
            nowhere = await http.post(f"{server.url}/channels/slack/default/other",
                                      content=body, headers=sign(fake.signing_secret, body))
            assert nowhere.status_code == 404
        row = await status_row(server)
        assert row["mode"] == "http" and row["connected"] is True
        assert row["webhookPath"] == "/channels/slack/default/events"
        assert fake.counts["chat.postMessage"] == 0 and fake.connections == {}


async def test_events_are_answered_and_retries_are_duplicates(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, streaming="off",
                                                  **http_account(fake)) as server:
        url = f"{server.url}/channels/slack/default/events"
        ada = fake.user("ada")
        dm = fake.im(ada)
        event = {"type": "message", "channel": dm["id"], "user": ada["id"], "text": "over http",
                 "ts": fake.ts(), "channel_type": "im", "client_msg_id": "c-1"}
        attempts = await fake.events.send(url, event)
        assert [(a.retry, a.status) for a in attempts] == [(0, 200)]
        await until(lambda: texts(fake, dm) == ["over http"], within=10)
        # Slack's retries (the first answer was "too late") carry the same event again.
        payload = event_callback(fake, event)
        body = orjson.dumps(payload)
        async with httpx.AsyncClient() as http:
            for retry in (1, 2):
                again = await http.post(url, content=body, headers={
                    **sign(fake.signing_secret, body), "X-Slack-Retry-Num": str(retry),
                    "X-Slack-Retry-Reason": "http_timeout"})
                assert again.status_code == 200
        assert fake.counts["chat.postMessage"] == 1
        transcript = await server.gateway.runtime.store.transcript("agent:main:main")
        assert [m.content for m in transcript if m.role == "user"] == ["over http"]


async def test_message_and_app_mention_over_http_give_one_answer(tmp_path: Path) -> None:
    async with SlackFake() as fake:
        general = fake.channel("general")
        async with slack_gateway(tmp_path, fake, streaming="off", group_policy="open",
                                 **http_account(fake)) as server:
            url = f"{server.url}/channels/slack/default/events"
            ada = fake.user("ada")
            ts = fake.ts()
            text = f"<@{fake.bot_user_id}> ping"
            message = {"type": "message", "channel": general["id"], "user": ada["id"],
                       "text": text, "ts": ts, "channel_type": "channel"}
            mention = {"type": "app_mention", "channel": general["id"], "user": ada["id"],
                       "text": text, "ts": ts}
            # Either may come first; both are the same post.
            assert (await fake.events.send(url, mention))[0].status == 200
            assert (await fake.events.send(url, message))[0].status == 200
            await until(lambda: texts(fake, general) == ["ada: ping"], within=10)
            assert fake.counts["chat.postMessage"] == 1


async def test_slash_command_over_http(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, streaming="off",
                                                  **http_account(fake)) as server:
        ada = fake.user("ada")
        dm = fake.im(ada)
        form = urlencode({"command": "/clawd", "text": "hello there", "user_id": ada["id"],
                          "user_name": "ada", "channel_id": dm["id"], "trigger_id": "1.2.3",
                          "team_id": fake.team_id}).encode()
        headers = {**sign(fake.signing_secret, form),
                   "Content-Type": "application/x-www-form-urlencoded"}
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{server.url}/channels/slack/default/commands",
                                     content=form, headers=headers)
        assert answer.status_code == 200
        assert answer.json() == {"response_type": "ephemeral", "text": "/clawd hello there"}
        await until(lambda: texts(fake, dm) == ["hello there"], within=10)


async def test_a_socket_mode_account_has_no_http_route(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake) as server:
        body = orjson.dumps({"type": "url_verification", "challenge": "c"})
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{server.url}/channels/slack/default/events", content=body,
                                headers=sign(fake.signing_secret, body))
        assert r.status_code == 404 and "Socket Mode" in r.text
