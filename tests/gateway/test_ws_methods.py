"""System, session, agent and plugin RPC methods over a real WebSocket connection."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from clawgate.agents.turn import Submission
from tests.support.gateway_server import GatewayServer, serve_gateway
from tests.support.ws_client import READ_WRITE, WsClient, open_client, write_demo_plugin

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path):
    write_demo_plugin(tmp_path / "plugins")
    config = {"plugins": {"load_paths": [str(tmp_path / "plugins")],
                          "entries": {"echo": {"config": {"chunk_chars": 4}}}},
              "gateway": {"auth": {"token": "super-secret"}}}
    async with serve_gateway(tmp_path / "state", config) as running:
        yield running


@pytest.fixture
async def client(server: GatewayServer):
    async with open_client(server) as connected:
        yield connected


async def run(server: GatewayServer, key: str, text: str = "hi") -> None:
    result = await server.gateway.runtime.engine.run(Submission(text, session_key=key))
    assert result.status == "ok", result


async def bad(client: WsClient, method: str, params: object, needle: str) -> None:
    error = await client.error(method, params)
    assert error["code"] == "INVALID_REQUEST", error
    assert needle in error["message"], error


async def test_health(server: GatewayServer, client: WsClient) -> None:
    await run(server, "agent:main:one")
    health = await client.ok("health")
    assert health["ok"] is True and health["defaultAgentId"] == "main"
    agent = health["agents"][0]
    assert (agent["agentId"], agent["name"], agent["isDefault"]) == ("main", "main", True)
    # The default agent's heartbeat runs every 30 minutes (the default).
    assert agent["sessions"]["count"] == 1 and agent["heartbeat"]["enabled"] is True
    assert agent["heartbeat"]["everyMs"] == 1_800_000 and health["heartbeatSeconds"] == 1800
    assert health["sessions"]["count"] == 1
    assert health["sessions"]["recent"][0]["key"] == "agent:main:one"
    assert isinstance(health["ts"], int) and health["durationMs"] >= 0
    await bad(client, "health", {"bogus": 1}, "invalid health params: bogus: unknown field")


async def test_status_and_presence(server: GatewayServer, client: WsClient) -> None:
    status = await client.ok("status")
    assert status["version"] == server.gateway.version and status["uptimeMs"] >= 0
    assert status["sessions"]["count"] == 0 and status["agents"][0]["id"] == "main"
    assert "demo.echo" in status["plugins"]["methods"] and status["plugins"]["errors"] == 0
    assert status["counters"]["plugin_loads_on_request_total"] == 0
    await bad(client, "status", {"x": 1}, "invalid status params: x: unknown field")
    presence = await client.ok("system-presence")
    assert presence[0]["mode"] == "gateway" and presence[1]["mode"] == "test"


async def test_sessions_list_pages_and_filters(server: GatewayServer, client: WsClient) -> None:
    for name in ("alpha", "beta", "gamma"):
        await run(server, f"agent:main:{name}")
    await server.gateway.runtime.store.patch("agent:main:beta", label="Beta label")
    page = await client.ok("sessions.list", {"limit": 2})
    assert page["count"] == 2 and page["totalCount"] == 3 and page["limitApplied"] == 2
    assert page["hasMore"] is True and page["nextOffset"] == 2 and page["offset"] == 0
    assert page["defaults"] == {"modelProvider": "echo", "model": "echo", "contextTokens": None}
    assert page["path"].endswith("clawgate.db") and isinstance(page["ts"], int)
    assert [r["key"] for r in page["sessions"]] == ["agent:main:beta", "agent:main:gamma"]
    rest = await client.ok("sessions.list", {"limit": 2, "offset": 2})
    assert [r["key"] for r in rest["sessions"]] == ["agent:main:alpha"]
    assert rest["hasMore"] is False and rest["nextOffset"] is None
    assert rest["nextCursor"] is None and page["totalCountCapped"] is False
    by_cursor = await client.ok("sessions.list", {"limit": 2, "cursor": page["nextCursor"]})
    assert [r["key"] for r in by_cursor["sessions"]] == ["agent:main:alpha"]
    assert by_cursor["hasMore"] is False and by_cursor["nextCursor"] is None
    await bad(client, "sessions.list", {"cursor": "nope"}, "cursor is not a sessions.list")
    await bad(client, "sessions.list", {"cursor": page["nextCursor"], "offset": 1},
              "cursor and offset cannot be combined")
    found = await client.ok("sessions.list", {"search": "GAMMA", "agentId": "main"})
    assert [r["key"] for r in found["sessions"]] == ["agent:main:gamma"]
    labelled = await client.ok("sessions.list", {"label": "Beta label",
                                                  "includeDerivedTitles": True})
    assert [r["label"] for r in labelled["sessions"]] == ["Beta label"]
    row = labelled["sessions"][0]
    assert row["kind"] == "direct" and row["modelProvider"] == "echo"
    assert (await client.ok("sessions.list", {"activeMinutes": 5}))["totalCount"] == 3
    await bad(client, "sessions.list", {"limit": 0}, "invalid sessions.list params: limit:")
    await bad(client, "sessions.list", {"limit": "5"}, "limit")
    await bad(client, "sessions.list", {"owner": "me"}, "owner: unknown field")
    await server.gateway.runtime.store.patch("agent:main:gamma", channel="webhook")
    webhook = await client.ok("sessions.list", {"channel": "webhook"})
    assert [r["key"] for r in webhook["sessions"]] == ["agent:main:gamma"]
    assert (await client.ok("sessions.list", {"channel": "slack"}))["sessions"] == []
    await bad(client, "sessions.list", {"channel": ""}, "channel")


async def test_sessions_preview(server: GatewayServer, client: WsClient) -> None:
    await run(server, "agent:main:p1", "a fairly long message for the preview")
    out = await client.ok("sessions.preview", {"keys": ["agent:main:p1", "nothing-here"],
                                               "maxChars": 10})
    ok, missing = out["previews"]
    assert ok["status"] == "ok" and ok["key"] == "agent:main:p1"
    assert ok["items"][0] == {"role": "user", "text": "a fairly …"}
    assert ok["items"][1]["role"] == "assistant"
    assert missing["status"] == "missing" and missing["items"] == []
    await bad(client, "sessions.preview", {"keys": []}, "keys")
    await bad(client, "sessions.preview", {"keys": ["k"] * 65}, "keys")


async def test_sessions_patch(server: GatewayServer, client: WsClient) -> None:
    await client.ok("sessions.subscribe")
    out = await client.ok("sessions.patch", {"key": "patched", "label": "Mine",
                                             "sendPolicy": "deny", "thinkingLevel": "high",
                                             "queueMode": "collect"})
    assert out["ok"] is True and out["key"] == "agent:main:patched"
    entry = out["entry"]
    assert entry["label"] == "Mine" and entry["sendPolicy"] == "deny"
    assert entry["thinkingLevel"] == "high" and entry["queueMode"] == "collect"
    changed = await client.event("sessions.changed")
    assert changed["payload"]["sessionKey"] == "agent:main:patched"
    assert changed["payload"]["reason"] == "patch" and changed["payload"]["agentId"] == "main"
    refused = await client.error("chat.send", {"sessionKey": "patched", "message": "hi",
                                               "idempotencyKey": "blocked-1"})
    assert "send blocked by session policy" in refused["message"]
    out = await client.ok("sessions.patch", {"key": "patched", "model": "echo/echo-large",
                                             "label": None})
    assert out["entry"]["modelOverride"] == "echo-large" and "label" not in out["entry"]
    assert out["resolved"] == {"modelProvider": "echo", "model": "echo-large"}
    out = await client.ok("sessions.patch", {"key": "patched", "model": None})
    assert "modelOverride" not in out["entry"]
    await bad(client, "sessions.patch", {"key": "patched", "model": "nope/x"},
              "model not allowed: nope/x")
    await bad(client, "sessions.patch", {"key": "patched", "verbose": "on"},
              "verbose: unknown field")
    await bad(client, "sessions.patch", {"key": "patched", "sendPolicy": "maybe"},
              "sendPolicy")
    await bad(client, "sessions.patch", {"label": "x"}, "key: Field required")


async def test_sessions_reset_and_delete(server: GatewayServer, client: WsClient) -> None:
    await run(server, "agent:main:gone")
    before = await server.gateway.runtime.store.get("agent:main:gone")
    assert before is not None
    out = await client.ok("sessions.reset", {"key": "agent:main:gone"})
    assert out["ok"] and out["entry"]["sessionId"] != before.session_id
    history = await client.ok("chat.history", {"sessionKey": "agent:main:gone"})
    assert history["messages"] == []
    out = await client.ok("sessions.delete", {"key": "agent:main:gone"})
    assert out == {"ok": True, "key": "agent:main:gone", "deleted": True, "archived": []}
    assert await server.gateway.runtime.store.get("agent:main:gone") is None
    await bad(client, "sessions.delete", {"key": "main"}, "cannot be deleted")
    await bad(client, "sessions.reset", {"key": "agent:main:never"}, "no session")
    await bad(client, "sessions.delete", {}, "key: Field required")


async def test_sessions_resolve(server: GatewayServer, client: WsClient) -> None:
    await run(server, "agent:main:findme")
    entry = await server.gateway.runtime.store.patch("agent:main:findme", label="Finder")
    assert await client.ok("sessions.resolve", {"key": "findme"}) == {
        "ok": True, "key": "agent:main:findme"}
    assert (await client.ok("sessions.resolve", {"label": "Finder"}))["key"] == entry.key
    assert (await client.ok("sessions.resolve", {"sessionId": entry.session_id}))["ok"]
    assert await client.ok("sessions.resolve", {"key": "nobody"}) == {"ok": False}
    await bad(client, "sessions.resolve", {}, "exactly one of")
    await bad(client, "sessions.resolve", {"key": "a", "label": "b"}, "exactly one of")


async def test_agents_and_models(client: WsClient) -> None:
    agents = await client.ok("agents.list")
    assert agents["defaultId"] == "main" and agents["mainKey"] == "main"
    assert agents["agents"][0]["id"] == "main"
    assert agents["agents"][0]["model"] == {"primary": "echo/echo"}
    models = await client.ok("models.list")
    assert {"id": "echo", "name": "Echo (offline)", "provider": "echo", "input": ["text"],
            "available": True} in models["models"]
    await bad(client, "agents.list", {"x": 1}, "unknown field")
    await bad(client, "models.list", {"view": "weird"}, "view")


async def test_plugins_list(client: WsClient) -> None:
    out = await client.ok("plugins.list")
    demo = next(p for p in out["plugins"] if p["id"] == "demo")
    assert demo["status"] == "loaded" and "demo.echo" in demo["methods"]
    await bad(client, "plugins.list", {"all": True}, "unknown field")


async def test_config_get_redacts_secrets_with_read_scope(server: GatewayServer,
                                                          client: WsClient) -> None:
    out = await client.ok("config.get")
    assert out["exists"] is False and len(out["hash"]) == 64
    assert out["config"]["gateway"]["auth"]["token"] == "__REDACTED__"
    assert out["config"]["gateway"]["auth"]["password"] is None
    assert out["config"]["session"]["main_key"] == "main"
    await bad(client, "config.get", {"path": "x"}, "unknown field")
    # OpenClaw's CLI asks config.get with operator.read only, and OpenClaw allows it.
    async with open_client(server, scopes=["operator.read"]) as limited:
        assert (await limited.ok("config.get"))["config"]["gateway"]["auth"]["token"] == \
            "__REDACTED__"
    async with open_client(server, scopes=["operator.approvals"]) as other:
        error = await other.error("config.get")
        assert error["code"] == "FORBIDDEN" and "operator.read" in error["message"]


async def test_logs_tail_from_the_ring(client: WsClient) -> None:
    logging.getLogger("clawgate.test.ws").warning("marker %s", "one")
    out = await client.ok("logs.tail", {"limit": 50})
    assert out["file"] == "memory:clawgate"
    line = next(line for line in out["lines"] if "marker one" in line)
    record = orjson.loads(line)  # OpenClaw's JSONL log shape
    assert record["message"] == record["0"] == "marker one"
    assert record["_meta"]["logLevelName"] == "WARN"
    assert orjson.loads(record["_meta"]["name"]) == {"subsystem": "test/ws"}
    cursor = out["cursor"]
    logging.getLogger("clawgate.test.ws").warning("marker %s", "two")
    after = await client.ok("logs.tail", {"cursor": cursor})
    assert len(after["lines"]) == 1 and "marker two" in after["lines"][0]
    gone = await client.ok("logs.tail", {"cursor": cursor + 1000})
    assert gone["reset"] is True
    await bad(client, "logs.tail", {"limit": 0}, "limit")
    await bad(client, "logs.tail", {"limit": 5001}, "limit")
    await bad(client, "logs.tail", {"maxBytes": 2_000_000}, "maxBytes")


async def test_logs_tail_from_a_file(server: GatewayServer, client: WsClient,
                                     tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    path.write_text("".join(f'{{"n":{i}}}\n' for i in range(10)))
    server.gateway.log_file = path  # type: ignore[attr-defined]
    try:
        out = await client.ok("logs.tail", {"limit": 3})
        assert out["lines"] == ['{"n":7}', '{"n":8}', '{"n":9}'] and out["truncated"]
        assert out["cursor"] == out["size"] == path.stat().st_size
        with path.open("a") as f:
            f.write('{"n":10}\n')
        more = await client.ok("logs.tail", {"cursor": out["cursor"]})
        assert more["lines"] == ['{"n":10}'] and "truncated" not in more
    finally:
        del server.gateway.log_file  # type: ignore[attr-defined]


async def test_plugin_method_is_listed_and_callable(client: WsClient) -> None:
    assert "demo.echo" in client.hello["features"]["methods"]
    assert "demo.flood" in client.hello["features"]["methods"]
    out = await client.ok("demo.echo", {"hello": "world"})
    assert out == {"echo": {"hello": "world"}, "client": "test"}
    assert (await client.ok("demo.admin")) == {"admin": True}


async def test_scopes_are_enforced_for_plugin_and_core_methods(server: GatewayServer) -> None:
    async with open_client(server, scopes=READ_WRITE) as client:
        assert client.hello["auth"]["scopes"] == READ_WRITE
        assert (await client.ok("demo.echo", {}))["echo"] == {}
        error = await client.error("demo.admin")
        assert error["code"] == "FORBIDDEN" and error["details"]["scope"] == "operator.admin"
    async with open_client(server, scopes=["operator.read"]) as reader:
        assert (await reader.ok("health"))["ok"]
        error = await reader.error("chat.send", {"sessionKey": "main", "message": "x",
                                                 "idempotencyKey": "nope"})
        assert error["code"] == "FORBIDDEN"


@pytest.mark.parametrize("params", [
    {"offset": 2**63}, {"activeMinutes": 1e16}, {"limit": "ten"}, {"offset": -1},
])
async def test_sessions_list_out_of_range_is_invalid_request(
        client: WsClient, params: dict) -> None:
    error = await client.call("sessions.list", params)
    assert error["ok"] is False and error["error"]["code"] == "INVALID_REQUEST"
    assert next(iter(params)) in error["error"]["message"]
    assert (await client.ok("health"))["ok"]


def test_config_get_redaction_covers_urls_numbers_and_nested_secrets() -> None:
    from clawgate.gateway.methods.system import REDACTED, redact

    shown = redact({
        "gateway": {"auth": {"mode": "token", "token": "t0ken"}, "port": 18789},
        "plugins": {"entries": {"x": {"config": {
            "base_url": "https://user:hunter2@api.example/v1", "password": 123456,
            "headers": {"Authorization": "Bearer abc"}, "dsn": "postgres://a:b@db/x",
            "api_key_env": "OPENAI_API_KEY", "max_tokens": 64, "enabled": True}}}},
    })
    config = shown["plugins"]["entries"]["x"]["config"]
    assert config["base_url"] == f"https://{REDACTED}@api.example/v1"
    assert config["password"] == REDACTED and config["dsn"] == REDACTED
    assert config["headers"] == {"Authorization": REDACTED}
    assert (config["api_key_env"], config["max_tokens"], config["enabled"]) == (
        "OPENAI_API_KEY", 64, True)
    assert shown["gateway"]["auth"]["token"] == REDACTED and shown["gateway"]["port"] == 18789
    assert "hunter2" not in repr(shown) and "t0ken" not in repr(shown)
