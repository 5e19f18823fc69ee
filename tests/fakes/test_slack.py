"""The Slack fake, driven by slack-sdk's real AsyncWebClient, Socket Mode client and
SignatureVerifier."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from starlette.responses import PlainTextResponse, Response

from tests.support.fakes.harness import Call, Fault
from tests.support.fakes.slack import SlackFake
from tests.support.fakes.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fake() -> AsyncIterator[SlackFake]:
    async with SlackFake() as server:
        yield server


def web(fake: SlackFake, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(token=token or fake.bot_token, base_url=fake.api_url)


async def test_web_api_calls(fake: SlackFake) -> None:
    general = fake.channel("general")
    ada = fake.user("ada")
    client = web(fake)
    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == (
        fake.bot_user_id, fake.bot_id, fake.team_id)
    root = fake.inject_message(general, ada, f"<@{fake.bot_user_id}> hi")
    posted = await client.chat_postMessage(channel=general["id"], text="*hello*",
                                           thread_ts=root["ts"], mrkdwn=True)
    assert posted["message"]["thread_ts"] == root["ts"]
    assert posted["message"]["bot_id"] == fake.bot_id
    assert fake.history(general)[0]["reply_count"] == 1
    updated = await client.chat_update(channel=general["id"], ts=posted["ts"], text="edited",
                                       blocks=[{"type": "section",
                                                "text": {"type": "mrkdwn", "text": "edited"}}])
    assert updated["message"]["text"] == "edited" and updated["message"]["blocks"]
    await client.reactions_add(channel=general["id"], name="eyes", timestamp=root["ts"])
    with pytest.raises(SlackApiError) as again:
        await client.reactions_add(channel=general["id"], name="eyes", timestamp=root["ts"])
    assert again.value.response["error"] == "already_reacted"
    info = await client.conversations_info(channel=general["id"])
    assert info["channel"]["name"] == "general" and info["channel"]["is_channel"]
    assert (await client.users_info(user=ada["id"]))["user"]["name"] == "ada"
    replies = await client.conversations_replies(channel=general["id"], ts=root["ts"])
    assert [m["text"] for m in replies["messages"]] == [root["text"], "edited"]
    await client.chat_delete(channel=general["id"], ts=posted["ts"])
    with pytest.raises(SlackApiError) as missing:
        await client.chat_delete(channel=general["id"], ts=posted["ts"])
    assert missing.value.response["error"] == "message_not_found"
    call = await fake.wait_for("chat.postMessage")
    assert call.headers["authorization"] == f"Bearer {fake.bot_token}"
    assert call.body["thread_ts"] == root["ts"]


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
async def test_web_api_errors(fake: SlackFake) -> None:
    for token, expected in (("xoxb-wrong", "invalid_auth"), (fake.app_token,
                                                            "not_allowed_token_type")):
        with pytest.raises(SlackApiError) as raised:
            await web(fake, token).chat_postMessage(channel="C1", text="x")
        assert raised.value.response.status_code == 200
        assert raised.value.response["error"] == expected
    client = web(fake)
    for kwargs, expected in (({"channel": "C404", "text": "x"}, "channel_not_found"),
                             ({"channel": fake.channel()["id"]}, "no_text"),
                             ({"channel": fake.channel("c2")["id"], "text": "x" * 40_001},
                              "msg_too_long")):
        with pytest.raises(SlackApiError) as raised:
            await client.chat_postMessage(**kwargs)
        assert raised.value.response["error"] == expected
    with pytest.raises(SlackApiError) as raised:
        await client.apps_connections_open(app_token=fake.bot_token)
    assert raised.value.response["error"] == "not_allowed_token_type"


async def test_rate_limit_is_429_with_retry_after(fake: SlackFake) -> None:
    general = fake.channel("general")
    fake.rate_limit("chat.postMessage", retry_after=1)
    with pytest.raises(SlackApiError) as raised:
        await web(fake).chat_postMessage(channel=general["id"], text="fast")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "1"
    assert raised.value.response["error"] == "ratelimited"
    # slack-sdk's own retry handler honours the hint and the retry goes through.
    fake.rate_limit("chat.postMessage", retry_after=1)
    patient = web(fake)
    patient.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    assert (await patient.chat_postMessage(channel=general["id"], text="later"))["ok"]
    assert fake.counts["chat.postMessage"] == 3


async def test_file_upload_v2(fake: SlackFake) -> None:
    general = fake.channel("general")
    done = await web(fake).files_upload_v2(channel=general["id"], content=b"report body",
                                           filename="report.txt", title="Report",
                                           initial_comment="here")
    file_id = done["file"]["id"]
    assert fake.files[file_id]["data"] == b"report body"
    (message,) = fake.history(general)
    assert message["files"][0]["id"] == file_id and message["text"] == "here"
    assert [c.name for c in fake.calls] == [
        "files.getUploadURLExternal", "files.upload", "files.completeUploadExternal"]


class Listener:
    """Collects Socket Mode requests; acks them unless told to hold one back."""

    def __init__(self, hold: int = 0) -> None:
        self.requests: list[SocketModeRequest] = []
        self.hold = hold

    async def __call__(self, client: SocketModeClient, request: SocketModeRequest) -> None:
        self.requests.append(request)
        if self.hold > 0:
            self.hold -= 1
            return
        await client.send_socket_mode_response(SocketModeResponse(request.envelope_id))


async def socket_client(fake: SlackFake, listener: Listener) -> SocketModeClient:
    client = SocketModeClient(app_token=fake.app_token, web_client=web(fake), ping_interval=0.2)
    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    await client.connect()
    await fake.wait_until(lambda: fake.connections)
    return client


async def test_socket_mode_delivers_and_tracks_acks(fake: SlackFake) -> None:
    general = fake.channel("general")
    ada = fake.user("ada")
    listener = Listener()
    client = await socket_client(fake, listener)
    try:
        fake.inject_message(fake.im(ada), ada, "hello in DM")
        fake.inject_message(general, ada, f"<@{fake.bot_user_id}> hello", thread_ts=None)
        await fake.wait_until(lambda: len(fake.acks) == 3)
        events = [r.payload["event"] for r in listener.requests]
        assert [(e["type"], e.get("channel_type")) for e in events] == [
            ("message", "im"), ("message", "channel"), ("app_mention", None)]
        assert all(r.type == "events_api" and r.retry_attempt == 0 for r in listener.requests)
        assert listener.requests[0].payload["type"] == "event_callback"
        assert fake.unacked == []
    finally:
        await client.close()


async def test_unacked_envelope_is_redelivered_after_a_dropped_socket(fake: SlackFake) -> None:
    ada = fake.user("ada")
    listener = Listener(hold=1)
    client = await socket_client(fake, listener)
    try:
        envelope = fake.inject_event({"type": "message", "channel": fake.im(ada)["id"],
                                      "user": ada["id"], "text": "ack me", "ts": fake.ts(),
                                      "channel_type": "im"})
        await fake.wait_until(lambda: len(listener.requests) == 1)
        assert fake.unacked == [envelope]
        connects = fake.counts["socket:connect"]
        assert fake.drop() == 1
        await fake.wait_until(lambda: envelope in fake.acks, within=10)
        assert fake.counts["socket:connect"] == connects + 1
        first, second = listener.requests
        assert first.envelope_id == second.envelope_id == envelope
        assert (second.retry_attempt, second.retry_reason) == (1, "timeout")
    finally:
        await client.close()


async def test_disconnect_frame_makes_the_client_reconnect(fake: SlackFake) -> None:
    ada = fake.user("ada")
    listener = Listener()
    client = await socket_client(fake, listener)
    try:
        await fake.disconnect("refresh_requested")
        await fake.wait_until(lambda: fake.counts["socket:connect"] == 2 and fake.connections)
        fake.inject_message(fake.im(ada), ada, "after refresh")
        await fake.wait_until(lambda: len(fake.acks) == 1)
        assert listener.requests[-1].payload["event"]["text"] == "after refresh"
        tickets = [c.query["ticket"] for c in fake.calls_of("socket:connect")]
        assert len(set(tickets)) == len(tickets) >= 2  # a fresh URL for each connection
    finally:
        await client.close()


async def test_bot_messages_come_back_as_events(fake: SlackFake) -> None:
    general = fake.channel("general")
    listener = Listener()
    client = await socket_client(fake, listener)
    try:
        await web(fake).chat_postMessage(channel=general["id"], text="from the bot")
        await fake.wait_until(lambda: len(fake.acks) == 1)
        assert listener.requests[0].payload["event"]["bot_id"] == fake.bot_id
    finally:
        await client.close()


async def test_events_api_http_sender(fake: SlackFake) -> None:
    verifier = SignatureVerifier(fake.signing_secret)

    def app(call: Call) -> Response | None:
        body: Any = orjson.loads(call.raw)
        ok = verifier.is_valid(call.raw, call.headers["x-slack-request-timestamp"],
                               call.headers["x-slack-signature"])
        if not ok:
            return PlainTextResponse("bad signature", status_code=401)
        if body["type"] == "url_verification":
            return PlainTextResponse(body["challenge"])
        return None

    async with WebhookReceiver() as hook:
        hook.responder = app
        assert await fake.events.verify_url(f"{hook.url}/slack/events") is True
        assert await fake.events.verify_url(f"{hook.url}/slack/events", secret="wrong") is False
        hook.fail_status("POST /slack/events", 500, times=2)
        ada = fake.user("ada")
        attempts = await fake.events.send(f"{hook.url}/slack/events", {
            "type": "message", "channel": "D1", "user": ada["id"], "text": "hi",
            "ts": fake.ts(), "channel_type": "im"})
        assert [(a.retry, a.status) for a in attempts] == [(0, 500), (1, 500), (2, 200)]
        posts = hook.calls_of("POST /slack/events")[-3:]
        assert [p.headers.get("x-slack-retry-num") for p in posts] == [None, "1", "2"]
        assert posts[2].headers["x-slack-retry-reason"] == "http_error"
        assert posts[2].body["event"]["text"] == "hi"
        assert posts[0].body["event_id"] == posts[2].body["event_id"]


async def test_scripted_socket_refusal_then_recovery(fake: SlackFake) -> None:
    fake.fail("socket:connect", Fault("status", status=403))
    listener = Listener()
    client = SocketModeClient(app_token=fake.app_token, web_client=web(fake), ping_interval=0.2)
    client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(client.connect(), 10)
        await fake.wait_until(lambda: fake.connections)
        assert fake.counts["socket:connect"] == 2
    finally:
        await client.close()


async def test_slash_command_ack_carries_a_response_payload(fake: SlackFake) -> None:
    ada = fake.user("ada")
    channel = fake.channel("general")

    async def answer(client: SocketModeClient, request: SocketModeRequest) -> None:
        await client.send_socket_mode_response(SocketModeResponse(
            request.envelope_id, payload={"text": f"got {request.payload['text']}"}))

    client = SocketModeClient(app_token=fake.app_token, web_client=web(fake), ping_interval=0.2)
    client.socket_mode_request_listeners.append(answer)  # type: ignore[arg-type]
    await client.connect()
    try:
        envelope = fake.inject_slash_command(channel, ada, "/clawd", "status")
        await fake.wait_until(lambda: envelope in fake.acks)
        assert fake.acks[envelope]["payload"] == {"text": "got status"}
    finally:
        await client.close()


async def test_shared_files_carry_their_type_and_download_with_the_bot_token(
        fake: SlackFake) -> None:
    ada = fake.user("ada")
    listener = Listener()
    client = await socket_client(fake, listener)
    try:
        fake.inject_file(fake.im(ada), ada, b"\x89PNG fake", name="chart.png", text="look")
        await fake.wait_until(lambda: len(listener.requests) == 1)
        (shared,) = listener.requests[0].payload["event"]["files"]
        assert (shared["mimetype"], shared["filetype"], shared["size"]) == ("image/png", "png", 9)
        async with httpx.AsyncClient() as http:
            url = shared["url_private_download"]
            assert (await http.get(url)).status_code == 403
            got = await http.get(url, headers={"Authorization": f"Bearer {fake.bot_token}"})
            assert got.content == b"\x89PNG fake"
    finally:
        await client.close()
