"""The exception tree: one root, drawn in the docstring, every class classified."""

from __future__ import annotations

import inspect
import re

import pytest

from clawgate import errors
from clawgate.errors import ERROR_TABLE, ClawgateError, classify

CLASSES = {
    name: cls for name, cls in vars(errors).items()
    if inspect.isclass(cls) and issubclass(cls, ClawgateError)
    and cls.__module__ == errors.__name__
}

# Instances with the context each class requires.
SAMPLES: dict[str, ClawgateError] = {
    "ClawgateError": ClawgateError("x"),
    "ConfigError": errors.ConfigError("bad", path="gateway.port", file="f.toml"),
    "PluginError": errors.PluginError("x", plugin_id="p"),
    "ManifestError": errors.ManifestError("bad", file="m.json", field="id", plugin_id="p"),
    "PluginConfigError": errors.PluginConfigError("bad", plugin_id="p", json_path="$.port"),
    "PluginLoadError": errors.PluginLoadError("bad", plugin_id="p", phase="register"),
    "RegistrationError": errors.RegistrationError("bad", plugin_id="p"),
    "HookError": errors.HookError("bad", hook="before_tool_call", plugin_id="p"),
    "SessionError": errors.SessionError("bad", session_key="agent:main:main"),
    "SessionKeyError": errors.SessionKeyError("bad", session_key="??"),
    "SessionNotFound": errors.SessionNotFound("gone", session_key="agent:main:x"),
    "QueueFullError": errors.QueueFullError("full", session_key="agent:main:main"),
    "ProviderError": errors.ProviderError("down", provider="openai", kind="timeout", status=504),
    "ToolError": errors.ToolError("bad", tool="clock"),
    "InvalidRequest": errors.InvalidRequest("bad", method="sessions.list"),
    "AuthError": errors.AuthError("no"),
    "Unavailable": errors.Unavailable("later"),
}

EXPECTED = {
    "ClawgateError": ("UNAVAILABLE", 500),
    "ConfigError": ("INVALID_REQUEST", 400),
    "PluginError": ("UNAVAILABLE", 500),
    "ManifestError": ("UNAVAILABLE", 500),
    "PluginConfigError": ("UNAVAILABLE", 500),
    "PluginLoadError": ("UNAVAILABLE", 500),
    "RegistrationError": ("UNAVAILABLE", 500),
    "HookError": ("FORBIDDEN", 403),
    "SessionError": ("INVALID_REQUEST", 400),
    "SessionKeyError": ("INVALID_REQUEST", 400),
    "SessionNotFound": ("INVALID_REQUEST", 404),
    "QueueFullError": ("UNAVAILABLE", 429),
    "ProviderError": ("UNAVAILABLE", 502),
    "ToolError": ("INVALID_REQUEST", 400),
    "InvalidRequest": ("INVALID_REQUEST", 400),
    "AuthError": ("FORBIDDEN", 401),
    "Unavailable": ("UNAVAILABLE", 503),
}


def docstring_tree() -> dict[str, str | None]:
    """Class name -> parent name, parsed from the box drawing in the module docstring.

    Depth is the column of the name relative to the root's column, four columns a level.
    """
    assert errors.__doc__
    lines = errors.__doc__.splitlines()
    root_line = next(line for line in lines if line.strip() == "ClawgateError")
    base = root_line.index("ClawgateError")
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in lines[lines.index(root_line):]:
        match = re.match(r"^[\s│├└─]*([A-Z]\w+)", line)
        if not match:
            continue
        name = match.group(1)
        depth, rest = divmod(match.start(1) - base, 4)
        assert rest == 0 and depth >= 0, line
        del stack[depth:]
        parents[name] = stack[-1] if stack else None
        stack.append(name)
    return parents


def test_samples_cover_every_class() -> None:
    assert set(SAMPLES) == set(CLASSES)
    assert set(EXPECTED) == set(CLASSES)
    for name, sample in SAMPLES.items():
        assert type(sample) is CLASSES[name]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_error_classifies(name: str) -> None:
    code, status = classify(SAMPLES[name])
    assert code in {"INVALID_REQUEST", "UNAVAILABLE", "FORBIDDEN", "NOT_PAIRED",
                    "AGENT_TIMEOUT", "NOT_LINKED"}
    assert 400 <= status <= 599
    assert (code, status) == EXPECTED[name]


def test_every_top_level_class_has_its_own_row() -> None:
    # A new direct child of the root would otherwise silently inherit the root's 500.
    for cls in CLASSES.values():
        if cls.__bases__ == (ClawgateError,):
            assert cls in ERROR_TABLE, cls.__name__


def test_unknown_subclass_falls_back_to_the_nearest_row() -> None:
    class Custom(errors.SessionNotFound):
        pass

    assert classify(Custom("x")) == ("INVALID_REQUEST", 404)


def test_docstring_tree_names_every_class_with_its_real_parent() -> None:
    tree = docstring_tree()
    assert set(tree) == set(CLASSES), set(CLASSES) ^ set(tree)
    for name, parent in tree.items():
        cls = CLASSES[name]
        if parent is None:
            assert cls is ClawgateError
        else:
            assert cls.__bases__ == (CLASSES[parent],), name


def test_context_attributes_are_kept() -> None:
    config_error = SAMPLES["ConfigError"]
    assert isinstance(config_error, errors.ConfigError)
    assert str(config_error) == "f.toml: gateway.port: bad"
    manifest = SAMPLES["ManifestError"]
    assert isinstance(manifest, errors.ManifestError)
    assert (manifest.file, manifest.field, manifest.plugin_id) == ("m.json", "id", "p")
    assert str(manifest) == "m.json (field 'id'): bad"
    plugin_config = SAMPLES["PluginConfigError"]
    assert isinstance(plugin_config, errors.PluginConfigError)
    assert str(plugin_config) == "invalid config at $.port: bad"


@pytest.mark.parametrize(
    ("kind", "status", "failover"),
    [("rate_limit", None, True), ("timeout", None, True), ("unavailable", None, True),
     ("other", 503, True),
     ("other", 400, False), ("auth", None, False), ("context_length", 500, True)],
)
def test_provider_error_failover(kind: str, status: int | None, failover: bool) -> None:
    error = errors.ProviderError("x", provider="p", kind=kind, status=status)  # type: ignore[arg-type]
    assert error.failover is failover
