"""Manifests are read and validated without importing code; errors name the file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clawgate.errors import ManifestError
from clawgate.plugins.manifest import (
    MANIFEST_NAME,
    BareRule,
    ModelIdPolicy,
    parse_manifest,
    read_manifest,
)
from tests.plugins.factory import FIXTURES

SCHEMA = {"type": "object", "properties": {}}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / MANIFEST_NAME
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_valid_manifest_parses_and_normalizes(tmp_path: Path) -> None:
    path = write(tmp_path, {
        "id": "  weather ",
        "name": "Weather",
        "version": "1.2.3",
        "description": "  Forecasts  ",
        "configSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
        "enabledByDefault": "true",  # only a literal true counts
        "kind": "memory",
        "channels": ["chat", " chat ", ""],
        "providers": ["Wx", "wx-alt"],
        "contracts": {"tools": ["forecast"]},
        "entry": "pkg.main:setup",
    })
    manifest = read_manifest(path)
    assert manifest.id == "weather"
    assert manifest.name == "Weather"
    assert manifest.description == "Forecasts"
    assert manifest.enabled_by_default is False
    assert manifest.kinds == ("memory",)
    assert manifest.is_memory
    assert manifest.channels == ("chat",)
    assert manifest.providers == ("Wx", "wx-alt")
    assert manifest.tools == ("forecast",)
    assert (manifest.entry_module(), manifest.entry_function()) == ("pkg.main", "setup")
    assert manifest.root == tmp_path
    assert manifest.warnings == ()
    assert len(manifest.digest) == 64


def test_enabled_by_default_true_and_default_entry(tmp_path: Path) -> None:
    manifest = read_manifest(write(tmp_path, {"id": "a", "configSchema": {},
                                              "enabledByDefault": True}))
    assert manifest.enabled_by_default is True
    assert manifest.entry == "plugin:register"


def test_every_fixture_manifest_is_valid() -> None:
    folders = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    assert len(folders) >= 14
    for folder in folders:
        assert read_manifest(folder / MANIFEST_NAME).id == folder.name


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"configSchema": SCHEMA}, "id", "requires id"),
        ({"id": "   ", "configSchema": SCHEMA}, "id", "requires id"),
        ({"id": 7, "configSchema": SCHEMA}, "id", "requires id"),
        ({"id": "Bad Id!", "configSchema": SCHEMA}, "id", "lowercase"),
        ({"id": "p"}, "configSchema", "requires configSchema"),
        ({"id": "p", "configSchema": "object"}, "configSchema", "requires configSchema"),
        ({"id": "p", "configSchema": []}, "configSchema", "requires configSchema"),
        ({"id": "p", "configSchema": {"type": "no-such-type"}}, "configSchema",
         "not a valid JSON Schema"),
        ({"id": "p", "configSchema": {"properties": {"x": {"minimum": "zero"}}}},
         "configSchema", "properties/x/minimum"),
        ({"id": "p", "configSchema": SCHEMA, "entry": "plugin"}, "entry", "module:function"),
        ({"id": "p", "configSchema": SCHEMA, "entry": "../evil:register"}, "entry",
         "module:function"),
        ({"id": "p", "configSchema": SCHEMA, "entry": 3}, "entry", "module:function"),
        ({"id": "p", "configSchema": SCHEMA, "providers": "openai"}, "providers",
         "list of strings"),
        ({"id": "p", "configSchema": SCHEMA, "providers": ["a", 1]}, "providers",
         "list of strings"),
        ({"id": "p", "configSchema": SCHEMA, "channels": {"a": 1}}, "channels",
         "list of strings"),
        ({"id": "p", "configSchema": SCHEMA, "kind": "vector-store"}, "kind", "unknown kind"),
        ({"id": "p", "configSchema": SCHEMA, "kind": ["memory", "bogus"]}, "kind",
         "unknown kind"),
        ({"id": "p", "configSchema": SCHEMA, "name": 5}, "name", "must be a string"),
        ({"id": "p", "configSchema": SCHEMA, "contracts": []}, "contracts", "object"),
        ({"id": "p", "configSchema": SCHEMA, "providers": ["mine"],
          "modelIdNormalization": {"providers": {"theirs": {"prefixWhenBare": "x"}}}},
         "modelIdNormalization.providers.theirs", "not listed"),
        ({"id": "p", "configSchema": SCHEMA, "providers": ["mine"],
          "modelIdNormalization": {"providers": {"mine": {"aliases": {"a": 1}}}}},
         "modelIdNormalization.providers.mine.aliases", "strings to strings"),
        ({"id": "p", "configSchema": SCHEMA, "providers": ["mine"],
          "modelIdNormalization": {"providers": {"mine": {
              "prefixWhenBareAfterAliasStartsWith": [{"modelPrefix": "c"}]}}}},
         "modelIdNormalization.providers.mine.prefixWhenBareAfterAliasStartsWith.0",
         "modelPrefix and prefix"),
        ({"id": "p", "configSchema": SCHEMA, "modelIdNormalization": ["x"]},
         "modelIdNormalization", "providers"),
    ],
)
def test_invalid_manifest_names_file_and_field(
    tmp_path: Path, data: dict[str, Any], field: str, words: str
) -> None:
    path = write(tmp_path, data)
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    error = caught.value
    assert error.field == field
    assert error.file == str(path)
    assert str(path) in str(error)
    assert f"(field {field!r})" in str(error)
    assert words in str(error)


def test_manifest_id_is_kept_on_errors_after_the_id(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        read_manifest(write(tmp_path, {"id": "named", "configSchema": SCHEMA, "kind": "x"}))
    assert caught.value.plugin_id == "named"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\"id\""])
def test_unparseable_or_non_object_manifest(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read manifest"):
        read_manifest(tmp_path / MANIFEST_NAME)


def test_unknown_top_level_field_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, {"id": "p", "configSchema": SCHEMA, "futureField": {"x": 1}})
    manifest = read_manifest(path)
    assert manifest.id == "p"
    assert len(manifest.warnings) == 1
    assert "futureField" in manifest.warnings[0]
    assert str(path) in manifest.warnings[0]


def test_digest_is_of_the_file_bytes(tmp_path: Path) -> None:
    first = read_manifest(write(tmp_path, {"id": "p", "configSchema": SCHEMA}))
    again = read_manifest(write(tmp_path, {"id": "p", "configSchema": SCHEMA}))
    changed = read_manifest(write(tmp_path, {"id": "p", "configSchema": SCHEMA,
                                             "description": "new"}))
    assert first.digest == again.digest
    assert changed.digest != first.digest


# -- model-id normalization (reference §5.5) ---------------------------------------------------

VERCEL = {
    "id": "vercel",
    "configSchema": SCHEMA,
    "providers": ["Vercel-AI-Gateway"],
    "modelIdNormalization": {"providers": {"vercel-ai-gateway": {
        "stripPrefixes": ["vercel-ai-gateway/"],
        "aliases": {"Opus-4.6": "claude-opus-4-6"},
        "prefixWhenBareAfterAliasStartsWith": [{"modelPrefix": "claude-", "prefix": "anthropic"}],
    }}},
}


def policy_of(data: dict[str, Any], provider: str) -> ModelIdPolicy:
    manifest = parse_manifest(data, path=Path("/x") / MANIFEST_NAME, digest="d")
    return dict(manifest.model_id_policies)[provider]


def test_worked_example_vercel_ai_gateway() -> None:
    policy = policy_of(VERCEL, "vercel-ai-gateway")
    assert policy.apply("opus-4.6") == "anthropic/claude-opus-4-6"
    # the alias key is case-insensitive, the prefix strip too
    assert policy.apply("OPUS-4.6") == "anthropic/claude-opus-4-6"
    assert policy.apply("Vercel-AI-Gateway/opus-4.6") == "anthropic/claude-opus-4-6"
    # the rule's modelPrefix matches case-insensitively and keeps the id's spelling
    assert policy.apply("Claude-Sonnet-4") == "anthropic/Claude-Sonnet-4"
    # no rule and no prefixWhenBare: the bare id stays bare
    assert policy.apply("gpt-5") == "gpt-5"
    # an id with a slash is already qualified
    assert policy.apply("openai/claude-x") == "openai/claude-x"
    assert policy.apply("  opus-4.6  ") == "anthropic/claude-opus-4-6"


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_id_is_returned_as_is(empty: str) -> None:
    policy = ModelIdPolicy(prefix_when_bare="p", strip_prefixes=("x/",), aliases={"": "y"})
    assert policy.apply(empty) == ""


def test_strip_prefixes_first_match_case_insensitive() -> None:
    policy = ModelIdPolicy(strip_prefixes=("OpenRouter/", "or/"))
    assert policy.apply("openrouter/or/llama") == "or/llama"
    assert policy.apply("OR/llama") == "llama"
    assert policy.apply("llama") == "llama"


def test_prefix_when_bare_and_rule_order() -> None:
    policy = ModelIdPolicy(
        prefix_when_bare="default",
        bare_rules=(BareRule("gpt-", "openai"), BareRule("g", "google")),
    )
    assert policy.apply("gpt-4o") == "openai/gpt-4o"  # the first matching rule wins
    assert policy.apply("gemini") == "google/gemini"
    assert policy.apply("llama") == "default/llama"
    assert policy.apply("meta/llama") == "meta/llama"


def test_alias_to_a_qualified_id_is_not_prefixed() -> None:
    policy = ModelIdPolicy(aliases={"fast": "groq/llama-3"}, prefix_when_bare="x")
    assert policy.apply("FAST") == "groq/llama-3"


def test_slashes_at_the_join_are_collapsed() -> None:
    assert ModelIdPolicy(prefix_when_bare="anthropic/").apply("claude") == "anthropic/claude"
    assert ModelIdPolicy(prefix_when_bare="a//").apply("m") == "a/m"
    rule = ModelIdPolicy(bare_rules=(BareRule("c", "anthropic///"),))
    assert rule.apply("claude") == "anthropic/claude"


def test_policy_from_manifest_is_keyed_by_lowercased_provider() -> None:
    manifest = parse_manifest(VERCEL, path=Path("/x") / MANIFEST_NAME, digest="d")
    assert [p for p, _ in manifest.model_id_policies] == ["vercel-ai-gateway"]
