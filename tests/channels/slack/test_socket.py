"""The Slack channel over Socket Mode, end to end: the fake sends envelopes, a real gateway
receives them through slack-sdk, the echo agent answers, the fake receives the Web API calls."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest

from tests.channels.slack.support import (
    OPENAI_ENV,
    bot_posts,
    openai_model,
    slack_gateway,
    status_row,
    texts,
    until_status,
)
from tests.support.fakes.slack import SlackFake
from tests.support.mock_openai import MockOpenAI, Reply
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio


async def test_dm_round_trip_with_preview_edits(tmp_path: Path, mock_openai: MockOpenAI) -> None:
    reply = "Hello **there**, this reply streams in: four pieces, 0.6 s apart."
    mock_openai.plan(Reply(reply, chunks=4, interval=0.6))
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, extra=openai_model(
            mock_openai.url), env=OPENAI_ENV):
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_message(dm, ada, "hi")
        rendered = reply.replace("**there**", "*there*")
        await until(lambda: texts(fake, dm) == [rendered], within=10)
        await until(lambda: not fake.unacked)  # the bot's own echo was acknowledged too
        (post,) = fake.calls_of("chat.postMessage")  # the preview, sent when text appeared
        assert post.body["channel"] == dm["id"] and rendered.startswith(post.body["text"])
        assert "thread_ts" not in post.body  # a DM answer is not threaded (reply_to_mode off)
        edits = [c.body for c in fake.calls_of("chat.update")]
        assert len(edits) >= 2 and {e["ts"] for e in edits} == {bot_posts(fake, dm)[0]["ts"]}
        assert len(edits[0]["text"]) < len(rendered) and edits[-1]["text"] == rendered
        # The echo of the bot's own post came back as an event and was dropped: no loop.
        assert fake.counts["chat.postMessage"] == 1 and len(mock_openai.requests) == 1


async def test_status_shows_the_bot_and_the_connection(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        fake.inject_message(fake.im(ada), ada, "hi")
        row = await until_status(server, lambda r: r.get("lastEventAt"))
        assert row["mode"] == "socket" and row["connected"] is True and row["running"] is True
        assert row["bot"] == {"id": fake.bot_user_id, "botId": fake.bot_id,
                              "name": fake.bot_name, "teamId": fake.team_id, "team": fake.team}
        assert row["reconnectAttempts"] == 0 and "lastError" not in row
        channels = server.gateway.runtime.channels
        assert channels is not None
        probed = await channels.status(probe=True)
        assert probed["channelAccounts"]["slack"][0]["probe"]["ok"] is True


async def test_mention_gating_in_a_channel(tmp_path: Path) -> None:
    async with SlackFake() as fake:
        general = fake.channel("general")
        async with slack_gateway(tmp_path, fake, group_policy="open"):
            ada = fake.user("ada")
            fake.inject_message(general, ada, "just chatting & such")
            fake.inject_message(general, ada, f"<@{fake.bot_user_id}> what now?")
            await until(lambda: texts(fake, general), within=10)
            await until(lambda: not fake.unacked)
            (answer,) = texts(fake, general)  # one reply, though Slack sent message + app_mention
            assert "<@" not in answer and "what now?" in answer
            assert "ada: just chatting &amp; such" in answer  # kept as context, rendered escaped
            assert answer.endswith("ada: what now?")
            # Acknowledged: the chatter, the message and its app_mention, the bot's own echo.
            assert len(fake.calls_of("socket:ack")) == 4
            assert fake.counts["chat.postMessage"] == 1


async def test_mention_in_the_middle_and_unmentioned_groups(tmp_path: Path) -> None:
    async with SlackFake() as fake:
        general, ops = fake.channel("general"), fake.channel("ops", private=True)
        groups = {general["id"]: {"require_mention": True}, ops["id"]: {"require_mention": False}}
        async with slack_gateway(tmp_path, fake, groups=groups):
            ada = fake.user("ada")
            fake.inject_message(ops, ada, "no mention needed here")
            fake.inject_message(general, ada, f"hey <@{fake.bot_user_id}>, look")
            await until(lambda: texts(fake, ops) and texts(fake, general), within=10)
            assert texts(fake, ops) == ["ada: no mention needed here"]
            assert texts(fake, general) == [f"ada: hey @{fake.bot_name}, look"]
            stranger = fake.channel("elsewhere")
            fake.inject_message(stranger, ada, f"<@{fake.bot_user_id}> anyone?")
            await until(lambda: not fake.unacked)
            assert texts(fake, stranger) == []  # not in groups: dropped


async def test_threads_are_sessions_and_replies_stay_in_them(tmp_path: Path) -> None:
    async with SlackFake() as fake:
        general = fake.channel("general")
        async with slack_gateway(tmp_path, fake, group_policy="open",
                                 groups={"*": {"require_mention": False}}) as server:
            ada = fake.user("ada")
            root = fake.inject_message(general, ada, "top level")
            await until(lambda: len(texts(fake, general)) == 1, within=10)
            fake.inject_message(general, ada, "in the thread", thread_ts=root["ts"])
            await until(lambda: len(texts(fake, general)) == 2, within=10)
            top, threaded = bot_posts(fake, general)
            assert "thread_ts" not in top  # reply_to_mode "off": the top level stays flat
            assert threaded["thread_ts"] == root["ts"] and threaded["text"] == "ada: in the thread"
            store = server.gateway.runtime.store
            key = f"agent:main:slack:group:{general['id']}:thread:{root['ts']}"
            assert [m.content for m in await store.transcript(key)][0] == "ada: in the thread"
            assert await store.get(f"agent:main:slack:group:{general['id']}") is not None


async def test_reply_to_mode_all_threads_the_answer_under_the_message(tmp_path: Path) -> None:
    long = "\n\n".join(f"Paragraph {n}: " + "words " * 150 for n in range(6))
    async with SlackFake() as fake:
        general = fake.channel("general")
        async with slack_gateway(tmp_path, fake, group_policy="open", reply_to_mode="all",
                                 streaming="off", groups={"*": {"require_mention": False}}):
            ada = fake.user("ada")
            root = fake.inject_message(general, ada, long)
            await until(lambda: len(texts(fake, general)) >= 2, within=10)
            await until(lambda: "".join(texts(fake, general)) == f"ada: {long}", within=10)
            assert {p.get("thread_ts") for p in bot_posts(fake, general)} == {root["ts"]}


LONG = "\n\n".join(f"Paragraph {n}: " + "word " * 190 for n in range(10))  # ~9,700 chars


async def test_a_long_reply_is_split_into_4000_character_parts(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, streaming="off"):
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_message(dm, ada, LONG)
        await until(lambda: "".join(texts(fake, dm)) == LONG, within=15)
        parts = texts(fake, dm)
        assert len(parts) == 3 and all(len(p) <= 4000 for p in parts)
        assert all(p.endswith("\n\n") for p in parts[:-1])  # split at paragraph breaks
        assert [c.body["text"] for c in fake.calls_of("chat.postMessage")] == parts


async def test_a_long_streamed_reply_edits_the_preview_into_part_one(
        tmp_path: Path, mock_openai: MockOpenAI) -> None:
    mock_openai.plan(Reply(LONG, chunks=3, interval=0.6))
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, extra=openai_model(
            mock_openai.url), env=OPENAI_ENV):
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_message(dm, ada, "tell me a lot")
        await until(lambda: "".join(texts(fake, dm)) == LONG, within=15)
        parts = texts(fake, dm)
        assert len(parts) == 3 and all(len(p) <= 4000 for p in parts)
        preview, *rest = fake.calls_of("chat.postMessage")
        assert [c.body["text"] for c in rest] == parts[1:]  # parts 2 and 3 are new messages
        assert len(preview.body["text"]) <= 4000  # the preview never outgrew a part
        assert fake.calls_of("chat.update")[-1].body["text"] == parts[0]


async def test_a_disconnect_frame_reconnects_with_no_loss_and_no_double(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_message(dm, ada, "before")
        await until(lambda: texts(fake, dm) == ["before"], within=10)
        await fake.disconnect("refresh_requested")
        fake.inject_message(dm, ada, "during")  # queued for the connection that is going away
        await fake.wait_until(lambda: fake.counts["socket:connect"] >= 2 and fake.connections,
                              within=10)
        fake.inject_message(dm, ada, "after")
        await until(lambda: sorted(texts(fake, dm)) == ["after", "before", "during"], within=10)
        await until(lambda: not fake.unacked)
        assert sorted(texts(fake, dm)) == ["after", "before", "during"]  # nothing doubled
        row = await until_status(server, lambda r: r.get("reconnectAttempts", 0) >= 1)
        assert row["connected"] is True and row["lastDisconnect"]["reason"] == "refresh_requested"


async def test_a_dropped_socket_is_replaced_and_unacked_envelopes_come_again(
        tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.im(ada)
        # The first message's handler is held up (its sender's name lookup hangs), so its
        # envelope is unacknowledged when the socket dies: Slack delivers it again on the new
        # connection while the first delivery is still being handled. One answer comes out.
        fake.hang("users.info", seconds=1.0)
        fake.inject_message(dm, ada, "in flight")
        await fake.wait_for("users.info")
        assert fake.drop() == 1
        fake.inject_message(dm, ada, "while down")
        await until(lambda: sorted(texts(fake, dm)) == ["in flight", "while down"], within=15)
        await until(lambda: not fake.unacked)
        redelivered = [c for c in fake.calls_of("socket:ack")]
        assert fake.counts["socket:connect"] == 2 and len(redelivered) >= 3
        assert sorted(texts(fake, dm)) == ["in flight", "while down"]
        store = server.gateway.runtime.store
        assert [m.content for m in await store.transcript("agent:main:main")
                if m.role == "user"] == ["in flight", "while down"]
        assert (await status_row(server))["reconnectAttempts"] == 1


async def test_a_busy_event_loop_does_not_cause_a_reconnect(tmp_path: Path) -> None:
    """OpenClaw's Slack socket flapped when its event loop was busy for a few seconds (the
    SDK's pong watchdog). Here the loop is blocked for 2.5 s with pings due every 0.2 s."""
    async with SlackFake() as fake, slack_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_message(dm, ada, "warm up")
        await until(lambda: texts(fake, dm) == ["warm up"], within=10)
        # Block the event loop itself (what a slow synchronous plugin hook would do).
        blocked = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(lambda: (time.sleep(2.5),
                                                      blocked.set_result(None)))
        await blocked
        fake.inject_message(dm, ada, "still there?")
        await until(lambda: texts(fake, dm) == ["warm up", "still there?"], within=10)
        await until(lambda: not fake.unacked)
        assert fake.counts["socket:connect"] == 1
        row = await status_row(server)
        assert row["reconnectAttempts"] == 0 and row["connected"] is True


async def test_rate_limits_honour_retry_after(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, streaming="off") as server:
        fake.rate_limit("chat.postMessage", retry_after=1)
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_message(dm, ada, "slow down")
        await until(lambda: texts(fake, dm) == ["slow down"], within=15)
        first, second = fake.calls_of("chat.postMessage")
        assert second.at - first.at >= 0.9  # not before Slack said
        row = await until_status(server, lambda r: r["pendingDeliveries"] == 0)
        assert row["failedDeliveries"] == 0


async def test_a_refused_post_fails_the_delivery_visibly(tmp_path: Path) -> None:
    async with SlackFake() as fake:
        hidden = fake.channel("hidden", member=False)
        async with slack_gateway(tmp_path, fake, streaming="off", group_policy="open",
                                 groups={"*": {"require_mention": False}}) as server:
            ada = fake.user("ada")
            fake.inject_message(hidden, ada, "can you hear me")
            row = await until_status(server, lambda r: r["failedDeliveries"] == 1)
            assert "not_in_channel" in row["lastDeliveryError"]
            assert fake.counts["chat.postMessage"] == 1  # a 4xx-like refusal is not retried


async def test_skipped_events(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake) as server:
        ada = fake.user("ada")
        dm = fake.im(ada)
        base = {"channel": dm["id"], "channel_type": "im", "ts": fake.ts()}
        fake.inject_event({**base, "type": "message", "subtype": "message_changed",
                           "message": {"text": "edited", "user": ada["id"]}})
        fake.inject_event({**base, "type": "message", "subtype": "message_deleted",
                           "ts": fake.ts()})
        fake.inject_event({**base, "type": "message", "subtype": "channel_join",
                           "user": ada["id"], "ts": fake.ts(), "text": "joined"})
        fake.inject_event({**base, "type": "message", "bot_id": "B0OTHER01", "text": "beep",
                           "ts": fake.ts()})
        fake.inject_event({**base, "type": "reaction_added", "user": ada["id"]})
        fake.inject_message(dm, ada, "a real one")
        await until(lambda: texts(fake, dm) == ["a real one"], within=10)
        await until(lambda: not fake.unacked)
        assert texts(fake, dm) == ["a real one"]
        transcript = await server.gateway.runtime.store.transcript("agent:main:main")
        assert [m.content for m in transcript if m.role == "user"] == ["a real one"]


async def test_files_in_and_out(tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "report.txt").write_bytes(b"quarterly numbers")
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, streaming="off"):
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_file(dm, ada, b"\x89PNG\r\n", name="chart.png", text="see this")
        await until(lambda: texts(fake, dm), within=10)
        # The echo model takes no images: it read a placeholder naming the file.
        assert texts(fake, dm) == ["see this\n[image: chart.png, image/png]"]
        fake.inject_message(dm, ada, f"here MEDIA:{workspace / 'report.txt'}")
        await until(lambda: fake.counts["files.completeUploadExternal"] == 1, within=10)
        uploaded = [f for f in fake.files.values() if f["name"] == "report.txt"]
        assert [f["data"] for f in uploaded] == [b"quarterly numbers"]
        shared = [m for m in fake.history(dm) if m.get("files")][-1]
        assert shared["files"][0]["name"] == "report.txt" and shared["bot_id"] == fake.bot_id
        assert texts(fake, dm)[1] == "here"


async def test_images_reach_a_model_that_takes_them(tmp_path: Path,
                                                    mock_openai: MockOpenAI) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    extra = openai_model(mock_openai.url, images=True)
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, extra=extra,
                                                  streaming="off", env=OPENAI_ENV):
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_file(dm, ada, png, name="chart.png", text="what is this?")
        await until(lambda: texts(fake, dm), within=10)
        (request,) = [r for r in mock_openai.requests if r.path.endswith("/chat/completions")]
        content = request.body["messages"][-1]["content"]
        assert content[0]["text"].startswith("what is this?")
        image = content[1]["image_url"]["url"]
        assert image == "data:image/png;base64," + base64.b64encode(png).decode()
        downloads = fake.calls_of("files.download")
        assert downloads[0].headers["authorization"] == f"Bearer {fake.bot_token}"


async def test_pairing_in_a_dm(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, dm_policy="pairing",
                                                  allow_from=[]) as server:
        ada = fake.user("ada")
        dm = fake.im(ada)
        fake.inject_message(dm, ada, "let me in")
        await until(lambda: texts(fake, dm), within=10)
        (notice,) = texts(fake, dm)
        code = notice.split("approve this code: ", 1)[1][:8]
        async with open_client(server) as ws:
            listed = await ws.ok("channels.pairing.list", {"channel": "slack"})
            assert [(r["id"], r["code"]) for r in listed["requests"]] == [(ada["id"], code)]
            await ws.ok("channels.pairing.approve", {"channel": "slack", "code": code})
        await until(lambda: len(texts(fake, dm)) == 2, within=10)  # "you're approved"
        fake.inject_message(dm, ada, "now?")
        await until(lambda: texts(fake, dm)[-1] == "now?", within=10)
        assert len(texts(fake, dm)) == 3


async def test_slash_command(tmp_path: Path) -> None:
    async with SlackFake() as fake, slack_gateway(tmp_path, fake, streaming="off"):
        ada = fake.user("ada")
        dm = fake.im(ada)
        envelope = fake.inject_slash_command(dm, ada, "/clawd", "hello from a command")
        await until(lambda: texts(fake, dm) == ["hello from a command"], within=10)
        assert fake.acks[envelope]["payload"] == {"response_type": "ephemeral",
                                                  "text": "/clawd hello from a command"}
        fake.inject_slash_command(dm, ada, "/clawd", "status")
        await until(lambda: len(texts(fake, dm)) == 2, within=10)
        assert "agent" in texts(fake, dm)[1].lower()  # /status answered, not echoed
        other = fake.inject_slash_command(dm, ada, "/weather", "berlin")
        await fake.wait_until(lambda: other in fake.acks)
        assert fake.acks[other].get("payload") is None and len(texts(fake, dm)) == 2
