"""Providers through the engine: Anthropic turns, thinking kept across turns, cache tokens and
costs on runs and sessions, key rotation, aliases, and fallback to a second provider."""

from __future__ import annotations

from typing import Any

import pytest

from clawgate.agents.bus import RunEvent
from clawgate.agents.turn import Submission
from clawgate.providers.catalog import Catalog
from clawgate.providers.profiles import auth_report
from clawgate.sessions.usage import date_range
from tests.agents.conftest import MAIN, next_event
from tests.providers.conftest import plugins
from tests.support.mock_anthropic import (
    Fail,
    MockAnthropic,
    Reply,
    Text,
    Thinking,
    ToolUse,
    signature,
    text,
)
from tests.support.mock_openai import MockOpenAI
from tests.support.mock_openai import Reply as ChatReply

pytestmark = pytest.mark.anyio

PRICES = {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75}
CLAUDE = {"id": "claude-test", "alias": "sonnet", "context_window": 200_000,
          "max_output_tokens": 8192, "input": ["text", "image"], "reasoning": True,
          "cost": PRICES}


def anthropic(server: MockAnthropic, **extra: Any) -> dict[str, Any]:
    return {"base_url": server.url, "api_key_env": "ANTHROPIC_TEST_KEY", "models": [CLAUDE],
            "max_retries": 1, **extra}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_KEY_A", "sk-ant-a")
    monkeypatch.setenv("ANTHROPIC_KEY_B", "sk-ant-b")
    monkeypatch.setenv("MOCK_KEY", "test-key")


def expected_cost(usage: dict[str, Any]) -> float:
    fresh = usage["input"] - usage["cache_read"] - usage["cache_write"]
    return (fresh * PRICES["input"] + usage["output"] * PRICES["output"]
            + usage["cache_read"] * PRICES["cache_read"]
            + usage["cache_write"] * PRICES["cache_write"]) / 1e6


async def test_an_anthropic_turn_is_streamed_stored_and_priced(engine_with, mock_anthropic_factory):
    server = mock_anthropic_factory()
    server.plan(Reply((Text("Hello from the fake Claude", chunks=4),), output_tokens=12))
    h = await engine_with(plugins=plugins(anthropic=anthropic(server)),
                          model="anthropic/claude-test")
    sub = h.engine.bus.subscribe()
    result = await h.engine.run(Submission("hi there"))
    assert (result.status, result.text) == ("ok", "Hello from the fake Claude")
    deltas = []
    while True:
        event: RunEvent = await next_event(sub, lambda e: e.stream in ("assistant", "lifecycle"))
        if event.stream == "assistant":
            deltas.append(event.data["delta"])
        elif event.data["phase"] == "end":
            break
    assert len(deltas) == 4 and "".join(deltas) == result.text
    usage = event.data["usage"]
    assert usage["output"] == 12 and usage["cache_write"] > 0
    assert usage["cost"]["total"] == pytest.approx(expected_cost(usage))

    record = await h.store.get_run(result.run_id)
    assert record is not None and (record.provider, record.model) == ("anthropic", "claude-test")
    assert record.cost_usd == pytest.approx(expected_cost(usage)) and record.fallbacks is None
    stored = (await h.store.transcript(MAIN))[-1]
    assert stored.role == "assistant" and stored.usage == usage  # the turn's cost with it
    entry = await h.store.get(MAIN)
    assert entry is not None and entry.cost_usd == pytest.approx(record.cost_usd)
    assert entry.cache_write_tokens == usage["cache_write"]


async def test_thinking_blocks_survive_the_tool_loop_and_later_turns(engine_with,
                                                                     mock_anthropic_factory):
    server = mock_anthropic_factory()
    server.plan(
        Reply((Thinking("Look up owls first."), ToolUse("lookup", '{"q": "owl"}'))),
        Reply((Text("Owls are nocturnal."),)),
        Reply((Thinking("Second question."), Text("Bats too."))),
    )
    h = await engine_with(plugins=plugins(anthropic=anthropic(server)),
                          model="anthropic/claude-test")
    await h.store.ensure(MAIN, agent_id="main")
    await h.store.patch(MAIN, thinking_level="low")  # what sessions.patch thinkingLevel sets

    first = await h.engine.run(Submission("tell me about owls"))
    assert (first.status, first.text) == ("ok", "Owls are nocturnal.")
    second = await h.engine.run(Submission("and bats?"))
    assert (second.status, second.text) == ("ok", "Bats too.")

    bodies = [r.body for r in server.requests]
    assert [b["thinking"]["budget_tokens"] for b in bodies] == [2048, 2048, 2048]
    owl_block = {"type": "thinking", "thinking": "Look up owls first.",
                 "signature": signature("Look up owls first.")}
    # Within the turn: the tool-calling message went back starting with its signed block.
    assert bodies[1]["messages"][1]["content"][0] == owl_block
    # Next turn: the stored transcript still carries it (the fake re-checks the signature).
    assert bodies[2]["messages"][1]["content"][0] == owl_block
    stored = await h.store.transcript(MAIN)
    calling = next(m for m in stored if m.tool_calls)
    assert calling.extra is not None and calling.extra["thinking_blocks"] == [owl_block]
    assert calling.extra["reasoning_content"] == "Look up owls first."
    last = stored[-1]
    assert last.extra is not None and last.extra["thinking_blocks"][0]["thinking"] == (
        "Second question.")


async def test_cache_tokens_accumulate_on_the_session(engine_with, mock_anthropic_factory):
    server = mock_anthropic_factory()
    h = await engine_with(plugins=plugins(anthropic=anthropic(server)),
                          model="anthropic/claude-test")
    first = await h.engine.run(Submission("one"))
    second = await h.engine.run(Submission("two"))
    runs = [await h.store.get_run(r.run_id) for r in (first, second)]
    assert all(r is not None and r.usage for r in runs)
    u1, u2 = (r.usage for r in runs if r is not None)
    assert u1 is not None and u2 is not None
    # The tools prefix was written by the first turn and read by the second.
    assert u1["cache_write"] > 0 and u2["cache_read"] > 0
    entry = await h.store.get(MAIN)
    assert entry is not None
    assert entry.cache_read_tokens == u1["cache_read"] + u2["cache_read"]
    assert entry.cache_write_tokens == u1["cache_write"] + u2["cache_write"]


async def test_an_alias_selects_the_model(engine_with, mock_anthropic_factory):
    server = mock_anthropic_factory()
    h = await engine_with(plugins=plugins(anthropic=anthropic(server)), model="sonnet")
    result = await h.engine.run(Submission("via alias"))
    assert (result.status, result.text) == ("ok", "via alias")
    assert server.requests[0].body["model"] == "claude-test"
    catalog = Catalog.of(e.provider for e in h.host.current.registry.providers.values())
    refs = {row["ref"] for row in catalog.rows()}
    assert "anthropic/claude-test" in refs and "echo/echo" in refs


async def test_fallback_to_the_second_provider_records_the_reason(engine_with,
                                                                  mock_anthropic_factory):
    server = mock_anthropic_factory()
    server.plan(Fail(529, "overloaded_error", "Overloaded"), Fail(529, "overloaded_error",
                                                                   "Overloaded"))
    with MockOpenAI() as chat:
        chat.plan(ChatReply("answered by the fallback"))
        openai = {"base_url": chat.url, "api_key_env": "MOCK_KEY", "max_retries": 0,
                  "models": [{"id": "gpt-test", "cost": {"input": 1, "output": 2}}]}
        h = await engine_with(
            plugins=plugins(anthropic=anthropic(server), openai=openai),
            model={"primary": "anthropic/claude-test", "fallbacks": ["openai/gpt-test"]})
        sub = h.engine.bus.subscribe()
        result = await h.engine.run(Submission("hello?"))
        end = await next_event(sub, lambda e: e.stream == "lifecycle"
                               and e.data["phase"] == "end")
    assert (result.status, result.text) == ("ok", "answered by the fallback")
    assert len(server.requests) == 2 and len(chat.requests) == 1  # retried once, then fell back
    assert h.engine.metrics.get("provider_failovers_total") == 1
    record = await h.store.get_run(result.run_id)
    assert record is not None and (record.provider, record.model) == ("openai", "gpt-test")
    assert record.fallbacks is not None
    (attempt,) = record.fallbacks
    assert attempt["model"] == "anthropic/claude-test"
    assert (attempt["kind"], attempt["status"]) == ("unavailable", 529)
    assert "overloaded_error" in attempt["error"]
    assert end.data["fallbacks"] == record.fallbacks
    assert record.cost_usd is not None and record.cost_usd > 0  # priced on the fallback model


async def test_no_fallback_after_text_was_streamed(engine_with, mock_anthropic_factory):
    server = mock_anthropic_factory()
    server.plan(Reply((Text("partial answer here", chunks=3),), drop_after=1))
    with MockOpenAI() as chat:
        h = await engine_with(
            plugins=plugins(anthropic=anthropic(server), openai={"base_url": chat.url}),
            model={"primary": "anthropic/claude-test", "fallbacks": ["openai/gpt-test"]})
        result = await h.engine.run(Submission("go"))
        assert chat.requests == []
    assert result.status == "error" and "mid-answer" in (result.error or "")
    assert result.text == "partial"


async def test_a_rate_limited_key_rotates_and_the_session_sticks(engine_with,
                                                                 mock_anthropic_factory):
    server = mock_anthropic_factory()
    server.rate_limit("sk-ant-a", retry_after=60)
    profiles = [{"id": "a", "api_key_env": "ANTHROPIC_KEY_A"},
                {"id": "b", "api_key_env": "ANTHROPIC_KEY_B"}]
    h = await engine_with(plugins=plugins(anthropic=anthropic(server, profiles=profiles)),
                          model="anthropic/claude-test")
    assert (await h.engine.run(Submission("one"))).text == "one"
    assert (await h.engine.run(Submission("two"))).text == "two"
    assert [server.key_of(i) for i in range(3)] == ["sk-ant-a", "sk-ant-b", "sk-ant-b"]
    report = auth_report(e.provider for e in h.host.current.registry.providers.values())
    (row,) = [r for r in report["providers"] if r["provider"] == "anthropic"]
    assert [(p["id"], p["state"], p["sessions"]) for p in row["profiles"]] == [
        ("a", "cooldown", 0), ("b", "ok", 1)]
    assert "sk-ant" not in repr(report)


async def test_costs_are_summed_per_session(engine_with, mock_anthropic_factory):
    server = mock_anthropic_factory()
    server.plan(text("a", output_tokens=100), text("b", output_tokens=200),
                text("c", output_tokens=300))
    h = await engine_with(plugins=plugins(anthropic=anthropic(server, prompt_caching=False)),
                          model="anthropic/claude-test")
    runs = [await h.engine.run(Submission("x")), await h.engine.run(Submission("y")),
            await h.engine.run(Submission("z", session_key="agent:main:other"))]
    records = [await h.store.get_run(r.run_id) for r in runs]
    costs = [r.cost_usd for r in records if r is not None]
    assert len(costs) == 3 and all(c is not None and c > 0 for c in costs)
    start, end = date_range(days=1, now_ms=h.store._clock())
    report = await h.store.sessions_usage(start, end)
    by_key = {s["key"]: s["usage"] for s in report["sessions"]}
    assert by_key[MAIN]["totalCost"] == pytest.approx(costs[0] + costs[1])
    assert by_key[MAIN]["runs"] == 2 and by_key[MAIN]["output"] == 300
    assert by_key["agent:main:other"]["totalCost"] == pytest.approx(costs[2])
    assert report["totals"]["totalCost"] == pytest.approx(sum(costs))
    assert report["totals"]["missingCostEntries"] == 0
    (model,) = report["aggregates"]["byModel"]
    assert (model["provider"], model["model"], model["count"]) == ("anthropic", "claude-test", 3)
    summary = await h.store.usage_cost(start, end)
    assert summary["totals"] == report["totals"] and summary["days"] == 1
    assert summary["daily"][0]["output"] == 600
    entry = await h.store.get(MAIN)
    assert entry is not None and entry.cost_usd == pytest.approx(costs[0] + costs[1])
