"""Channel benchmark: a platform message in, the agent's reply out, through a real
`clawgate gateway` process and the loopback fakes of the platforms.

Rows (one per channel): a platform message -> durable admission -> echo turn -> the reply
received by the platform fake. For each: the gateway's time per message (inbound sent to reply
received, one conversation, p50/p99), messages per second with 50 conversations at once, and a
long run where every message must be answered exactly once (0 lost, 0 doubled).

- `webhook`: a signed inbound POST; the reply POSTed to a receiver.
- `telegram`: an update queued at the Bot API fake, fetched by the gateway's own getUpdates
  long poll; the reply is the sendMessage the fake receives (the fake runs in this process, so
  its request handling is inside the measured time).
- `slack`: a DM `message` event sent by the Slack fake over Socket Mode; the reply is the
  `chat.postMessage` the fake receives (its own time is included: it runs in this process).
- `discord`: a DM's MESSAGE_CREATE sent over the Discord fake's Gateway (hikari in the gateway
  receives it); the reply is the `POST /channels/{id}/messages` the fake's REST API receives.
  The fake runs in the bench process, so its own work (zlib-compressed Gateway frames, REST
  parsing, the bot's echoed MESSAGE_CREATE) is inside the measured time.

Prints one JSON document, then a `verdict:` line. `--quick` sends fewer messages; `--rows`
picks rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

import common

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the platform fakes live with the tests

from tests.support.fakes.discord_api import DiscordFake  # noqa: E402
from tests.support.fakes.harness import Call  # noqa: E402
from tests.support.fakes.slack import SlackFake  # noqa: E402
from tests.support.fakes.telegram import TelegramFake  # noqa: E402
from tests.support.fakes.webhook import WebhookReceiver, sign  # noqa: E402

CLAWGATE = str(Path(sys.executable).with_name("clawgate"))
SECRET = "bench-secret-of-the-webhook-channel"
P50_BUDGET_MS = 5.0
RATE_BUDGETS = {"webhook": 500.0}  # messages/s at 50 conversations
RATE_BUDGETS["telegram"] = 300.0
RATE_BUDGETS["slack"] = 300.0
RATE_BUDGETS["discord"] = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Gateway:
    proc: asyncio.subprocess.Process
    url: str


def prepare(state: Path, config: str) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "clawgate.toml").write_text(config)


async def start_gateway(state: Path, config: str) -> Gateway:
    await asyncio.to_thread(prepare, state, config)
    port = free_port()
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(state), "CLAWGATE_GATEWAY_PORT": str(port),
           "CLAWGATE_LOG_LEVEL": "WARNING"}
    env.pop("CLAWGATE_CONFIG", None)
    log = await asyncio.to_thread(open, state / "gateway.log", "wb")  # the child's output
    proc = await asyncio.create_subprocess_exec(CLAWGATE, "gateway", env=env,
                                                stdout=log, stderr=log)
    log.close()
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{url}/ready")).status_code == 200:
                    return Gateway(proc, url)
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)
    proc.kill()
    raise RuntimeError("the gateway did not become ready")


async def stop_gateway(gateway: Gateway) -> None:
    gateway.proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(gateway.proc.wait(), 30)
    except TimeoutError:
        gateway.proc.kill()
        await gateway.proc.wait()


class Replies:
    """Waiters for replies, by their text (every message of a run is unique)."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.seen: dict[str, int] = {}

    def expect(self, text: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[text] = future
        return future

    def arrived(self, text: str) -> None:
        self.seen[text] = self.seen.get(text, 0) + 1
        future = self.waiting.pop(text, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


# -- a row: how to send one message and be told of its reply ---------------------------------

Send = Callable[[str, str], Awaitable[None]]  # (conversation, text)


async def drive(send: Send, replies: Replies, *, sequential: int, parallel: int,
                per_conversation: int, long_run: int) -> dict[str, Any]:
    """The measurements every row shares."""
    # Latency: one conversation, one message at a time.
    samples = []
    for n in range(sequential):
        text = f"latency {n} {uuid.uuid4().hex[:6]}"
        waiter = replies.expect(text)
        started = time.perf_counter()
        await send("solo", text)
        samples.append((await asyncio.wait_for(waiter, 30)) - started)
    # Throughput: `parallel` conversations, each sending as soon as its last reply arrived.
    async def conversation(c: int, count: int) -> None:
        for n in range(count):
            text = f"rate {c}.{n} {uuid.uuid4().hex[:6]}"
            waiter = replies.expect(text)
            await send(f"conv-{c}", text)
            await asyncio.wait_for(waiter, 60)

    started = time.perf_counter()
    await asyncio.gather(*(conversation(c, per_conversation) for c in range(parallel)))
    rate = parallel * per_conversation / (time.perf_counter() - started)
    # Exactly once: `long_run` messages, then every reply counted.
    texts = [f"once {n} {uuid.uuid4().hex[:6]}" for n in range(long_run)]
    batch = 50
    for start in range(0, long_run, batch):
        chunk = texts[start:start + batch]
        waiters = [replies.expect(t) for t in chunk]
        await asyncio.gather(*(send(f"long-{i % parallel}", t) for i, t in enumerate(chunk)))
        await asyncio.wait_for(asyncio.gather(*waiters), 120)
    await asyncio.sleep(0.5)  # a late duplicate would arrive now
    lost = sum(1 for t in texts if replies.seen.get(t, 0) == 0)
    doubled = sum(1 for t in texts if replies.seen.get(t, 0) > 1)
    ms = [s * 1000 for s in samples]
    return {"latency_ms": {"p50": round(common.percentile(ms, 50), 3),
                           "p99": round(common.percentile(ms, 99), 3), "n": len(ms)},
            "messages_per_s": round(rate, 1), "parallel_conversations": parallel,
            "long_run": {"messages": long_run, "lost": lost, "doubled": doubled}}


async def webhook_row(workdir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    replies = Replies()
    async with WebhookReceiver() as hook:
        def on_post(call: Any) -> None:
            body = WebhookReceiver.json(call)
            if isinstance(body, dict):
                replies.arrived(str(body.get("text", "")))
            return None

        hook.responder = lambda call: on_post(call)  # type: ignore[func-returns-value]
        config = f"""
[engine]
max_concurrent = 64

[session]
dm_scope = "per-channel-peer"

[channels.webhook]
inbound_secret = "{SECRET}"
outbound_url = "{hook.url}/hook"
dm_policy = "open"
allow_from = ["*"]
"""
        gateway = await start_gateway(workdir / "webhook", config)
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30,
                                         limits=httpx.Limits(max_connections=64)) as http:
                async def send(conversation: str, text: str) -> None:
                    raw = orjson.dumps({"id": uuid.uuid4().hex, "from": conversation,
                                        "text": text})
                    for attempt in range(3):  # a pooled connection the server just closed
                        try:
                            r = await http.post("/channels/webhook/default/inbound",
                                                content=raw, headers=sign(SECRET, raw))
                            break
                        except (httpx.ReadError, httpx.RemoteProtocolError):
                            if attempt == 2:
                                raise
                    # A retried POST of the same id is a duplicate (200): still one message.
                    if r.status_code not in (200, 202):
                        raise RuntimeError(f"inbound refused: {r.status_code} {r.text}")

                result = await drive(send, replies, **sizes)
        finally:
            await stop_gateway(gateway)
        result["duplicate_keys"] = len(hook.duplicates())
    return result


class _ReplyingFake(TelegramFake):
    """The Bot API fake, telling ``replies`` of every sendMessage it accepted."""

    def __init__(self, replies: Replies) -> None:
        super().__init__()
        self.replies = replies

    async def _send_message(self, bot: Any, p: Any, call: Any) -> Any:
        result = await super()._send_message(bot, p, call)
        self.replies.arrived(str(result.get("text", "")))  # the text as Telegram shows it
        return result


async def telegram_row(workdir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    replies = Replies()
    async with _ReplyingFake(replies) as fake:
        tg = fake.bot
        config = f"""
[engine]
max_concurrent = 64

[session]
dm_scope = "per-channel-peer"

[channels.telegram]
bot_token = "{fake.token}"
api_base_url = "{fake.url}"
poll_timeout_s = 1
dm_policy = "open"
allow_from = ["*"]
streaming = "off"
"""
        chats: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

        async def send(conversation: str, text: str) -> None:
            # Each conversation is the private chat of a user of its own.
            if conversation not in chats:
                user = tg.user(conversation)
                chats[conversation] = (user, tg.private_chat(user))
            user, chat = chats[conversation]
            tg.inject_text(chat, user, text)

        gateway = await start_gateway(workdir / "telegram", config)
        try:
            deadline = time.monotonic() + 30
            while fake.counts["getUpdates"] == 0:  # the account is up and polling
                if time.monotonic() > deadline:
                    raise RuntimeError("the telegram account never polled")
                await asyncio.sleep(0.01)
            result = await drive(send, replies, **sizes)
        finally:
            await stop_gateway(gateway)
        result["streaming"] = "off"
        result["bot_api_calls"] = dict(sorted(fake.counts.items()))
    return result


class _SlackFake(SlackFake):
    """The Slack fake, telling the row of every reply the bot posts."""

    def __init__(self, replies: Replies) -> None:
        super().__init__()
        self.replies = replies

    async def _post(self, params: dict[str, Any], call: Any) -> dict[str, Any]:
        self.replies.arrived(str(params.get("text", "")))
        return await super()._post(params, call)


async def slack_row(workdir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    replies = Replies()
    async with _SlackFake(replies) as fake:
        # Replies are measured as the durable send (no preview message first).
        config = f"""
[engine]
max_concurrent = 64

[session]
dm_scope = "per-channel-peer"

[channels.slack]
bot_token = "{fake.bot_token}"
app_token = "{fake.app_token}"
api_base_url = "{fake.api_url}"
streaming = "off"
dm_policy = "open"
allow_from = ["*"]
"""
        gateway = await start_gateway(workdir / "slack", config)
        people: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        try:
            deadline = time.monotonic() + 30
            while not fake.connections and time.monotonic() < deadline:
                await fake.pause(0.02)
            if not fake.connections:
                raise RuntimeError("the gateway did not connect to Socket Mode")

            async def send(conversation: str, text: str) -> None:
                if conversation not in people:
                    user = fake.user(conversation)
                    people[conversation] = (user, fake.im(user))
                user, dm = people[conversation]
                fake.inject_message(dm, user, text)

            result = await drive(send, replies, **sizes)
        finally:
            await stop_gateway(gateway)
        result["unacked_envelopes"] = len(fake.unacked)
        result["socket_connects"] = fake.counts["socket:connect"]
    return result


DISCORD_POST = "POST /channels/{channel_id}/messages"


class _DiscordBench(DiscordFake):
    """The Discord fake, telling the row of every message the bot POSTs."""

    def __init__(self, on_post: Callable[[Call], None]) -> None:
        super().__init__(max_messages=200)
        self.on_post = on_post

    def record(self, name: str, **fields: Any) -> Call:
        call = super().record(name, **fields)
        if name == DISCORD_POST:
            self.on_post(call)
        return call


async def discord_row(workdir: Path, sizes: dict[str, int]) -> dict[str, Any]:
    replies = Replies()
    nonces: dict[str, int] = {}

    def on_post(call: Call) -> None:
        body = call.body if isinstance(call.body, dict) else {}
        nonce = str(body.get("nonce"))
        nonces[nonce] = nonces.get(nonce, 0) + 1
        replies.arrived(str(body.get("content", "")))

    async with _DiscordBench(on_post) as fake:
        config = f"""
[engine]
max_concurrent = 64

[session]
dm_scope = "per-channel-peer"

[channels.discord]
bot_token = "{fake.token}"
api_base_url = "{fake.rest_url}"
dm_policy = "open"
allow_from = ["*"]
streaming = "off"
"""
        gateway = await start_gateway(workdir / "discord", config)
        try:
            deadline = time.monotonic() + 30
            while not any(s.link is not None for s in fake.gateway.sessions.values()):
                if time.monotonic() > deadline:
                    raise RuntimeError("the gateway's Discord account did not connect")
                await asyncio.sleep(0.02)
            people: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

            async def send(conversation: str, text: str) -> None:
                if conversation not in people:
                    user = fake.user(conversation)
                    people[conversation] = (user, fake.dm(user))
                user, dm = people[conversation]
                fake.inject_message(dm, user, text)  # MESSAGE_CREATE over the Gateway

            result = await drive(send, replies, **sizes)
        finally:
            await stop_gateway(gateway)
        result["duplicate_keys"] = sum(1 for n in nonces.values() if n > 1)
        result["gateway_identifies"] = fake.counts["gateway:IDENTIFY"]
    return result


ROWS: dict[str, Callable[[Path, dict[str, int]], Awaitable[dict[str, Any]]]] = {
    "webhook": webhook_row,
    "telegram": telegram_row,
    "slack": slack_row,
    "discord": discord_row,
}


def budgets(rows: dict[str, dict[str, Any]]) -> list[common.Budget]:
    out = []
    for name, row in rows.items():
        p50 = row["latency_ms"]["p50"]
        out.append(common.Budget(f"{name}: gateway time per message p50 (ms)",
                                 f"< {P50_BUDGET_MS:g}", p50, p50 < P50_BUDGET_MS))
        rate = row["messages_per_s"]
        want = RATE_BUDGETS.get(name, 300.0)
        out.append(common.Budget(f"{name}: messages/s at {row['parallel_conversations']} "
                                 "conversations", f">= {want:g}", rate, rate >= want))
        long = row["long_run"]
        clean = long["lost"] == 0 and long["doubled"] == 0 and row.get("duplicate_keys", 0) == 0
        out.append(common.Budget(f"{name}: {long['messages']} messages lost/doubled",
                                 "0/0", f"{long['lost']}/{long['doubled']}", clean))
    return out


async def main(quick: bool, names: list[str]) -> None:
    sizes = ({"sequential": 100, "parallel": 50, "per_conversation": 10, "long_run": 1000}
             if quick else
             {"sequential": 500, "parallel": 50, "per_conversation": 40, "long_run": 10_000})
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="clawgate-bench-channels-") as tmp:
        for name in names:
            rows[name] = await ROWS[name](Path(tmp), sizes)
    common.report({"benchmark": "channels", "mode": "quick" if quick else "full",
                   "environment": common.environment(), "load": os.getloadavg(),
                   "rows": rows}, budgets(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.rows))
