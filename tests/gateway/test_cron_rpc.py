"""The cron and heartbeat RPC methods over a real WebSocket: OpenClaw's shapes, scopes, and
bad input refused as INVALID_REQUEST naming the field, with nothing stored or changed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cron.conftest import FakeClock
from tests.cron.support import MINUTE, cron_gateway, isolated
from tests.support.ws_client import READ_WRITE, WsClient, open_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def refused(ws: WsClient, method: str, params: Any, *names: str) -> dict[str, Any]:
    """The error of a call that must fail as INVALID_REQUEST; its message names ``names``."""
    error = await ws.error(method, params)
    assert error["code"] == "INVALID_REQUEST", error
    for name in names:
        assert name in error["message"], (name, error)
    return error


ADD_MISTAKES = [
    ({"schedule": {"kind": "cron", "expr": "61 * * * *"}}, "schedule.expr"),
    ({"schedule": {"kind": "cron", "expr": "0 8 * * *", "tz": "Mars/Olympus"}}, "schedule.tz"),
    ({"schedule": {"kind": "every", "everyMs": 10}}, "schedule.everyMs"),
    ({"schedule": {"kind": "at", "at": "next tuesday"}}, "schedule.at"),
    ({"schedule": {"kind": "hourly"}}, "schedule"),
    ({"name": ""}, "name"),
    ({"payload": {"kind": "agentTurn"}}, "payload.message"),
    ({"sessionTarget": "main"}, "payload.kind"),
    ({"delivery": {"mode": "webhook", "to": "not a url"}}, "delivery.to"),
    ({"delivery": {"mode": "carrier-pigeon"}}, "delivery.mode"),
    ({"agentId": "nobody"}, "agentId"),
    ({"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(("change", "field"), ADD_MISTAKES,
                         ids=[field for _, field in ADD_MISTAKES])
async def test_cron_add_refuses_bad_input_naming_the_field(
        tmp_path: Path, clock: FakeClock, change: dict[str, Any], field: str) -> None:
    async with cron_gateway(tmp_path, clock) as server, open_client(server) as ws:
        error = await refused(ws, "cron.add", {**isolated(), **change}, field)
        assert error["details"]["field"] == field
        assert (await ws.ok("cron.list", {"includeDisabled": True}))["jobs"] == []
        assert (await ws.ok("cron.status"))["jobs"] == 0


async def test_every_method_refuses_bad_params_and_changes_nothing(tmp_path: Path,
                                                                   clock: FakeClock) -> None:
    async with cron_gateway(tmp_path, clock) as server, open_client(server) as ws:
        job = await ws.ok("cron.add", isolated())
        before = await ws.ok("cron.get", {"id": job["id"]})
        await refused(ws, "cron.add", "not an object", "must be an object")
        await refused(ws, "cron.list", {"includeDisabled": "yes"}, "includeDisabled")
        await refused(ws, "cron.list", {"limit": 0}, "limit")
        await refused(ws, "cron.list", {"sort": "name"}, "sort", "unknown field")
        await refused(ws, "cron.status", {"verbose": True}, "verbose")
        await refused(ws, "cron.get", {}, "id")
        await refused(ws, "cron.get", {"id": "no-such-job"}, "no-such-job")
        await refused(ws, "cron.update", {"id": job["id"]}, "patch")
        await refused(ws, "cron.update", {"patch": {"name": "x"}}, "id")
        await refused(ws, "cron.update", {"id": "no-such-job", "patch": {}}, "no-such-job")
        error = await refused(ws, "cron.update", {"id": job["id"], "patch": {
            "name": "renamed", "schedule": {"kind": "cron", "expr": "* * *"}}},
            "patch.schedule.expr")
        assert error["details"]["field"] == "patch.schedule.expr"
        await refused(ws, "cron.update", {"jobId": job["id"], "patch": {"enabled": "no"}},
                      "patch.enabled")
        await refused(ws, "cron.update", {"id": job["id"], "patch": {
            "payload": {"kind": "systemEvent"}}}, "patch.payload.text")
        await refused(ws, "cron.remove", {}, "id")
        await refused(ws, "cron.remove", {"id": "../etc"}, "id")
        await refused(ws, "cron.run", {"id": job["id"], "mode": "later"}, "mode")
        await refused(ws, "cron.run", {"id": "no-such-job"}, "no-such-job")
        await refused(ws, "cron.runs", {"id": job["id"], "limit": 0}, "limit")
        await refused(ws, "cron.runs", {"id": job["id"], "limit": 5001}, "limit")
        await refused(ws, "cron.runs", {}, "id")
        await refused(ws, "wake", {"mode": "soon", "text": "x"}, "mode")
        await refused(ws, "wake", {"mode": "now"}, "text")
        await refused(ws, "wake", {"mode": "now", "text": "   "}, "text")
        await refused(ws, "wake", {"mode": "now", "text": "x" * 4001}, "text")
        await refused(ws, "last-heartbeat", {"agent": "main"}, "agent")
        await refused(ws, "set-heartbeats", {}, "enabled")
        await refused(ws, "set-heartbeats", {"enabled": "no"}, "enabled")
        assert await ws.ok("cron.get", {"id": job["id"]}) == before
        assert [j["id"] for j in (await ws.ok("cron.list"))["jobs"]] == [job["id"]]
        assert (await ws.ok("cron.runs", {"id": job["id"]}))["entries"] == []
        assert server.gateway.runtime.engine.system_events.pending("agent:main:main") == 0


async def test_results_follow_openclaw(tmp_path: Path, clock: FakeClock) -> None:
    async with cron_gateway(tmp_path, clock) as server, open_client(server) as ws:
        job = await ws.ok("cron.add", isolated(name="digest"))
        assert set(job) >= {"id", "name", "enabled", "createdAtMs", "updatedAtMs", "schedule",
                            "sessionTarget", "wakeMode", "payload", "state"}
        off = await ws.ok("cron.add", isolated(name="off", enabled=False))
        listed = await ws.ok("cron.list")
        assert [j["id"] for j in listed["jobs"]] == [job["id"]] and listed["hasMore"] is False
        everything = await ws.ok("cron.list", {"includeDisabled": True, "limit": 1})
        assert len(everything["jobs"]) == 1 and everything["hasMore"] is True
        assert everything["nextOffset"] == 1
        status = await ws.ok("cron.status")
        assert status["enabled"] is True and status["jobs"] == 2
        assert status["nextWakeAtMs"] == clock.now + MINUTE
        assert status["storePath"].endswith("clawgate.db")
        updated = await ws.ok("cron.update", {"jobId": job["id"], "patch": {"name": "daily"}})
        assert updated["name"] == "daily"
        ran = await ws.ok("cron.run", {"jobId": off["id"], "mode": "due"})
        assert ran == {"ok": True, "ran": False, "reason": "not-due"}
        ran = await ws.ok("cron.run", {"id": off["id"]}, within=20)  # force: even disabled
        assert ran["ok"] is True and ran["ran"] is True and ran["entry"]["status"] == "ok"
        (entry,) = (await ws.ok("cron.runs", {"id": off["id"], "limit": 10}))["entries"]
        assert entry == ran["entry"] and entry["action"] == "finished"
        assert await ws.ok("cron.remove", {"id": off["id"]}) == {"ok": True, "removed": True}
        assert await ws.ok("cron.remove", {"id": off["id"]}) == {"ok": True, "removed": False}
        removed = await ws.event("cron", lambda p: p["action"] == "removed")
        assert removed["payload"]["jobId"] == off["id"]
        woke = await ws.ok("wake", {"mode": "next-heartbeat", "text": "remember the milk"})
        assert woke["ok"] is True and woke["sessionKey"] == "agent:main:main"
        assert ws.hello["features"]["events"][-2:] == ["cron", "heartbeat"]
        for name in ("cron.list", "cron.add", "wake", "last-heartbeat", "set-heartbeats"):
            assert name in ws.hello["features"]["methods"]


async def test_scopes(tmp_path: Path, clock: FakeClock) -> None:
    async with cron_gateway(tmp_path, clock) as server, \
            open_client(server, scopes=["operator.read"]) as reader, \
            open_client(server, scopes=READ_WRITE) as writer:
        for method in ("cron.list", "cron.status", "last-heartbeat"):
            await reader.ok(method)
        assert (await reader.ok("cron.runs", {"id": "x"}))["entries"] == []
        for method, params in (("cron.add", isolated()), ("cron.remove", {"id": "x"}),
                               ("cron.update", {"id": "x", "patch": {}}),
                               ("cron.run", {"id": "x"}), ("set-heartbeats", {"enabled": False}),
                               ("wake", {"mode": "now", "text": "x"})):
            error = await reader.error(method, params)
            assert error["code"] == "FORBIDDEN", (method, error)
        assert (await writer.ok("wake", {"mode": "next-heartbeat", "text": "x"}))["ok"] is True
        error = await writer.error("cron.add", isolated())
        assert error["code"] == "FORBIDDEN" and error["details"]["scope"] == "operator.admin"
