"""The model catalogue: entries from plugin config, ref and alias resolution, prices, rows."""

from __future__ import annotations

import pytest

from clawgate import Catalog, Cost, InvalidRequest, ModelCost, ModelInfo, Usage, parse_models

SONNET = {"id": "claude-sonnet-4-5", "name": "Claude Sonnet 4.5", "alias": ["sonnet", "s45"],
          "context_window": 200_000, "max_output_tokens": 64_000, "input": ["text", "image"],
          "reasoning": True,
          "cost": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75}}


def catalog() -> Catalog:
    anthropic = parse_models([SONNET, "claude-haiku"], provider="anthropic")
    openai = parse_models([{"id": "gpt-5", "alias": "sonnet", "cost": {"input": 1.25,
                                                                        "output": 10}},
                           "claude-haiku", "o3"], provider="openai")
    return Catalog([*(("anthropic", m) for m in anthropic), *(("OpenAI", m) for m in openai)])


def test_parse_models_reads_limits_prices_and_aliases() -> None:
    sonnet, haiku = parse_models([SONNET, "claude-haiku"])
    assert sonnet == ModelInfo(
        id="claude-sonnet-4-5", name="Claude Sonnet 4.5", context_window=200_000,
        max_output_tokens=64_000, input=("text", "image"), reasoning=True,
        cost=ModelCost(3, 15, 0.3, 3.75), aliases=("sonnet", "s45"))
    assert haiku == ModelInfo("claude-haiku")


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "no id"}, "models\\[0\\] must be an id"),
    ({"id": "x", "input": ["audio"]}, "unknown kinds"),
    ({"id": "x", "cost": {"input": -1, "output": 1}}, "non-negative"),
    ({"id": "x", "context_window": 0}, "positive integer"),
])
def test_parse_models_names_the_bad_entry(entry: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_models([entry], provider="p")


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="unique"):
        parse_models(["a", {"id": "a"}])


def test_refs_resolve_like_openclaw() -> None:
    c = catalog()
    assert c.resolve("anthropic", "claude-sonnet-4-5") == ("anthropic", "claude-sonnet-4-5")
    assert c.resolve("Anthropic", "SONNET") == ("anthropic", "claude-sonnet-4-5")  # alias
    assert c.resolve("openai", "sonnet") == ("openai", "gpt-5")  # the provider's own alias
    assert c.resolve("", "sonnet") == ("anthropic", "claude-sonnet-4-5")  # first claim wins
    assert c.resolve("", "s45") == ("anthropic", "claude-sonnet-4-5")
    assert c.resolve("", "o3") == ("openai", "o3")  # a bare id one provider offers
    assert c.resolve("", "claude-haiku") is None  # offered by two: ambiguous
    assert c.resolve("openai", "unknown") is None  # the provider may still serve it
    assert c.resolve("", "unknown") is None


def test_cost_of_a_usage() -> None:
    c = catalog()
    usage = Usage(input=1_000_000 + 200_000 + 100_000, output=50_000, cache_read=200_000,
                  cache_write=100_000)
    cost = c.cost("anthropic", "claude-sonnet-4-5", usage)
    assert cost is not None
    assert cost.as_dict() == {"input": 3.0, "output": 0.75, "cache_read": 0.06,
                              "cache_write": 0.375, "total": 4.185}
    assert c.cost("anthropic", "claude-haiku", usage) is None  # no prices configured
    assert (Cost(1, 2) + Cost(0.5, 0, 1, 1)).total == 5.5


def test_rows_for_models_list_and_v1_models() -> None:
    c = catalog()
    rows = c.rows()
    assert [r["ref"] for r in rows] == ["anthropic/claude-haiku", "anthropic/claude-sonnet-4-5",
                                        "openai/claude-haiku", "openai/gpt-5", "openai/o3"]
    sonnet = rows[1]
    assert sonnet == {"id": "claude-sonnet-4-5", "name": "Claude Sonnet 4.5",
                      "provider": "anthropic", "ref": "anthropic/claude-sonnet-4-5",
                      "input": ["text", "image"], "reasoning": True, "contextWindow": 200_000,
                      "maxTokens": 64_000, "alias": "sonnet", "aliases": ["sonnet", "s45"],
                      "cost": {"input": 3, "output": 15, "cacheRead": 0.3, "cacheWrite": 3.75}}
    assert rows[0] == {"id": "claude-haiku", "name": "claude-haiku", "provider": "anthropic",
                       "ref": "anthropic/claude-haiku", "input": ["text"], "reasoning": False}
    assert c.openai_rows(7)[0] == {"id": "anthropic/claude-haiku", "object": "model",
                                   "created": 7, "owned_by": "anthropic"}
