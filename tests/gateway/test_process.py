"""The gateway as users run it: `clawgate gateway` in its own process, stopped by signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CLAWGATE = str(Path(sys.executable).with_name("clawgate"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """A `clawgate gateway` child process on a free loopback port."""

    def __init__(self, state: Path, *, config: str = "") -> None:
        self.state = state
        self.port = free_port()
        state.mkdir(parents=True, exist_ok=True)
        if config:
            (state / "clawgate.toml").write_text(config)
        env = {**os.environ, "CLAWGATE_STATE_DIR": str(state),
               "CLAWGATE_GATEWAY_PORT": str(self.port)}
        env.pop("CLAWGATE_CONFIG", None)
        # Output goes to a file, not a pipe: a pipe nobody reads fills up and then blocks the
        # gateway's event loop on its next log line.
        self.log = state / "gateway.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([CLAWGATE, "gateway"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, text=True)
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.state / "gateway.token").read_text().strip()

    def wait_ready(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:  # the poll interval doubles as a check that the process is still alive
                self.proc.wait(0.05)
            except subprocess.TimeoutExpired:
                pass
        raise AssertionError("gateway did not become ready")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[type[GatewayProcess]]:
    started: list[GatewayProcess] = []

    class Spawn(GatewayProcess):
        def __init__(self, state: Path | None = None, *, config: str = "") -> None:
            super().__init__(state or tmp_path / "state", config=config)
            started.append(self)

    yield Spawn
    for process in started:
        process.stop()


SLOW_ECHO = """
[plugins.entries.echo.config]
delay_ms = 1500
chunk_chars = 2
"""


def test_zero_config_start_serves_health_and_a_completion(spawn: type[GatewayProcess]) -> None:
    gateway = spawn()
    gateway.wait_ready()
    assert httpx.get(f"{gateway.url}/health").json() == {"ok": True, "status": "live"}
    assert (gateway.state / "gateway.token").stat().st_mode & 0o777 == 0o600
    reply = httpx.post(f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                       json={"model": "clawgate", "messages": [{"role": "user",
                                                                "content": "ping"}]}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "ping"


def test_sigterm_during_a_stream_drains_it_and_exits_zero(spawn: type[GatewayProcess]) -> None:
    gateway = spawn(config=SLOW_ECHO)
    gateway.wait_ready()
    body = {"model": "clawgate", "stream": True, "user": "drain",
            "messages": [{"role": "user", "content": "drain me please"}]}
    chunks: list[str] = []
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                      json=body, timeout=30) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        chunks.append(first)
        gateway.proc.send_signal(signal.SIGTERM)  # mid-stream: the turn is still running
        chunks.extend(line for line in lines if line.startswith("data: "))
    assert chunks[-1] == "data: [DONE]"
    text = "".join(
        json.loads(c[6:])["choices"][0]["delta"].get("content", "")
        for c in chunks[:-1] if json.loads(c[6:]).get("choices")
    )
    assert text == "drain me please"
    assert gateway.proc.wait(30) == 0


def test_sigkill_then_restart_keeps_every_acknowledged_message(
        spawn: type[GatewayProcess], tmp_path: Path) -> None:
    state = tmp_path / "durable"
    gateway = spawn(state, config=SLOW_ECHO)
    gateway.wait_ready()
    acknowledged = []
    for i in range(3):
        reply = httpx.post(f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                           json={"model": "clawgate", "user": "kill", "messages": [
                               {"role": "user", "content": f"message {i}"}]}, timeout=30)
        assert reply.status_code == 200
        acknowledged.append(f"message {i}")
    # One more, acknowledged by the stream's first chunk, then the process dies mid-turn.
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                      json={"model": "clawgate", "user": "kill", "stream": True,
                            "messages": [{"role": "user", "content": "in flight"}]},
                      timeout=30) as response:
        assert response.status_code == 200
        next(line for line in response.iter_lines() if line.startswith("data: "))
        acknowledged.append("in flight")
        gateway.proc.send_signal(signal.SIGKILL)
    gateway.proc.wait(10)

    again = spawn(state)
    again.wait_ready()
    listing = subprocess.run(
        [CLAWGATE, "sessions", "list", "--json"], capture_output=True, text=True, check=True,
        env={**os.environ, "CLAWGATE_STATE_DIR": str(state)})
    keys = [row["key"] for row in json.loads(listing.stdout)["sessions"]]
    assert "agent:main:openai-user:kill" in keys
    import sqlite3

    with sqlite3.connect(state / "clawgate.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = [json.loads(row[0]) for row in db.execute(
            "SELECT content FROM messages WHERE key = ? AND role = 'user' ORDER BY id",
            ("agent:main:openai-user:kill",))]
        runs = dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    assert [s if isinstance(s, str) else s[0]["text"] for s in stored] == acknowledged
    assert runs.get("interrupted") == 1


def test_cli_talks_to_the_running_gateway_and_diagnostics_go_to_the_timeline(
        spawn: type[GatewayProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timeline = tmp_path / "timeline.jsonl"
    # The OPENCLAW_ names are accepted, so OpenClaw's tooling can read our timeline unchanged.
    monkeypatch.setenv("OPENCLAW_DIAGNOSTICS", "1")
    monkeypatch.setenv("CLAWGATE_DIAGNOSTICS_TIMELINE_PATH", str(timeline))
    gateway = spawn()
    gateway.wait_ready()
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(gateway.state),
           "CLAWGATE_GATEWAY_PORT": str(gateway.port)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLAWGATE, *args], capture_output=True, text=True, env=env,
                              timeout=60)

    chat = cli("chat", "-m", "hello from the cli")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip() == "hello from the cli"
    status = cli("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["ok"] is True
    health = cli("call", "health")
    assert json.loads(health.stdout)["defaultAgentId"] == "main"
    bad = cli("call", "sessions.list", "--params", '{"limit": "many"}')
    assert bad.returncode == 1 and "limit" in bad.stderr
    remote = cli("sessions", "list", "--remote", "--json")
    assert remote.returncode == 0, remote.stderr
    assert [row["key"] for row in json.loads(remote.stdout)["sessions"]] == ["agent:main:main"]

    records = [json.loads(line) for line in timeline.read_text().splitlines()]
    assert {r["schemaVersion"] for r in records} == {"openclaw.diagnostics.v1"}
    names = {(r["name"], r["type"]) for r in records}
    for name in ("plugins.metadata.scan", "agent.turn", "gateway.sessions.list",
                 "gateway.sessions.list.store_load"):
        assert (name, "span.start") in names and (name, "span.end") in names, name
    [latency] = [r for r in records if r["name"] == "agent.turn.latency"]
    attributes = latency["attributes"]
    assert attributes["sessionKey"] == "agent:main:main"
    for field in ("turnId", "totalMs", "entryMs", "dispatchMs", "firstDeliverMs", "rss"):
        assert attributes[field] is not None, field
    assert attributes["totalMs"] >= attributes["dispatchMs"]


def test_sighup_reloads_plugins_and_keeps_serving(spawn: type[GatewayProcess]) -> None:
    gateway = spawn(config="[plugins.entries.echo.config]\ndelay_ms = 0\n")
    gateway.wait_ready()
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(gateway.state),
           "CLAWGATE_GATEWAY_PORT": str(gateway.port)}

    def generation() -> int:
        listed = subprocess.run([CLAWGATE, "call", "plugins.list"], capture_output=True,
                                text=True, env=env, timeout=60, check=True)
        return int(json.loads(listed.stdout)["generation"])

    first = generation()
    (gateway.state / "clawgate.toml").write_text("[plugins.entries.echo.config]\ndelay_ms = 1\n")
    gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while generation() == first:
        assert time.monotonic() < deadline, "SIGHUP did not reload the plugins"
    assert gateway.proc.poll() is None
    reply = httpx.post(f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                       json={"model": "clawgate", "messages": [{"role": "user",
                                                                "content": "after"}]}, timeout=30)
    assert reply.json()["choices"][0]["message"]["content"] == "after"
    reloaded = subprocess.run([CLAWGATE, "plugins", "reload"], capture_output=True, text=True,
                              env=env, timeout=60)
    assert reloaded.returncode == 0 and "unchanged" in reloaded.stdout


def test_sighup_and_cli_report_a_refused_reload(spawn: type[GatewayProcess]) -> None:
    gateway = spawn()
    gateway.wait_ready()
    (gateway.state / "clawgate.toml").write_text('[plugins.entries.echo.config]\ndelay_ms = "x"\n')
    env = {**os.environ, "CLAWGATE_STATE_DIR": str(gateway.state)}
    env.pop("CLAWGATE_CONFIG", None)
    cli = subprocess.run([CLAWGATE, "plugins", "reload", "--port", str(gateway.port)], env=env,
                         capture_output=True, text=True, timeout=30)
    assert cli.returncode == 1
    assert "reload refused" in cli.stderr and "plugins.entries.echo.config.delay_ms" in cli.stderr
    gateway.proc.send_signal(signal.SIGHUP)
    reply = httpx.post(f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                       json={"model": "clawgate", "messages": [{"role": "user",
                                                                "content": "after"}]}, timeout=30)
    assert reply.status_code == 200, reply.text
    gateway.proc.send_signal(signal.SIGTERM)
    gateway.proc.wait(20)
    out = gateway.log.read_text()
    assert "plugin reload refused, keeping the running plugins" in out
    assert "plugins.entries.echo.config.delay_ms" in out


def test_a_request_during_the_sigterm_drain_gets_503(spawn: type[GatewayProcess]) -> None:
    gateway = spawn(config=SLOW_ECHO)
    gateway.wait_ready()
    body = {"model": "clawgate", "stream": True, "user": "drain",
            "messages": [{"role": "user", "content": "drain me please"}]}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                      json=body, timeout=30) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: "))
        gateway.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while httpx.get(f"{gateway.url}/ready", timeout=5).status_code == 200:
            assert time.monotonic() < deadline
        late = httpx.post(f"{gateway.url}/v1/chat/completions", headers=gateway.headers(),
                          json={"model": "clawgate", "messages": [
                              {"role": "user", "content": "too late"}]}, timeout=10)
        assert late.status_code == 503, late.text
        assert late.json()["error"]["type"] == "api_error"
        assert "shutting down" in late.json()["error"]["message"]
        assert [line for line in lines if line.startswith("data: ")][-1] == "data: [DONE]"
    assert gateway.proc.wait(30) == 0
