"""Starting the gateway as users do (`clawgate gateway` in its own process): bind first, then
announce; every start-up failure is one clear line and a non-zero exit; the store is checked
at open and its health is in /ready; state files are private (issue 7, items 8, 10, 17, 20)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.test_process import CLAWGATE, free_port

TOKEN = "startup-test-token"


def env_for(state: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(state), "CLAWGATE_GATEWAY_TOKEN": TOKEN,
           **extra}
    env.pop("CLAWGATE_CONFIG", None)
    env.pop("CLAWGATE_GATEWAY_PORT", None)
    return env


def run_cli(*args: str, state: Path, timeout: float = 30, **extra: str
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLAWGATE, *args], env=env_for(state, **extra), capture_output=True,
                          text=True, timeout=timeout)


def fails_with_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "listening" not in result.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def wait_ready(proc: subprocess.Popen[str], url: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited: {proc.communicate()}")
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        try:
            proc.wait(0.05)
        except subprocess.TimeoutExpired:
            pass
    raise AssertionError("gateway did not become ready")


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
    out, _ = proc.communicate(timeout=15)
    return out


def test_version(tmp_path: Path) -> None:
    from clawgate import __version__

    result = run_cli("--version", state=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, f"clawgate {__version__}")


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("gateway", "--port", str(port), state=tmp_path / "state")
    fails_with_one_line(result, f"127.0.0.1:{port} is already in use")
    assert result.returncode == 1


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_bad_port_is_one_line(tmp_path: Path, port: str) -> None:
    result = run_cli("gateway", "--port", port, state=tmp_path / "state")
    fails_with_one_line(result, "port")


def test_workspace_whose_parent_is_missing_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    missing = tmp_path / "no-such-folder" / "ws"
    (state / "clawgate.toml").write_text(f'[[agents]]\nid = "main"\nworkspace = "{missing}"\n')
    result = run_cli("gateway", "--port", "0", state=state)
    fails_with_one_line(result, str(missing), "does not exist")
    assert not missing.parent.exists()
    (state / "a-file").write_text("x")
    (state / "clawgate.toml").write_text('[[agents]]\nid = "main"\nworkspace = "a-file"\n')
    fails_with_one_line(run_cli("gateway", "--port", "0", state=state), "is not a folder")


def test_numeric_strings_are_not_integers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "clawgate.toml").write_text('[engine]\nmax_concurrent = "4"\n')
    fails_with_one_line(run_cli("gateway", "--port", "0", state=state),
                        "engine.max_concurrent", "valid integer")


def test_listening_is_announced_with_the_bound_port(tmp_path: Path) -> None:
    proc = subprocess.Popen([CLAWGATE, "gateway", "--port", "0"], env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("clawgate: gateway listening on http://127.0.0.1:"), line
        url = line.split()[4]
        port = int(url.rsplit(":", 1)[1])
        assert port > 0  # the real port, not the 0 it was asked for
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    finally:
        stop(proc)
    assert proc.returncode == 0


def make_store(state: Path, sessions: int) -> Path:
    from clawgate.sessions.store import SessionStore

    async def fill() -> None:
        async with SessionStore(state / "clawgate.db") as store:
            for n in range(sessions):
                await store.ensure(f"agent:main:s{n}", label=f"label {n}" * 20)

    asyncio.run(fill())
    return state / "clawgate.db"


def test_a_corrupt_or_truncated_store_refuses_to_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = make_store(state, 400)
    size = db.stat().st_size
    assert size > 16 * 4096
    with db.open("r+b") as f:  # garbage over pages in the middle, header intact
        f.seek(8 * 4096)
        f.write(os.urandom(4 * 4096))
    fails_with_one_line(run_cli("gateway", "--port", "0", state=state),
                        "database corrupt", str(db))
    check = run_cli("sessions", "check", state=state)
    assert check.returncode == 1 and "database corrupt" in check.stderr

    with db.open("r+b") as f:
        f.truncate(100)
    fails_with_one_line(run_cli("gateway", "--port", "0", state=state),
                        "database corrupt", str(db))

    sound = tmp_path / "sound"
    make_store(sound, 3)
    check = run_cli("sessions", "check", state=sound)
    assert check.returncode == 0 and check.stdout.strip().endswith(": ok")


def test_state_files_are_private_and_loose_modes_are_fixed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    db = make_store(state, 1)
    os.chmod(state, 0o755)
    os.chmod(db, 0o644)
    port = free_port()
    proc = subprocess.Popen([CLAWGATE, "gateway", "--port", str(port)], env=env_for(state),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
                       json={"model": "clawgate", "messages": [{"role": "user",
                                                                "content": "hi"}]})
        assert r.status_code == 200
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in state.iterdir()}
    finally:
        out = stop(proc)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert modes["clawgate.db"] == 0o600 and modes["clawgate.db-wal"] == 0o600
    assert stat.S_IMODE((state / "workspace").stat().st_mode) == 0o700
    assert f"{state} was readable by others (mode 755); changed to 700" in out
    assert f"{db} was readable by others (mode 644); changed to 600" in out


def _can_mount_tmpfs(where: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                            str(where)], capture_output=True)
    return probe.returncode == 0


def test_disk_full_is_503_store_unavailable_and_not_ready(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if not _can_mount_tmpfs(state):
        pytest.skip("needs a private tmpfs mount (root and unshare -m)")
    port = free_port()
    # The gateway runs in its own mount namespace on a 1.5 MiB file system that it fills.
    script = (f'mount -t tmpfs -o size=1536k,mode=700 tmpfs "{state}" && '
              f'exec "{CLAWGATE}" gateway --port {port}')
    proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], env=env_for(state),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        wait_ready(proc, url)
        for size, most in ((200_000, 40), (20_000, 100), (1_000, 400)):  # until nothing fits
            for _n in range(most):
                r = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=30, json={
                    # One session per size: new sessions also grow the search index, whose
                    # segment merges need more room than the /ready probe's write.
                    "model": "clawgate", "user": f"fill-{size}",
                    "messages": [{"role": "user", "content": "x" * size}]})
                if r.status_code != 200:
                    break
            assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "store_unavailable" and "disk full" in error["message"]
        ready = httpx.get(f"{url}/ready", timeout=5)
        assert ready.status_code == 503
        assert "disk full" in ready.json()["reason"]
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200  # alive, not ready
        from clawgate.client import GatewayError, call_remote

        with pytest.raises(GatewayError) as refused:  # the control plane says the same
            call_remote("chat.send", {"sessionKey": "main", "message": "x" * 1000,
                                      "idempotencyKey": "full-1"},
                        url=f"ws://127.0.0.1:{port}", token=TOKEN)
        assert refused.value.code == "UNAVAILABLE" and "disk full" in str(refused.value)
    finally:
        stop(proc)
    assert sys.platform.startswith("linux")
