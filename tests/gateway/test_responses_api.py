"""POST /v1/responses (OpenResponses) against a real gateway on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.gateway_server import GatewayApp, echo, in_process, sse_events

pytestmark = pytest.mark.anyio

CLOCK = {"type": "function", "name": "get_time", "description": "The time in a zone",
         "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}
STREAM_ORDER = ["response.created", "response.in_progress", "response.output_item.added",
                "response.content_part.added", "response.output_text.delta",
                "response.output_text.done", "response.content_part.done",
                "response.output_item.done", "response.completed"]


def events_of(body: str) -> list[dict[str, Any]]:
    raw = sse_events(body)
    assert raw[-1] == (None, "[DONE]")
    events = [orjson.loads(data) for _, data in raw[:-1]]
    assert [name for name, _ in raw[:-1]] == [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


@pytest.fixture
async def server(tmp_path: Path):
    config = {**echo(chunk_chars=3), "agents": [{"id": "main", "default": True}, {"id": "ops"}]}
    async with in_process(tmp_path, config) as running:
        yield running


async def test_response_resource(server: GatewayApp) -> None:
    async with server.client() as http:
        r = await http.post("/v1/responses", json={"model": "openclaw", "input": "hi there"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("resp_") and body["object"] == "response"
    assert body["status"] == "completed" and body["model"] == "openclaw"
    assert isinstance(body["created_at"], int)
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["status"] == "completed"
    assert item["content"] == [{"type": "output_text", "text": "hi there", "annotations": [],
                                "logprobs": []}]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    run = await server.gateway.runtime.engine.store.get_run(body["id"].removeprefix("resp_"))
    assert run is not None and run.key.startswith("agent:main:openresponses:")


async def test_stream_events_in_order(server: GatewayApp) -> None:
    async with server.client() as http:
        r = await http.post("/v1/responses", json={"input": "a streamed reply", "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    events = events_of(r.text)
    kinds = [e["type"] for e in events]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) == 6 and "".join(deltas) == "a streamed reply"
    assert [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]] == STREAM_ORDER
    assert events[0]["response"]["status"] == "in_progress"
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["text"] == "a streamed reply"
    assert events[-4]["text"] == "a streamed reply"


async def test_items_instructions_and_user_session(server: GatewayApp) -> None:
    store = server.gateway.runtime.engine.store
    request = {"model": "openclaw:ops", "user": "Bob", "instructions": "answer briefly",
               "input": [{"type": "message", "role": "user",
                          "content": [{"type": "input_text", "text": "first"}]}]}
    async with server.client() as http:
        r = await http.post("/openclaw/v1/responses", json=request)
        assert r.json()["output"][0]["content"][0]["text"] == "first"
        r = await http.post("/v1/responses", json={**request, "input": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "output_text", "text": "first"}]},
            {"role": "user", "content": "second"}]})
        assert r.json()["output"][0]["content"][0]["text"] == "second"
    stored = await store.transcript("agent:ops:openresponses-user:bob")
    assert [m.content for m in stored] == ["first", "first", "second", "second"]


async def test_function_call_round_trip(server: GatewayApp) -> None:
    async with server.client() as http:
        r = await http.post("/v1/responses", json={
            "input": '/tool get_time {"zone": "UTC"}', "tools": [CLOCK]})
        first = r.json()
        [call] = first["output"]
        assert call["type"] == "function_call" and call["name"] == "get_time"
        assert call["arguments"] == '{"zone": "UTC"}' and call["call_id"]
        r = await http.post("/v1/responses", json={
            "previous_response_id": first["id"], "tools": [CLOCK],
            "input": [{"type": "function_call_output", "call_id": call["call_id"],
                       "output": "12:00"}]})
        assert r.json()["output"][0]["content"][0]["text"] == "tool get_time said: 12:00"
        assert r.json()["previous_response_id"] == first["id"]
        # Streamed, a call is a function_call output item and no message item.
        r = await http.post("/v1/responses", json={
            "input": "/tool get_time {}", "tools": [CLOCK], "stream": True})
    events = events_of(r.text)
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["function_call"]
    assert events[-1]["response"]["output"][0]["name"] == "get_time"


async def test_official_client_responses(server: GatewayApp) -> None:
    client = server.openai()
    try:
        done = await client.responses.create(model="clawgate/ops", input="sdk says hi")
        assert done.output_text == "sdk says hi" and done.status == "completed"
        stream = await client.responses.create(model="clawgate", input="sdk streams",
                                               stream=True)
        kinds: list[str] = []
        text = ""
        async for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        assert text == "sdk streams" and kinds[-1] == "response.completed"
    finally:
        await client.close()


async def test_bad_requests_name_the_field(server: GatewayApp) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 400, "`input`"),
        ({"input": []}, 400, "`input`"),
        ({"input": [{"role": "robot", "content": "x"}]}, 400, "`input[0].role`"),
        ({"input": [{"type": "computer_call"}]}, 400, "`input[0].type`"),
        ({"input": [{"role": "system", "content": "rules only"}]}, 400,
         "Missing user message in `input`."),
        ({"input": "x", "tools": [{"type": "web_search"}]}, 400, "`tools[0].type`"),
        ({"input": "x", "max_output_tokens": 0}, 400, "`max_output_tokens`"),
        ({"input": "x", "model": "openclaw:nope"}, 404, "does not exist"),
        ({"input": "x", "previous_response_id": "resp_nope"}, 404, "resp_nope"),
    ]
    async with server.client() as http:
        for body, status, named in cases:
            r = await http.post("/v1/responses", json=body)
            assert r.status_code == status, (body, r.text)
            assert named in r.json()["error"]["message"]


async def test_failed_run(tmp_path: Path) -> None:
    config = {"agents": [{"id": "main", "model": "missing/model"}]}
    async with in_process(tmp_path, config) as running, running.client() as http:
        r = await http.post("/v1/responses", json={"input": "hi"})
        assert r.status_code == 500 and r.json()["error"]["type"] == "api_error"
        r = await http.post("/v1/responses", json={"input": "hi", "stream": True})
    events = events_of(r.text)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert "missing" in events[-1]["response"]["error"]["message"]
