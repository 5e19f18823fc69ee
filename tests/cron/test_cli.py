"""``clawgate cron ...`` and ``clawgate system event`` as users run them: a child process talking
to a running gateway over its WebSocket."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest

from tests.channels.support import texts
from tests.cron.conftest import FakeClock
from tests.cron.support import cron_gateway
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.gateway_server import TOKEN, GatewayServer
from tests.support.poll import until

pytestmark = pytest.mark.anyio


async def cli(server: GatewayServer | None, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    env = {"CLAWGATE_STATE_DIR": str(tmp_path / "cli-state"), "CLAWGATE_GATEWAY_TOKEN": TOKEN,
           "CLAWGATE_GATEWAY_PORT": str(server.port if server else 9), "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clawgate.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cron_commands_against_a_running_gateway(tmp_path: Path, clock: FakeClock) -> None:
    async with WebhookReceiver() as hook, cron_gateway(tmp_path / "gw", clock,
                                                        hook=hook) as server:
        rc, out, err = await cli(server, tmp_path, "cron", "add", "--name", "digest",
                                 "--every", "20m", "--message", "summarise my inbox",
                                 "--announce", "--channel", "webhook", "--to", "alice", "--json")
        assert rc == 0, err
        job = orjson.loads(out)
        assert job["schedule"] == {"kind": "every", "everyMs": 1_200_000,
                                   "anchorMs": clock.now}
        assert job["delivery"] == {"mode": "announce", "channel": "webhook", "to": "alice"}
        assert job["payload"] == {"kind": "agentTurn", "message": "summarise my inbox"}
        job_id = job["id"]

        rc, out, _ = await cli(server, tmp_path, "cron", "list")
        assert rc == 0 and job_id in out and "every 20m" in out and "digest" in out
        rc, out, _ = await cli(server, tmp_path, "cron", "edit", job_id, "--disable")
        assert rc == 0 and "disabled" in out
        rc, out, _ = await cli(server, tmp_path, "cron", "list")
        assert job_id not in out and "--all" in out
        rc, out, _ = await cli(server, tmp_path, "cron", "list", "--all", "--json")
        assert [j["id"] for j in orjson.loads(out)["jobs"]] == [job_id]
        rc, out, err = await cli(server, tmp_path, "cron", "edit", job_id, "--enable",
                                 "--cron", "0 8 * * 1-5", "--tz", "Europe/Berlin", "--json")
        assert rc == 0, err
        edited = orjson.loads(out)
        assert edited["enabled"] is True
        assert edited["schedule"] == {"kind": "cron", "expr": "0 8 * * 1-5",
                                      "tz": "Europe/Berlin"}  # 08:00 sharp: no stagger

        rc, out, err = await cli(server, tmp_path, "cron", "run", job_id)
        assert rc == 0, err
        assert " ok " in out and "delivery delivered" in out
        assert texts(hook) == [f"[cron:{job_id} digest] summarise my inbox"]
        rc, out, _ = await cli(server, tmp_path, "cron", "runs", job_id, "--json")
        (entry,) = orjson.loads(out)["entries"]
        assert entry["status"] == "ok" and entry["delivered"] is True
        rc, out, _ = await cli(server, tmp_path, "cron", "runs", job_id)
        assert rc == 0 and out.count("\n") == 1 and "delivery delivered" in out

        rc, out, err = await cli(server, tmp_path, "cron", "add", "--name", "xmas",
                                 "--at", "2026-12-24T08:00:00+01:00", "--system-event",
                                 "Merry Christmas", "--session", "main", "--wake",
                                 "next-heartbeat", "--delete-after-run", "--json")
        assert rc == 0, err
        once = orjson.loads(out)
        assert once["schedule"] == {"kind": "at", "at": "2026-12-24T07:00:00.000Z"}
        assert (once["sessionTarget"], once["wakeMode"], once["deleteAfterRun"]) == (
            "main", "next-heartbeat", True)

        rc, out, _ = await cli(server, tmp_path, "cron", "rm", job_id)
        assert rc == 0 and f"removed job {job_id}" in out
        rc, _, err = await cli(server, tmp_path, "cron", "rm", job_id)
        assert rc == 1 and err.strip() == f"clawgate: error: no cron job {job_id!r}"
        jobs = (await server.gateway.runtime.store.cron.list())
        assert [j["id"] for j in jobs] == [once["id"]]


async def test_system_event(tmp_path: Path, clock: FakeClock) -> None:
    async with cron_gateway(tmp_path / "gw", clock) as server:
        rc, out, err = await cli(server, tmp_path, "system", "event", "--text",
                                 "Check the build", "--mode", "now")
        assert rc == 0, err
        assert out.startswith("queued on agent:main:main; no heartbeat runs now")
        events = server.gateway.runtime.engine.system_events
        await until(lambda: events.pending("agent:main:main") == 1)
        rc, out, _ = await cli(server, tmp_path, "system", "event", "--text", "and the tests",
                               "--json")
        assert rc == 0 and orjson.loads(out)["mode"] == "next-heartbeat"
        assert events.take("agent:main:main") == ("Check the build", "and the tests")


@pytest.mark.parametrize(("args", "message"), [
    (["--every", "20x"], "--every: '20x' is not a duration"),
    ([], "one of --at, --every or --cron is required"),
    (["--every", "5m", "--tz", "UTC"], "--tz goes with --cron"),
    (["--cron", "99 * * * *"], "--cron:"),
    (["--cron", "0 8 * * *", "--tz", "Mars/Base"], "--tz: unknown time zone 'Mars/Base'"),
    (["--at", "tomorrow"], "--at: 'tomorrow' is not an ISO 8601 time"),
    (["--every", "5m", "--system-event", "x", "--model", "a/b"], "go with --message"),
    (["--every", "5m", "--webhook", "http://x", "--to", "bob"], "go with --announce"),
    (["--every", "5m", "--every", "6m", "--at", "2026-01-01"], "not allowed with"),
])
async def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                                    message: str) -> None:
    command = ["cron", "add", "--name", "x", *args]
    if not any(a in args for a in ("--system-event",)):
        command += ["--message", "hi"]
    rc, out, err = await cli(None, tmp_path, *command)  # nothing is sent: no gateway needed
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("clawgate: error:") and message in err


async def test_what_the_gateway_refuses_names_the_field(tmp_path: Path, clock: FakeClock) -> None:
    async with cron_gateway(tmp_path / "gw", clock) as server:
        rc, _, err = await cli(server, tmp_path, "cron", "add", "--name", "x", "--every", "5m",
                               "--message", "hi", "--agent", "nobody")
        assert rc == 1 and err.count("\n") == 1
        assert "INVALID_REQUEST" in err and "agentId" in err
        rc, _, err = await cli(server, tmp_path, "cron", "edit", "no-such-job", "--name", "y")
        assert rc == 1 and "unknown cron job id: no-such-job" in err
        rc, _, err = await cli(server, tmp_path, "cron", "edit", "no-such-job")
        assert rc == 2 and "nothing to change" in err
        assert await server.gateway.runtime.store.cron.count() == 0
    rc, _, err = await cli(server, tmp_path, "cron", "list")  # the gateway has stopped
    assert rc == 2 and err.startswith("clawgate: no gateway at ") and err.count("\n") == 1
