"""``sessions.compact`` over a real WebSocket (OpenClaw's params and result), the
``sessions.changed`` event it causes, and ``chat.history`` after a compaction: the full
transcript with a compactionSummary marker where it happened, the flush turn hidden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clawgate.agents.summary import SILENT_TOKEN
from clawgate.agents.turn import Submission
from tests.support.gateway_server import serve_gateway
from tests.support.mock_openai import MockOpenAI, Reply, stall
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio
MAIN = "agent:main:main"


def config(mock: MockOpenAI) -> dict[str, Any]:
    return {"plugins": {"entries": {"openai": {"enabled": True, "config": {
                "base_url": mock.url, "api_key_env": "MOCK_KEY", "max_retries": 0,
                "models": [{"id": "mock-model", "context_window": 200_000}]}}}},
            "agents": [{"id": "main", "default": True, "model": "openai/mock-model"}]}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOCK_KEY", "test-key")


async def test_sessions_compact_and_the_history_after_it(tmp_path: Path, mock_openai) -> None:
    async with serve_gateway(tmp_path, config(mock_openai)) as server, \
            open_client(server) as ws:
        engine = server.gateway.runtime.engine
        missing = await ws.ok("sessions.compact", {"key": "main"})
        assert missing == {"key": MAIN, "ok": True, "compacted": False,
                           "reason": "no sessionId"}
        texts = [f"{n} question " * 40 for n in ("first", "second", "third")]
        for text in texts:
            assert (await engine.run(Submission(text))).status == "ok"
        mock_openai.plan(Reply(SILENT_TOKEN), Reply("SUMMARY of the first two"))

        done = await ws.ok("sessions.compact", {"key": "main", "maxLines": 2}, within=10)

        assert done["ok"] is True and done["compacted"] is True and done["key"] == MAIN
        assert done["kept"] == 2 and done["memoryFlush"] == {"status": "ok"}
        result = done["result"]
        assert result["summary"] == "SUMMARY of the first two"
        assert result["tokensAfter"] < result["tokensBefore"]
        changed = await ws.event("sessions.changed", lambda p: p.get("reason") == "compact")
        assert changed["payload"] == {"sessionKey": MAIN, "reason": "compact",
                                      "compacted": True}

        history = await ws.ok("chat.history", {"sessionKey": "main"})
        shown = [(m["role"], m["content"][0]["text"] if m["content"] else "")
                 for m in history["messages"]]
        assert shown == [*((role, text) for text in texts for role in ("user", "assistant")),
                         ("compactionSummary", "SUMMARY of the first two")]  # no flush turn
        marker = history["messages"][-1]
        assert marker["summary"] == "SUMMARY of the first two"
        assert marker["firstKeptEntryId"] == result["firstKeptEntryId"]
        assert marker["tokensBefore"] == result["tokensBefore"]

        again = await ws.ok("sessions.compact", {"key": "main"})
        assert again["ok"] is True and again["compacted"] is False
        assert again["reason"] == "nothing to compact"
        bad = await ws.error("sessions.compact", {"key": "main", "maxLines": 0})
        assert bad["code"] == "INVALID_REQUEST"


async def test_sessions_compact_refuses_a_session_with_an_active_run(tmp_path: Path,
                                                                      mock_openai) -> None:
    async with serve_gateway(tmp_path, config(mock_openai)) as server, \
            open_client(server) as ws:
        engine = server.gateway.runtime.engine
        assert (await engine.run(Submission("before"))).status == "ok"
        mock_openai.plan(stall(30))
        turn = await engine.submit(Submission("a slow one"))
        await until(lambda: engine.lanes.active(MAIN) is not None)

        refused = await ws.error("sessions.compact", {"key": "main"})

        assert refused["code"] == "INVALID_REQUEST"
        assert "has an active run; retry after it finishes" in refused["message"]
        turn.abort()
        assert (await turn.result()).status == "aborted"
        stored = await engine.store.transcript(MAIN)
        assert not [m for m in stored if m.role == "system"]
