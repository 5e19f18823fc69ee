"""Client commands against a real `clawgate gateway` process: --url/--port/--token and the
CLAWGATE_GATEWAY_URL / CLAWGATE_GATEWAY_TOKEN variables find it; with none reachable every
command prints one line and exits 2 (issue 7, items 15 and 16)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.gateway.test_process import CLAWGATE, free_port
from tests.gateway.test_startup import env_for, run_cli, stop, wait_ready

COMMANDS = [["status"], ["chat", "-m", "hi"], ["call", "health"],
            ["sessions", "list", "--remote"], ["plugins", "reload"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_no_gateway_is_one_line_and_exit_2(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    result = run_cli(*command, "--port", str(port), state=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (f"clawgate: no gateway at ws://127.0.0.1:{port}: connection "
                             "refused; start one with `clawgate gateway`\n")


def test_the_url_variable_is_used(tmp_path: Path) -> None:
    port = free_port()
    result = run_cli("status", state=tmp_path, CLAWGATE_GATEWAY_URL=f"ws://127.0.0.1:{port}")
    assert result.returncode == 2 and f"ws://127.0.0.1:{port}" in result.stderr


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    state = tmp_path / "gw"
    state.mkdir(mode=0o700)
    port = free_port()
    env = env_for(state)
    del env["CLAWGATE_GATEWAY_TOKEN"]  # it generates and stores its own token
    proc = subprocess.Popen([CLAWGATE, "gateway", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        yield port, state
    finally:
        stop(proc)


def test_port_url_and_token_options_find_the_gateway(gateway: tuple[int, Path],
                                                     tmp_path: Path) -> None:
    port, state = gateway
    token = (state / "gateway.token").read_text().strip()
    # Same state dir: the stored token is found; --port names the gateway.
    same = {"CLAWGATE_GATEWAY_TOKEN": ""}
    status = run_cli("status", "--json", "--port", str(port), state=state, **same)
    assert status.returncode == 0, status.stderr
    assert isinstance(orjson.loads(status.stdout), dict)
    # Elsewhere: the URL (as announced, http://...) and the token from options...
    other = tmp_path / "elsewhere"
    call = run_cli("call", "health", "--url", f"http://127.0.0.1:{port}", "--token", token,
                   state=other, CLAWGATE_GATEWAY_TOKEN="")
    assert call.returncode == 0, call.stderr
    assert orjson.loads(call.stdout)["ok"] is True
    # ...or from the variables.
    env_call = run_cli("call", "health", state=other, CLAWGATE_GATEWAY_URL=f"ws://127.0.0.1:{port}",
                       CLAWGATE_GATEWAY_TOKEN=token)
    assert env_call.returncode == 0, env_call.stderr
    wrong = run_cli("call", "health", "--port", str(port), "--token", "wrong", state=other)
    assert wrong.returncode == 1
    assert wrong.stderr.count("\n") == 1 and "Traceback" not in wrong.stderr
