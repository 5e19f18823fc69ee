"""The token budget: the estimate, the thresholds, and where a compaction cuts."""

from __future__ import annotations

from clawgate.agents.budget import Budget, cut, message_tokens, prompt_tokens, tail
from clawgate.config import CompactionConfig, MemoryFlushConfig


def user(n: int) -> dict:
    return {"role": "user", "content": "u" * n}


def call() -> dict:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]}


def result(n: int) -> dict:
    return {"role": "tool", "tool_call_id": "c1", "name": "lookup", "content": "r" * n}


def test_the_estimate_counts_text_calls_and_images() -> None:
    assert message_tokens(user(400)) == 100 + 4
    assert message_tokens(call()) > 4
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    assert message_tokens(image) >= 1_000
    assert prompt_tokens("s" * 40, [user(4)], [{"type": "function"}]) > 10 + 5


def test_thresholds_follow_openclaw_and_fit_small_windows() -> None:
    budget = Budget.of(200_000, CompactionConfig())
    assert (budget.compact_at, budget.flush_at) == (180_000, 176_000)
    assert budget.keep == 20_000
    small = Budget.of(10_000, CompactionConfig(
        reserve_tokens=50_000, memory_flush=MemoryFlushConfig(soft_threshold_tokens=9_000)))
    assert small.compact_at == 5_000 and small.flush_at == 2_500  # halves, never negative
    assert 0 < small.keep < small.compact_at


def test_the_cut_is_a_user_message_and_never_splits_a_tool_call() -> None:
    messages = [user(400), call(), result(4000), {"role": "assistant", "content": "a" * 400},
                user(400), {"role": "assistant", "content": "a" * 400}, user(40)]
    assert cut(messages, 300) == 4  # the last two turns (~220 tokens) fit
    assert cut(messages, 50) == 6  # the newest turn alone
    assert cut(messages, 10) == 6  # even when it is larger than the budget
    assert cut(messages, 10**9) == 4  # the oldest boundary (0 is never a cut)
    assert cut(messages, 10**9, max_messages=1) == 6
    assert cut([user(10), call(), result(10)], 1) is None  # one turn: nothing to summarise


def test_tail_keeps_what_fits_from_a_turn_boundary() -> None:
    messages = [user(4000), {"role": "assistant", "content": "x"}, user(40), call(), result(40)]
    assert tail(messages, 10**6) == messages
    assert tail(messages, 100) == messages[2:]
