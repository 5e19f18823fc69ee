"""A plugin cannot kill or hang the gateway: plugins from outside the package are probed in a
child process first (issue 7, item 2). Real `clawgate gateway` processes, real plugin folders."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import orjson

from tests.gateway.test_process import CLAWGATE, free_port
from tests.gateway.test_startup import TOKEN, env_for, stop, wait_ready

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "plugins"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def write_config(state: Path, plugins: list[str], extra: str = "") -> None:
    paths = ", ".join(f'"{FIXTURES / p}"' for p in plugins)
    (state / "clawgate.toml").write_text(
        f"[plugins]\nload_paths = [{paths}]\nprobe_timeout_s = 1\n{extra}")


def start(state: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([CLAWGATE, "gateway", "--port", str(port)], env=env_for(state),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def plugins(port: int) -> dict[str, dict[str, str]]:
    import asyncio

    from clawgate.client import call_remote

    result = asyncio.run(asyncio.to_thread(call_remote, "plugins.list", {},
                                           url=f"ws://127.0.0.1:{port}", token=TOKEN))
    return {p["id"]: p for p in result["plugins"]}


def test_a_plugin_that_exits_or_hangs_is_refused_and_the_gateway_serves(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write_config(state, ["hard_exit", "register_forever", "good_tool"])
    port = free_port()
    proc = start(state, port)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        found = plugins(port)
        assert found["good_tool"]["status"] == "loaded"
        assert found["hard_exit"]["status"] == "error"
        assert "ended the process (exit status 1)" in found["hard_exit"]["reason"]
        assert found["register_forever"]["status"] == "error"
        assert "did not finish within 1 s" in found["register_forever"]["reason"]
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers=HEADERS,
                       timeout=10, json={"model": "clawgate",
                                         "messages": [{"role": "user", "content": "alive"}]})
        assert r.json()["choices"][0]["message"]["content"] == "alive"
    finally:
        first = stop(proc)
    assert proc.returncode == 0
    assert "plugin 'hard_exit' is not loaded" in first
    assert "probed 3 plugin(s)" in first
    verdicts = orjson.loads((state / "plugin-probes.json").read_bytes())["verdicts"]
    assert sorted(v["plugin"] for v in verdicts.values()) == [
        "good_tool", "hard_exit", "register_forever"]

    proc = start(state, port)  # unchanged plugins: no probe at all this time
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        assert plugins(port)["hard_exit"]["status"] == "error"
    finally:
        second = stop(proc)
    assert "probing" not in second and "probed" not in second


def test_adding_an_exiting_plugin_by_sighup_keeps_the_gateway_and_its_turns(
        tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    slow = "[plugins.entries.echo.config]\ndelay_ms = 700\n"
    write_config(state, ["good_tool"], slow)
    port = free_port()
    proc = start(state, port)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url)
        with httpx.Client(base_url=url, headers=HEADERS, timeout=20) as http, \
                httpx.stream("POST", f"{url}/v1/chat/completions", headers=HEADERS, timeout=20,
                             json={"model": "clawgate", "stream": True, "messages": [
                                 {"role": "user", "content": "in flight"}]}) as streaming:
            assert streaming.status_code == 200
            write_config(state, ["good_tool", "hard_exit"], slow)
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while "hard_exit" not in plugins(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert plugins(port)["hard_exit"]["status"] == "error"
            body = "".join(streaming.iter_text())
            assert "data: [DONE]" in body and proc.poll() is None
            assert http.get("/ready").status_code == 200
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_sigterm_while_plugins_load_exits_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write_config(state, ["register_forever"])
    (state / "clawgate.toml").write_text((state / "clawgate.toml").read_text().replace(
        "probe_timeout_s = 1", "probe_timeout_s = 60"))
    proc = start(state, free_port())
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # the probe child is running register() now
            if "probing 1 new or changed plugin" in line:
                break
        else:
            raise AssertionError("the gateway never started probing")
        os.kill(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
    finally:
        stop(proc)
    assert proc.returncode == 0, rest
    assert "signal received during start-up: stopping" in rest
    assert "Traceback" not in rest
    # The probe child and its fork server go with the gateway.
    deadline = time.monotonic() + 10
    while probe_children(state) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert probe_children(state) == []


def probe_children(state: Path) -> list[int]:
    """Probe processes (found in /proc) started by a gateway over ``state``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if b"clawgate.plugins.probe" in cmdline and \
                f"CLAWGATE_STATE_DIR={state}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
