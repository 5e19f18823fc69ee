"""``clawgate memory status | index | search`` in a subprocess against a running gateway (its
WebSocket and the memory.* methods), with one-line errors and exit 2 on usage errors."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import orjson
import pytest

from tests.support.gateway_server import TOKEN, GatewayServer, serve_gateway

pytestmark = pytest.mark.anyio


async def cli(tmp_path: Path, port: int, *args: str) -> tuple[int, str, str]:
    env = {"CLAWGATE_STATE_DIR": str(tmp_path / "cli-state"),
           "CLAWGATE_GATEWAY_PORT": str(port), "CLAWGATE_GATEWAY_TOKEN": TOKEN,
           "PATH": "/usr/bin:/bin"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clawgate.cli", "memory", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def workspace(state: Path) -> Path:
    folder = state / "workspace"
    (folder / "memory").mkdir(parents=True)
    (folder / "MEMORY.md").write_text("# Memory\n\nThe spare key is under the blue flower pot.\n",
                                      encoding="utf-8")
    (folder / "memory" / "2026-01-05.md").write_text(
        "- Booked the dentist for Thursday at 9.\n", encoding="utf-8")
    return folder


async def test_status_index_and_search_against_a_running_gateway(tmp_path: Path) -> None:
    state = tmp_path / "gw"
    folder = workspace(state)
    async with serve_gateway(state) as server:
        port = server.port
        rc, out, err = await cli(tmp_path, port, "index")  # the watcher may have synced first
        assert rc == 0, err
        assert re.fullmatch(r"main: synced: \d files indexed, 0 removed, \d+ chunks, 0 embedded "
                            r"in \d+\.\d\d s\n", out), out

        rc, out, err = await cli(tmp_path, port, "status", "--json")
        assert rc == 0, err
        [row] = orjson.loads(out)["agents"]
        assert (row["agentId"], row["files"], row["stale"]) == ("main", 2, False)
        rc, out, _ = await cli(tmp_path, port, "status")
        assert rc == 0 and out.startswith("main: 2 files, ") and "keyword only" in out

        rc, out, err = await cli(tmp_path, port, "search", "where is the spare key", "--max", "1")
        assert rc == 0, err
        assert "MEMORY.md:" in out.splitlines()[0] and "blue flower pot" in out
        assert out.rstrip().endswith("1 result(s) (keyword)")
        rc, out, _ = await cli(tmp_path, port, "search", "dentist", "--json", "--agent", "main")
        found = orjson.loads(out)
        assert rc == 0 and found["results"][0]["path"] == "memory/2026-01-05.md"

        (folder / "memory" / "notes.md").write_text("Parking is on level 3.\n", "utf-8")
        rc, out, _ = await cli(tmp_path, port, "index", "--force")
        assert rc == 0 and out.startswith("main: rebuilt: ") and "3 files indexed" in out

        rc, _, err = await cli(tmp_path, port, "search", "x", "--agent", "nobody")
        assert rc == 1 and err.count("\n") == 1 and "unknown agent 'nobody'" in err


async def test_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    for args, message in (((), "choose an action"), (("search", " "), "QUERY must not be empty"),
                          (("search", "key", "--max", "0"), "--max must be between 1 and 50"),
                          (("search", "key", "--max", "lots"), "invalid int value")):
        rc, out, err = await cli(tmp_path, 1, *args)
        assert rc == 2 and out == "", (args, out, err)
        assert message in err.splitlines()[-1], (args, err)


async def test_one_line_errors_when_there_is_no_memory_or_no_gateway(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path / "gw", {"plugins": {"slots": {"memory": "none"}}}) as s:
        server: GatewayServer = s
        rc, out, err = await cli(tmp_path, server.port, "status")
        assert rc == 1 and out == "" and err.count("\n") == 1
        assert "no memory plugin loaded" in err
    rc, out, err = await cli(tmp_path, server.port, "search", "key")  # the gateway is gone
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("clawgate: error: cannot reach the gateway at ws://127.0.0.1:")
