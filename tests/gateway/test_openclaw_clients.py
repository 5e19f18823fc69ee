"""Conformance with OpenClaw's own clients: their real ``connect`` params are accepted, and
each method the Control UI and the TUI call answers, with the params they send, in OpenClaw's
result shape (``tests/support/openclaw_shapes.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from clawgate.agents.turn import Submission
from tests.support import openclaw_shapes as shapes
from tests.support.gateway_server import TOKEN, GatewayServer, serve_gateway
from tests.support.ws_client import Device, WsClient

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path):
    config = {"agents": [{"id": "main", "default": True,
                          "identity": {"name": "Clawd", "emoji": "🦀"}}]}
    async with serve_gateway(tmp_path / "state", config) as running:
        yield running


async def connect_as(server: GatewayServer, params: dict[str, Any]) -> WsClient:
    """A connection that completed the handshake with ``params`` plus a signed device proof
    (as OpenClaw's clients send one)."""
    client = await WsClient.open(server)
    challenge = await client.challenge()
    assert "capabilities" not in challenge  # no models.snapshot push, so nothing to advertise
    params["device"] = Device().block(params, challenge["nonce"], version="v3")
    res = await client.connect(params)
    assert res["ok"], res
    return client


async def test_control_ui_connect_is_accepted(server: GatewayServer) -> None:
    client = await connect_as(server, shapes.control_ui_connect(TOKEN))
    try:
        hello = client.hello
        shapes.check(shapes.HELLO_OK, hello)
        assert set(hello["features"]["capabilities"]) == {
            "published-model-catalog", "session-scoped-chat-metadata",
            "session-scoped-model-catalog", "session-unread-ack-contract"}
        assert "model-catalog-snapshot" not in hello["features"]["capabilities"]
        assert {"sessions.subscribe", "sessions.messages.subscribe", "chat.startup",
                "models.authStatus"} <= set(hello["features"]["methods"])
        assert "session.message" in hello["features"]["events"]
        assert "operator.questions" in hello["auth"]["scopes"]
        me = next(p for p in hello["snapshot"]["presence"]
                  if p.get("clientId") == "openclaw-control-ui")
        assert me["instanceId"] == "2ceb60e4-cdf3-4ff5-a8a1-ec404946622d"
        assert me["timeZone"] == "UTC"
    finally:
        await client.close()


async def test_tui_connect_is_accepted(server: GatewayServer) -> None:
    client = await connect_as(server, shapes.tui_connect(TOKEN))
    try:
        shapes.check(shapes.HELLO_OK, client.hello)
        assert client.hello["auth"]["scopes"] == sorted(
            ["operator.admin", "operator.read", "operator.write", "operator.approvals"])
    finally:
        await client.close()


async def test_client_calls_answer_in_openclaw_shapes(server: GatewayServer) -> None:
    engine = server.gateway.runtime.engine
    tool = await engine.run(Submission('/tool current_time {"timezone": "UTC"}'))
    assert tool.status == "ok"
    await engine.run(Submission("hello there"))
    client = await connect_as(server, shapes.control_ui_connect(TOKEN))
    key = "agent:main:main"
    try:
        # What the Control UI's chat pane sends on load (recorded frames), shape by shape.
        startup = await client.ok("chat.startup", {"sessionKey": key, "limit": 80,
                                                   "maxBytes": 262_144})
        shapes.check(shapes.CHAT_HISTORY, startup)
        roles = [m["role"] for m in startup["messages"]]
        assert roles == ["user", "assistant", "toolResult", "assistant", "user", "assistant"]
        assert startup["sessionInfo"]["key"] == key and startup["sessionInfo"]["kind"] == "direct"
        assert startup["sessionInfo"]["hasActiveRun"] is False
        assert startup["defaults"] == {"modelProvider": "echo", "model": "echo",
                                       "contextTokens": None}
        history = await client.ok("chat.history", {"sessionKey": key, "limit": 200})
        shapes.check(shapes.CHAT_HISTORY, history)
        assert history["messages"] == startup["messages"]

        auth = await client.ok("models.authStatus", {"agentId": "main"})
        shapes.check(shapes.AUTH_STATUS, auth)
        assert {(p["provider"], p["status"]) for p in auth["providers"]} == {("echo", "ok")}
        models = await client.ok("models.list", {"view": "configured", "sessionKey": key,
                                                 "agentId": "main"})
        assert [(m["provider"], m["id"], m["available"]) for m in models["models"]] == [
            ("echo", "echo", True)]
        metadata = await client.ok("chat.metadata", {"agentId": "main", "sessionKey": key})
        assert metadata["models"] == models["models"]
        shapes.check(shapes.COMMANDS_LIST, {"commands": metadata["commands"]})

        identity = await client.ok("agent.identity.get", {"agentId": "main"})
        shapes.check(shapes.AGENT_IDENTITY, identity)
        assert (identity["name"], identity["emoji"]) == ("Clawd", "🦀")
        commands = await client.ok("commands.list", {"agentId": "main", "scope": "text",
                                                     "includeArgs": False})
        shapes.check(shapes.COMMANDS_LIST, commands)
        assert {"new", "reset", "stop", "status", "help"} <= {c["name"] for c in
                                                             commands["commands"]}
        described = await client.ok("sessions.describe", {"key": key})
        shapes.check(shapes.SESSION_ROW, described["session"])
        assert described["session"]["inputTokens"] > 0
        assert await client.ok("sessions.describe", {"key": "nobody"}) == {"session": None}

        info = await client.ok("system.info")
        shapes.check(shapes.SYSTEM_INFO, info)
        assert info["pid"] > 0 and info["memoryTotalBytes"] > 0
        schema = await client.ok("config.schema")
        shapes.check(shapes.CONFIG_SCHEMA, schema)
        assert schema["version"] == server.gateway.version
        shapes.check(shapes.LANES, await client.ok("diagnostics.lanes"))
        assert await client.ok("last-heartbeat") is None
        logs = await client.ok("logs.tail", {"limit": 100})
        shapes.check(shapes.LOGS_TAIL, logs)
        shapes.check(shapes.HEALTH, await client.ok("health"))

        # Concepts clawgate does not have yet: the empty truth, in OpenClaw's shapes.
        shapes.check(shapes.TASKS_LIST, await client.ok("tasks.list", {}))
        shapes.check(shapes.QUESTION_LIST, await client.ok("question.list", {}))
        shapes.check(shapes.UPDATE_STATUS, await client.ok("update.status", {}))
        assert await client.ok("exec.approval.list", {}) == []
        assert await client.ok("plugin.approval.list", {}) == []
        assert await client.ok("openclaw.approval.list", {}) == []
        refused = await client.error("update.run", {})
        assert "not managed by this gateway" in refused["message"]
    finally:
        await client.close()


async def test_usage_reports_count_stored_tokens(server: GatewayServer) -> None:
    engine = server.gateway.runtime.engine
    results = [await engine.run(Submission(text, session_key=f"agent:main:{name}"))
               for name, text in (("a", "one two three"), ("b", "four"), ("a", "five six"))]
    spent = {"input": sum(r.usage["input"] for r in results),
             "output": sum(r.usage["output"] for r in results)}
    assert spent["input"] > 0 and spent["output"] > 0
    client = await connect_as(server, shapes.control_ui_connect(TOKEN))
    try:
        shapes.check(shapes.USAGE_COST, cost := await client.ok("usage.cost", {}))
        assert (cost["totals"]["input"], cost["totals"]["output"]) == (
            spent["input"], spent["output"])
        assert cost["totals"]["missingCostEntries"] == 3  # echo has no prices
        assert cost["days"] == 30
        assert len(cost["daily"]) == 1 and cost["daily"][0]["totalTokens"] == sum(
            spent.values())
        usage = await client.ok("sessions.usage", {"mode": "specific", "utcOffset": "UTC+5:30",
                                                   "range": "7d", "limit": 10})
        shapes.check(shapes.SESSIONS_USAGE, usage)
        per = {s["key"]: s["usage"] for s in usage["sessions"]}
        assert set(per) == {"agent:main:a", "agent:main:b"}
        assert per["agent:main:a"]["input"] == results[0].usage["input"] + \
            results[2].usage["input"]
        assert per["agent:main:a"]["runs"] == 2
        assert per["agent:main:a"]["messageCounts"]["user"] == 2
        assert per["agent:main:a"]["modelUsage"][0]["count"] == 2
        assert per["agent:main:a"]["lastActivity"] >= per["agent:main:a"]["firstActivity"]
        assert usage["aggregates"]["sessionCount"] == 2
        assert usage["aggregates"]["costDaily"] == cost["daily"]
        assert usage["aggregates"]["byModel"][0]["count"] == 3
        assert usage["totals"]["totalTokens"] == sum(spent.values())
        one = await client.ok("sessions.usage", {"key": "b"})
        assert [s["key"] for s in one["sessions"]] == ["agent:main:b"]
        long_ago = await client.ok("usage.cost", {"startDate": "2020-01-01",
                                                  "endDate": "2020-01-31"})
        assert long_ago["totals"]["totalTokens"] == 0 and long_ago["days"] == 31
        error = await client.error("usage.cost", {"startDate": "2020-01-01"})
        assert "startDate and endDate must be provided together" in error["message"]
        error = await client.error("sessions.usage", {"agentScope": "all", "key": "a"})
        assert "agentScope=all" in error["message"]
        error = await client.error("sessions.usage", {"mode": "specific", "timeZone": "Mars/X"})
        assert "invalid timeZone" in error["message"]
        assert (await client.ok("usage.status"))["providers"] == []
    finally:
        await client.close()


async def test_config_schema_holds_plugin_schemas(server: GatewayServer) -> None:
    client = await connect_as(server, shapes.tui_connect(TOKEN))
    try:
        schema = (await client.ok("config.schema"))["schema"]
        plugins = schema["$defs"]["PluginsConfig"]["properties"]["entries"]["properties"]
        echo = plugins["echo"]["properties"]["config"]
        assert echo["properties"]["chunk_chars"]["type"] == "integer"
        assert "engine" in schema["properties"] and "gateway" in schema["properties"]
    finally:
        await client.close()


async def test_params_accept_what_openclaw_accepts(server: GatewayServer) -> None:
    await server.gateway.runtime.engine.run(Submission("hi", session_key="agent:main:x"))
    client = await connect_as(server, shapes.control_ui_connect(TOKEN))
    try:
        ui_list = {"includeGlobal": True, "includeUnknown": True, "configuredAgentsOnly": True,
                   "limit": 200, "includeDerivedTitles": True, "includeLastMessage": True,
                   "agentId": "main", "ownerFirst": True, "archived": False}
        listed = await client.ok("sessions.list", ui_list)
        assert [r["key"] for r in listed["sessions"]] == ["agent:main:x"]
        assert listed["sessions"][0]["hasActiveRun"] is False
        # no clawgate session is archived, pinned or on a board
        for nothing in ({"archived": True}, {"pinned": True}, {"hasBoard": True},
                        {"activeOnly": True}):
            assert (await client.ok("sessions.list", nothing))["sessions"] == []
        assert len((await client.ok("sessions.list", {"archived": "all"}))["sessions"]) == 1
        history = await client.ok("chat.history", {"sessionKey": "x", "cursor": "nope",
                                                   "maxBytes": 4096, "inputRunIds": ["r1"]})
        assert history == {"kind": "reset"}
        for method, params, field in (
                ("sessions.list", {"ownersFirst": True}, "ownersFirst"),
                ("models.list", {"sessionKey": "x", "bogus": 1}, "bogus"),
                ("chat.history", {"sessionKey": "x", "maxBytes": 10}, "maxBytes"),
                ("sessions.patch", {"key": "x", "colour": "red"}, "colour")):
            error = await client.error(method, params)
            assert error["code"] == "INVALID_REQUEST" and field in error["message"], error
        error = await client.error("models.list", {"agentId": "ghost"})
        assert "unknown agent" in error["message"]
    finally:
        await client.close()


async def test_sessions_patch_unread_with_the_ack_contract(server: GatewayServer) -> None:
    client = await connect_as(server, shapes.control_ui_connect(TOKEN))
    try:
        marked = await client.ok("sessions.patch", {"key": "u", "agentId": "main",
                                                    "unread": True})
        at = marked["entry"]["markedUnreadAt"]
        assert marked["entry"]["unread"] is True and isinstance(at, int)
        # marking read with a stale mark leaves the session unread...
        stale = await client.ok("sessions.patch", {"key": "u", "unread": False,
                                                   "expectedMarkedUnreadAt": at - 1})
        assert stale["entry"]["unread"] is True
        # ...with the current one it is read
        read = await client.ok("sessions.patch", {"key": "u", "unread": False,
                                                  "expectedMarkedUnreadAt": at})
        assert read["entry"]["unread"] is False and read["entry"]["markedUnreadAt"] is None
        row = (await client.ok("sessions.describe", {"key": "u"}))["session"]
        assert row["unread"] is False
        error = await client.error("sessions.patch", {"key": "agent:main:u", "agentId": "ops"})
        assert error["code"] == "INVALID_REQUEST"
    finally:
        await client.close()


async def test_log_lines_are_openclaw_jsonl(server: GatewayServer) -> None:
    logging.getLogger("clawgate.gateway.ws").warning("slow client %s", "c1")
    client = await connect_as(server, shapes.tui_connect(TOKEN))
    try:
        lines = (await client.ok("logs.tail", {}))["lines"]
        record = next(orjson.loads(line) for line in lines if "slow client c1" in line)
        # what OpenClaw's log readers (Logs panel, `openclaw logs`) take apart
        assert record["message"] == record["0"] == "slow client c1"
        assert record["_meta"]["logLevelName"] == "WARN" and record["_meta"]["logLevelId"] == 4
        assert orjson.loads(record["_meta"]["name"]) == {"subsystem": "gateway/ws"}
        assert record["time"].endswith("Z") and record["time"] == record["_meta"]["date"]
    finally:
        await client.close()


async def test_commands_list_has_plugin_commands(tmp_path: Path) -> None:
    root = tmp_path / "plugins" / "greeter"
    root.mkdir(parents=True)
    (root / "clawgate.plugin.json").write_text(orjson.dumps(
        {"id": "greeter", "configSchema": {"type": "object"}, "entry": "plugin:register"}).decode())
    (root / "plugin.py").write_text(
        "def register(api):\n"
        "    api.register_command('greet', lambda args, ctx: f'hi {args}',\n"
        "                         description='Greet someone.')\n")
    config = {"plugins": {"load_paths": [str(tmp_path / "plugins")]}}
    async with serve_gateway(tmp_path / "state", config) as server:
        client = await connect_as(server, shapes.tui_connect(TOKEN))
        try:
            commands = await client.ok("commands.list", {"agentId": "main", "scope": "text"})
            shapes.check(shapes.COMMANDS_LIST, commands)
            greet = next(c for c in commands["commands"] if c["name"] == "greet")
            assert greet == {"name": "greet", "textAliases": ["/greet"],
                             "description": "Greet someone.", "source": "plugin",
                             "category": "tools", "scope": "text", "acceptsArgs": True}
            native = await client.ok("commands.list", {"scope": "native"})
            assert native == {"commands": []}
        finally:
            await client.close()
