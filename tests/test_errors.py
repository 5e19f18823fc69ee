"""The exception tree: one root, drawn in the docstring, every class classified."""

from __future__ import annotations

import inspect
import re

import pytest

import clawgate.client  # noqa: F401  (with the gateway: every error class gets defined)
import clawgate.gateway.app  # noqa: F401
from clawgate import errors
from clawgate.errors import ERROR_TABLE, ClawgateError, ErrorKind, kind_of

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
    "NotFound": errors.NotFound("gone", reason="model_not_found"),
    "MethodNotAllowed": errors.MethodNotAllowed("no", allow=("GET",)),
    "PayloadTooLarge": errors.PayloadTooLarge("big"),
    "UnsupportedMediaType": errors.UnsupportedMediaType("text/plain"),
    "RequestTimeout": errors.RequestTimeout("slow"),
    "AuthError": errors.AuthError("no"),
    "Forbidden": errors.Forbidden("no"),
    "RateLimited": errors.RateLimited("slow down", retry_after_s=3),
    "Unavailable": errors.Unavailable("later"),
    "RpcError": errors.RpcError("AGENT_TIMEOUT", "late"),
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
    "NotFound": ("INVALID_REQUEST", 404),
    "MethodNotAllowed": ("INVALID_REQUEST", 405),
    "PayloadTooLarge": ("INVALID_REQUEST", 413),
    "UnsupportedMediaType": ("INVALID_REQUEST", 415),
    "RequestTimeout": ("INVALID_REQUEST", 408),
    "AuthError": ("FORBIDDEN", 401),
    "Forbidden": ("FORBIDDEN", 403),
    "RateLimited": ("UNAVAILABLE", 429),
    "Unavailable": ("UNAVAILABLE", 503),
    "RpcError": ("AGENT_TIMEOUT", 504),
}
RPC_CODES = {"INVALID_REQUEST", "UNAVAILABLE", "FORBIDDEN", "NOT_PAIRED", "AGENT_TIMEOUT",
             "NOT_LINKED"}
OPENAI_TYPES = {"invalid_request_error", "authentication_error", "permission_error",
                "not_found_error", "rate_limit_error", "api_error"}


def closure(cls: type) -> set[type]:
    """Every subclass of ``cls``, at any depth, wherever it is defined."""
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | closure(sub)
    return found


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
    kind = kind_of(SAMPLES[name])
    assert kind.rpc in RPC_CODES and 400 <= kind.status <= 599 and kind.openai in OPENAI_TYPES
    assert (kind.rpc, kind.status) == EXPECTED[name]


def test_the_whole_subclass_closure_maps_through_the_table() -> None:
    """Every error class anywhere in clawgate (the store's, the protocol's, the client's)
    resolves to a row of the one table through its MRO."""
    everything = closure(ClawgateError)
    assert {c.__name__ for c in everything} >= {"SchemaTooNew", "Refusal", "GatewayError"}
    for cls in everything:
        row = next(ERROR_TABLE[b] for b in cls.__mro__ if b in ERROR_TABLE)
        assert isinstance(row, ErrorKind) and row.rpc in RPC_CODES, cls
        assert row.openai in OPENAI_TYPES and 400 <= row.status <= 599, cls


def test_every_top_level_class_has_its_own_row() -> None:
    # A new direct child of the root would otherwise silently inherit the root's 500.
    for cls in CLASSES.values():
        if cls.__bases__ == (ClawgateError,):
            assert cls in ERROR_TABLE, cls.__name__


def test_unknown_subclass_falls_back_to_the_nearest_row() -> None:
    class Custom(errors.SessionNotFound):
        pass

    assert kind_of(Custom("x")) == ErrorKind("INVALID_REQUEST", 404, "not_found_error")


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
    assert str(plugin_config) == "plugin 'p': invalid config at $.port: bad"


@pytest.mark.parametrize(
    ("kind", "status", "failover"),
    [("rate_limit", None, True), ("timeout", None, True), ("unavailable", None, True),
     ("other", 503, True),
     ("other", 400, False), ("auth", None, False), ("context_length", 500, True)],
)
def test_provider_error_failover(kind: str, status: int | None, failover: bool) -> None:
    error = errors.ProviderError("x", provider="p", kind=kind, status=status)  # type: ignore[arg-type]
    assert error.failover is failover
