"""POST /v1/chat/completions and GET /v1/models against a real gateway on 127.0.0.1."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from clawgate.gateway.auth import FailureLimiter
from clawgate.gateway.openai_chat import CURRENT_MARKER, HISTORY_MARKER
from tests.support.gateway_server import (
    TOKEN,
    GatewayApp,
    echo,
    in_process,
    serve_gateway,
    sse_events,
    until,
)

pytestmark = pytest.mark.anyio

TWO_AGENTS = {"agents": [{"id": "main", "default": True}, {"id": "ops"}]}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def chat(*texts: str, **extra: Any) -> dict[str, Any]:
    return {"model": "clawgate", "messages": [{"role": "user", "content": t} for t in texts],
            **extra}


def chunks_of(body: str) -> list[dict[str, Any]]:
    events = [data for _, data in sse_events(body)]
    assert events[-1] == "[DONE]"
    return [orjson.loads(data) for data in events[:-1]]


@pytest.fixture
async def server(tmp_path: Path):
    async with in_process(tmp_path, {**echo(chunk_chars=4), **TWO_AGENTS}) as running:
        yield running


async def test_completion_has_the_openai_shape(server: GatewayApp) -> None:
    async with server.client() as http:
        r = await http.post("/v1/chat/completions", json=chat("hello there", model="openclaw"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("chatcmpl_") and body["object"] == "chat.completion"
    assert body["model"] == "openclaw" and isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "hello there"}}]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    store = server.gateway.runtime.engine.store
    run = await store.get_run(body["id"].removeprefix("chatcmpl_"))
    assert run is not None and run.key.startswith("agent:main:openai:") and run.status == "ok"
    # Stored with its reply (one transaction) before the response was sent.
    assert [(m.role, m.content) for m in await store.transcript(run.key)] == [
        ("user", "hello there"), ("assistant", "hello there")]


async def test_stream_sends_role_deltas_finish_usage_and_done(server: GatewayApp) -> None:
    text = "streaming in many small chunks"
    async with server.client() as http:
        r = await http.post("/v1/chat/completions", json=chat(
            text, stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    chunks = chunks_of(r.text)
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(content) == len(text) // 4 + 1 and "".join(content) == text
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


async def _chunked(port: int, body: dict[str, Any]) -> list[bytes]:
    """POST ``body`` over a raw socket; the response's HTTP chunks, one per body write."""
    payload = orjson.dumps(body)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nConnection: close\r\n"
                     + f"Authorization: Bearer {TOKEN}\r\n".encode()
                     + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
        parts = []
        while size := int((await reader.readuntil(b"\r\n"))[:-2], 16):
            parts.append((await reader.readexactly(size + 2))[:-2])
        return parts
    finally:
        writer.close()


async def test_a_burst_of_deltas_goes_out_in_few_writes(tmp_path: Path) -> None:
    # The echo provider yields every delta at once, as a fast provider (or a busy loop) does:
    # the SSE records made from events already queued go out in one body write.
    text = "streaming in many small chunks"
    async with serve_gateway(tmp_path, echo(chunk_chars=4)) as running:
        writes = await _chunked(running.port, chat(text, stream=True))
    chunks = chunks_of(b"".join(writes).decode())
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == text
    assert len(chunks) == len(text) // 4 + 1 + 2  # every record is there: role, deltas, finish
    assert len(writes) <= 4 < len(chunks)


async def test_user_keeps_one_session_over_requests(server: GatewayApp) -> None:
    history: list[dict[str, Any]] = []
    async with server.client() as http:
        for text in ("one", "two", "three"):
            history.append({"role": "user", "content": text})
            # A stateless client replays its history; the stored session must not double it.
            r = await http.post("/v1/chat/completions",
                                json={"model": "clawgate", "messages": history, "user": "Alice"})
            assert r.json()["choices"][0]["message"]["content"] == text
            history.append(r.json()["choices"][0]["message"])
    stored = await server.gateway.runtime.engine.store.transcript("agent:main:openai-user:alice")
    assert [(m.role, m.content) for m in stored] == [
        ("user", "one"), ("assistant", "one"), ("user", "two"), ("assistant", "two"),
        ("user", "three"), ("assistant", "three")]


async def test_fresh_session_gets_the_history_block(server: GatewayApp) -> None:
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "and now?"}]}]
    async with server.client() as http:
        r = await http.post("/v1/chat/completions",
                            json={"model": "clawgate", "messages": messages})
    assert r.json()["choices"][0]["message"]["content"] == "\n".join(
        [HISTORY_MARKER, "User: hi", "Assistant: hello", "", CURRENT_MARKER, "User: and now?"])


async def test_official_client_chat_and_models(server: GatewayApp) -> None:
    client = server.openai()
    try:
        done = await client.chat.completions.create(
            model="clawgate", messages=[{"role": "user", "content": "from the sdk"}])
        assert done.choices[0].message.content == "from the sdk"
        assert done.choices[0].finish_reason == "stop"
        stream = await client.chat.completions.create(
            model="openclaw/ops", stream=True,
            messages=[{"role": "user", "content": "streamed via sdk"}])
        parts = [c.choices[0].delta.content async for c in stream
                 if c.choices and c.choices[0].delta.content]
        assert "".join(parts) == "streamed via sdk" and len(parts) > 1
        listed = [m.id async for m in client.models.list()]
        assert {"clawgate", "clawgate/main", "clawgate/ops", "openclaw/ops"} <= set(listed)
    finally:
        await client.close()


@pytest.mark.parametrize(("model", "agent"), [
    ("clawgate", "main"), ("clawgate/default", "main"), ("clawgate/ops", "ops"),
    ("clawgate:ops", "ops"), ("agent:ops", "ops"), ("openclaw", "main"),
    ("openclaw/default", "main"), ("openclaw/ops", "ops"), ("openclaw:ops", "ops"),
    ("OpenClaw:OPS", "ops"), ("gpt-4o", "main"),
])
async def test_model_selects_the_agent(tmp_path: Path, model: str, agent: str) -> None:
    async with in_process(tmp_path, TWO_AGENTS) as running, running.client() as http:
        r = await http.post("/v1/chat/completions", json=chat("hi", model=model, user="u1"))
        assert r.status_code == 200 and r.json()["model"] == model
        assert await running.gateway.runtime.engine.store.get(f"agent:{agent}:openai-user:u1")


async def test_agent_header_overrides_and_unknown_agent_is_404(server: GatewayApp) -> None:
    store = server.gateway.runtime.engine.store
    async with server.client() as http:
        r = await http.post("/v1/chat/completions", json=chat("hi", user="h"),
                            headers={"x-openclaw-agent-id": "ops"})
        assert r.status_code == 200 and await store.get("agent:ops:openai-user:h")
        for model in ("openclaw:nope", "clawgate/nope", "agent:nope"):
            r = await http.post("/v1/chat/completions", json=chat("hi", model=model))
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        r = await http.post("/v1/chat/completions", json=chat("hi"),
                            headers={"x-clawgate-agent-id": "nope"})
        assert r.status_code == 404


async def test_session_header_and_reserved_prefixes(server: GatewayApp) -> None:
    store = server.gateway.runtime.engine.store
    async with server.client() as http:
        r = await http.post("/v1/chat/completions", json=chat("hi"),
                            headers={"x-openclaw-session-key": "my-chat"})
        assert r.status_code == 200 and await store.get("agent:main:my-chat")
        r = await http.post("/v1/chat/completions", json=chat("hi"),
                            headers={"x-clawgate-session-key": "agent:ops:desk"})
        assert r.status_code == 200 and await store.get("agent:ops:desk")
        for key in ("subagent:x", "cron:job", "acp:y", "agent:main:subagent:z"):
            r = await http.post("/v1/chat/completions", json=chat("hi"),
                                headers={"x-openclaw-session-key": key})
            assert r.status_code == 400, key
            assert "reserved" in r.json()["error"]["message"]


async def test_auth_failures_are_401_then_429(server: GatewayApp) -> None:
    server.gateway.limiter = FailureLimiter(max_attempts=3, window_s=60, base_lockout_s=60)
    async with server.client(token=None) as anonymous:
        r = await anonymous.post("/v1/chat/completions", json=chat("hi"))
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.json()["error"]["message"]
        for n in range(3):
            r = await anonymous.post("/v1/chat/completions", json=chat("hi"),
                                     headers={"Authorization": f"Bearer wrong-{n}"})
            assert r.status_code == 401
        r = await anonymous.get("/v1/models", headers={"Authorization": "Bearer wrong-3"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert r.json()["error"]["type"] == "rate_limit_error"
        # A request without credentials is not a guess: it is told to authenticate.
        assert (await anonymous.get("/v1/models")).status_code == 401
    async with server.client() as http:  # locked out, but the right token is never refused
        assert (await http.get("/v1/models")).status_code == 200


async def test_bad_bodies_are_400_and_the_server_keeps_serving(server: GatewayApp) -> None:
    cases: list[tuple[Any, str]] = [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({"messages": "hi"}, "`messages`"),
        ({"messages": []}, "`messages`"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]},
         "`messages[1].role`"),
        ({"messages": [{"role": "user", "content": 7}]}, "`messages[0].content`"),
        ({"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
         "`messages[0].content[0].type`"),
        ({"messages": [{"role": "system", "content": "only rules"}]},
         "Missing user message in `messages`."),
        ({**chat("hi"), "user": "has space"}, "`user`"),
        ({**chat("hi"), "temperature": 5}, "`temperature`"),
        ({**chat("hi"), "stream": "yes"}, "`stream`"),
        ({**chat("hi"), "tools": [{"type": "retrieval"}]}, "`tools[0].type`"),
    ]
    async with server.client() as http:
        for body, named in cases:
            if isinstance(body, bytes):
                r = await http.post("/v1/chat/completions", content=body,
                                    headers={"content-type": "application/json"})
            else:
                r = await http.post("/v1/chat/completions", json=body)
            assert r.status_code == 400, (body, r.text)
            error = r.json()["error"]
            assert error["type"] == "invalid_request_error" and named in error["message"]
        r = await http.post("/v1/chat/completions", json=chat("still here"))
        assert r.json()["choices"][0]["message"]["content"] == "still here"


async def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    config = {"gateway": {"max_body_bytes": 2048}}
    async with in_process(tmp_path, config) as running, running.client() as http:
        r = await http.post("/v1/chat/completions", json=chat("x" * 4096))
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        assert (await http.post("/v1/chat/completions", json=chat("small"))).status_code == 200


async def test_wrong_method_is_an_openai_405(server: GatewayApp) -> None:
    async with server.client() as http:
        for method, path in (("GET", "/v1/chat/completions"), ("PUT", "/v1/responses"),
                             ("POST", "/v1/models"), ("DELETE", "/openclaw/v1/models/clawgate")):
            r = await http.request(method, path)
            assert r.status_code == 405, path
            assert r.json()["error"]["type"] == "invalid_request_error" and "allow" in r.headers


async def test_client_tool_round_trip(server: GatewayApp) -> None:
    first = [{"role": "user", "content": '/tool get_weather {"city": "Paris"}'}]
    async with server.client() as http:
        r = await http.post("/v1/chat/completions",
                            json={"model": "clawgate", "messages": first, "tools": [WEATHER],
                                  "user": "tools"})
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        [call] = choice["message"]["tool_calls"]
        assert call["type"] == "function" and call["function"] == {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}
        follow_up = [*first, choice["message"],
                     {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"}]
        r = await http.post("/v1/chat/completions",
                            json={"model": "clawgate", "messages": follow_up,
                                  "tools": [WEATHER], "user": "tools"})
        assert r.json()["choices"][0]["message"]["content"] == \
            "tool get_weather said: sunny, 21C"
        # Streamed, the calls arrive as a tool_calls delta before finish_reason tool_calls.
        r = await http.post("/v1/chat/completions", json={
            "model": "clawgate", "messages": first, "tools": [WEATHER], "stream": True})
    chunks = chunks_of(r.text)
    assert chunks[-2]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == \
        "get_weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    stored = await server.gateway.runtime.engine.store.transcript("agent:main:openai-user:tools")
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]


async def test_disconnect_mid_stream_keeps_the_run(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path, echo(delay_ms=300, chunk_chars=2)) as running:
        engine = running.gateway.runtime.engine
        listening = engine.bus.subscribers  # the WebSocket relay's, if any
        async with running.client() as http, http.stream(
                "POST", "/v1/chat/completions",
                json=chat("left early", stream=True, user="gone")) as r:
            lines = r.aiter_lines()
            assert "assistant" in await anext(lines)  # the role chunk, before any text
        key = "agent:main:openai-user:gone"

        async def answered() -> bool:
            stored = await engine.store.transcript(key)
            return [(m.role, m.content) for m in stored] == [
                ("user", "left early"), ("assistant", "left early")]

        # The stream stops following the run as soon as its client leaves, not at the end.
        await until(lambda: engine.bus.subscribers == listening)
        assert not await answered()
        await until(answered)


async def test_run_failures(tmp_path: Path) -> None:
    config = {"agents": [{"id": "main", "model": "missing/model"}]}
    async with in_process(tmp_path, config) as running, running.client() as http:
        r = await http.post("/v1/chat/completions", json=chat("hi"))
        assert r.status_code == 500 and r.json()["error"]["type"] == "api_error"
        assert "missing" in r.json()["error"]["message"]
        r = await http.post("/v1/chat/completions", json=chat("hi", stream=True))
        chunks = chunks_of(r.text)
        assert chunks[-2]["choices"][0]["delta"]["content"].startswith("Error: ")
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_queue_full_is_429_and_draining_is_503(tmp_path: Path) -> None:
    config = {**echo(delay_ms=200), "engine": {"queue_cap": 1}}
    async with in_process(tmp_path, config) as running, running.client() as http:
        replies = await asyncio.gather(*(
            http.post("/v1/chat/completions", json=chat(f"m{i}", user="busy")) for i in range(3)))
        codes = sorted(r.status_code for r in replies)
        assert codes[0] == 200 and codes[-1] == 429
        busy = next(r for r in replies if r.status_code == 429)
        assert busy.json()["error"]["type"] == "rate_limit_error"
        running.gateway.state = "draining"
        try:
            r = await http.post("/v1/chat/completions", json=chat("late"))
            assert r.status_code == 503
        finally:
            running.gateway.state = "ready"


async def test_models_and_the_openclaw_alias(server: GatewayApp) -> None:
    async with server.client() as http:
        listed = (await http.get("/v1/models")).json()
        assert listed["object"] == "list"
        ids = [m["id"] for m in listed["data"]]
        assert ids == ["clawgate", "clawgate/default", "clawgate/main", "clawgate/ops",
                       "openclaw", "openclaw/default", "openclaw/main", "openclaw/ops"]
        assert {(m["object"], m["owned_by"]) for m in listed["data"]} == {("model", "clawgate")}
        assert (await http.get("/openclaw/v1/models")).json() == listed
        one = await http.get("/v1/models/openclaw/ops")
        assert one.json()["id"] == "openclaw/ops" and one.json()["object"] == "model"
        assert (await http.get("/v1/models/openclaw:ops")).status_code == 200
        missing = await http.get("/v1/models/openclaw/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == \
            "model_not_found"
        r = await http.post("/openclaw/v1/chat/completions", json=chat("via alias"))
        assert r.json()["choices"][0]["message"]["content"] == "via alias"
    metrics = server.gateway.metrics
    assert metrics.get("http_requests_total", route="/openclaw/v1/chat/completions",
                       status="200") == 1
    assert metrics.get("http_requests_total", route="/v1/models/{model_id:path}",
                       status="404") == 1


async def test_metrics_endpoint_shows_the_routes(server: GatewayApp) -> None:
    async with server.client() as http:
        await http.post("/v1/chat/completions", json=chat("count me"))
        text = (await http.get("/metrics")).text
    assert 'http_requests_total{route="/v1/chat/completions",status="200"} 1' in text
    assert 'http_request_seconds_count{route="/v1/chat/completions"} 1' in text


async def test_a_command_over_http_is_answered_by_the_command(server: GatewayApp) -> None:
    async with server.client() as http:
        r = await http.post("/v1/chat/completions", json=chat("/status", user="cmd"))
        assert r.status_code == 200, r.text
        content = r.json()["choices"][0]["message"]["content"]
        assert "Session: agent:main:openai-user:cmd" in content
        r = await http.post("/v1/chat/completions", json=chat("/tool nothing here"))
        assert r.json()["choices"][0]["message"]["content"] == "/tool nothing here"
