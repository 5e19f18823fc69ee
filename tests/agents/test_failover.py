"""Provider failures: retries, fallback to the next model, and errors that must not fall back."""

from __future__ import annotations

import pytest

from clawgate.agents.turn import Submission
from tests.agents.conftest import MAIN
from tests.support.mock_openai import Fail, Reply

pytestmark = pytest.mark.anyio


async def test_rate_limit_is_retried(make_engine, mock_openai):
    mock_openai.plan(Fail(429, "slow down", retry_after=0.01), Reply("hello"))
    h = await make_engine(mock=mock_openai)

    result = await h.engine.run(Submission("hi"))

    assert (result.status, result.text) == ("ok", "hello")
    assert len(mock_openai.requests) == 2
    assert h.engine.metrics.get("provider_failovers_total") == 0
    entry = await h.store.get(MAIN)
    assert entry is not None and entry.model_provider == "openai"


async def test_server_errors_fall_back_to_the_next_model(make_engine, mock_openai):
    mock_openai.plan(Fail(500, "down", retry_after=0.01), Fail(503, "still down",
                                                               retry_after=0.01))
    h = await make_engine(mock=mock_openai)

    result = await h.engine.run(Submission("echo me"))

    assert (result.status, result.text, result.error) == ("ok", "echo me", None)
    assert len(mock_openai.requests) == 2  # max_retries=1: two attempts, then failover
    assert h.engine.metrics.get("provider_failovers_total") == 1
    entry = await h.store.get(MAIN)
    assert entry is not None and (entry.model_provider, entry.model) == ("echo", "echo")


async def test_context_length_error_does_not_fall_back(make_engine, mock_openai):
    mock_openai.plan(Fail(400, "This model's maximum context length is 8192 tokens",
                          code="context_length_exceeded"))
    h = await make_engine(mock=mock_openai)

    result = await h.engine.run(Submission("a very long message"))

    assert result.status == "error"
    assert "maximum context length" in (result.error or "")
    assert len(mock_openai.requests) == 1
    assert h.engine.metrics.get("provider_failovers_total") == 0
    record = await h.store.get_run(result.run_id)
    assert record is not None and record.status == "error"
    assert "maximum context length" in (record.error or "")
    stored = await h.store.transcript(MAIN)
    assert [(m.role, m.stop_reason) for m in stored] == [("user", None), ("assistant", "error")]
