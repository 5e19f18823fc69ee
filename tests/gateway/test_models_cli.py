"""``clawgate models auth`` / ``models list`` and ``models.authReset`` against a real gateway:
a key that hit a rate limit shows its cooldown (never the key), and a reset clears it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.gateway.test_process import CLAWGATE
from tests.gateway.test_startup import env_for
from tests.support.gateway_server import TOKEN, serve_gateway
from tests.support.mock_anthropic import MockAnthropic, mock_anthropic_factory  # noqa: F401
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio

CLAUDE = {"id": "claude-test", "alias": "sonnet", "context_window": 200_000}
PROFILES = [{"id": "a", "api_key_env": "ANTHROPIC_KEY_A"},
            {"id": "b", "api_key_env": "ANTHROPIC_KEY_B"}]


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_KEY_A", "sk-ant-secret-a")
    monkeypatch.setenv("ANTHROPIC_KEY_B", "sk-ant-secret-b")


def config(server: MockAnthropic) -> dict[str, object]:
    return {"agents": [{"id": "main", "default": True, "model": "anthropic/claude-test"}],
            "plugins": {"entries": {"anthropic": {"enabled": True, "config": {
                "base_url": server.url, "models": [CLAUDE], "max_retries": 0,
                "profiles": PROFILES}}}}}


async def cli(state: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [CLAWGATE, "models", *args, "--url", f"ws://127.0.0.1:{port}", "--token", TOKEN]
    return await asyncio.to_thread(subprocess.run, command, env=env_for(state),
                                   capture_output=True, text=True, timeout=30)


async def test_a_cooled_down_key_is_shown_and_reset(tmp_path: Path,
                                                    mock_anthropic_factory) -> None:  # noqa: F811
    fake = mock_anthropic_factory()
    fake.rate_limit("sk-ant-secret-a", retry_after=600)
    async with serve_gateway(tmp_path, config(fake)) as server:
        async with server.client() as http:
            r = await http.post("/v1/chat/completions", json={
                "model": "anthropic/claude-test",
                "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text  # key a was refused, key b answered
        shown = await cli(tmp_path, server.port, "auth")
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert "anthropic: static" in lines
        assert any(line.startswith("  a: static (env:ANTHROPIC_KEY_A), cooling down")
                   for line in lines), lines
        assert "  b: static (env:ANTHROPIC_KEY_B)" in lines
        assert "sk-ant-secret" not in shown.stdout + shown.stderr

        reset = await cli(tmp_path, server.port, "auth", "--reset", "anthropic/a")
        assert reset.returncode == 0, reset.stderr
        assert reset.stdout == "anthropic: reset a\n"
        after = orjson.loads((await cli(tmp_path, server.port, "auth", "--json")).stdout)
        (row,) = [p for p in after["providers"] if p["provider"] == "anthropic"]
        assert all("cooldownUntil" not in p for p in row["profiles"])

        listed = await cli(tmp_path, server.port, "list", "--provider", "anthropic")
        assert listed.stdout.splitlines() == ["anthropic/claude-test (sonnet)  context 200,000"]


async def test_a_bad_reset_names_what_is_unknown(tmp_path: Path,
                                                 mock_anthropic_factory) -> None:  # noqa: F811
    fake = mock_anthropic_factory()
    async with serve_gateway(tmp_path, config(fake)) as server:
        bad = await cli(tmp_path, server.port, "auth", "--reset", "anthropic/zz")
        assert bad.returncode == 1 and bad.stdout == ""
        assert "anthropic: no auth profile 'zz'" in bad.stderr
        async with open_client(server) as ws:
            error = await ws.error("models.authReset", {"provider": "nope"})
            assert error["code"] == "INVALID_REQUEST" and "'nope'" in error["message"]
            # Resetting needs operator.admin: a read-only client is refused.
        async with open_client(server, scopes=["operator.read"]) as reader:
            refused = await reader.error("models.authReset", {})
            assert "operator.admin" in refused["message"]
