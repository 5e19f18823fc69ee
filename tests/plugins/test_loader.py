"""The loader (I8): a failing plugin leaves no registration behind, gets status error with its
failure phase and a diagnostic, and every other plugin still loads."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from clawgate.errors import RegistrationError
from clawgate.plugins.api import PluginApi
from clawgate.plugins.host import PluginHost
from clawgate.plugins.manifest import read_manifest
from clawgate.plugins.registry import Registry
from tests.plugins.factory import (
    FIXTURES,
    copy_fixtures,
    make_plugin,
    make_settings,
    running_host,
)

pytestmark = pytest.mark.anyio

HEALTHY = ("good_tool", "method_and_route")


def owned_by(registry: Registry, plugin_id: str) -> list[str]:
    """Every registration of ``plugin_id`` that reached the registry."""
    found = [f"tool {t.name}" for t in registry.tools.values() if t.plugin_id == plugin_id]
    found += [f"hook {h.hook}" for h in registry.hook_handlers if h.plugin_id == plugin_id]
    found += [f"method {m.name}" for m in registry.methods.values() if m.plugin_id == plugin_id]
    found += [f"route {r.path}" for r in registry.routes if r.plugin_id == plugin_id]
    found += [f"service {s.id}" for s in registry.services if s.plugin_id == plugin_id]
    found += [f"provider {p}" for p, e in registry.providers.items() if e.plugin_id == plugin_id]
    return found


def modules_from(root: Path) -> list[str]:
    """Names in sys.modules whose code or package path lies in the plugin folder ``root``."""
    found = []
    for name, module in list(sys.modules.items()):
        paths = [getattr(module, "__file__", None) or "",
                 *(getattr(module, "__path__", None) or [])]
        if any(p and Path(p).resolve().is_relative_to(root.resolve()) for p in paths):
            found.append(name)
    return found


FAILING: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "raises_at_import": ("load", ["RuntimeError: boom at import", "plugin.py:1"], {}),
    "raises_in_register": ("register", ["ValueError: boom in register", "plugin.py"], {}),
    "async_register": ("register", ["synchronous", "async def"], {}),
    "bad_config_schema": ("validation", ["$.port", "integer"], {"port": "eighty"}),
    "bad_hook_name": ("register", ["RegistrationError", "no_such_hook", "bad_hook_name"], {}),
    "exits_at_import": ("load", ["SystemExit"], {}),
}


@pytest.mark.parametrize("plugin_id", list(FAILING))
async def test_failing_plugin_leaves_nothing_behind(tmp_path: Path, plugin_id: str) -> None:
    phase, words, plugin_config = FAILING[plugin_id]
    src = copy_fixtures(tmp_path / "load", plugin_id, *HEALTHY)
    settings = make_settings(tmp_path, plugins={
        "load_paths": [str(src)], "entries": {plugin_id: {"config": plugin_config}}})
    async with running_host(settings) as host:
        generation = host.current
        registry = generation.registry
        record = registry.records[plugin_id]
        assert record.status == "error"
        assert record.phase == phase
        assert record.error is not None
        for word in words:
            assert word in record.error
        row = record.as_dict()
        assert row["failurePhase"] == phase and row["status"] == "error"
        assert [d.level for d in registry.diagnostics if d.plugin_id == plugin_id] == ["error"]

        assert owned_by(registry, plugin_id) == []
        assert registry.tool("leaky_tool") is None
        assert registry.tool("hooky_tool") is None
        assert registry.tool("port_tool") is None
        assert "leaky.method" not in registry.methods
        assert modules_from(src / plugin_id) == []
        assert modules_from(src / "good_tool")  # the check does see a loaded plugin's modules

        for healthy in HEALTHY:
            assert registry.records[healthy].status == "loaded"
        assert registry.tool("greet") is not None
        assert [h.plugin_id for h in registry.hooks.handlers("agent_end")] == ["good_tool"]
        assert "mr.ping" in registry.methods


async def test_healthy_plugins_register_what_they_declare(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "good_tool", "good_provider", "method_and_route")
    settings = make_settings(tmp_path, plugins={
        "load_paths": [str(src)], "entries": {"good_tool": {"config": {"greeting": "hi"}}}})
    async with running_host(settings) as host:
        registry = host.current.registry
        greet = registry.tool("greet")
        assert greet is not None
        assert greet.handler({"name": "Ann"}) == "hi, Ann"
        assert greet.description == "Greet someone by name."
        assert greet.spec()["function"]["name"] == "greet"
        record = registry.records["good_tool"]
        assert (record.status, record.tools, record.hooks) == ("loaded", ("greet",),
                                                               ("agent_end",))
        assert registry.provider("Vercel-AI-Gateway") is not None
        method = registry.methods["mr.ping"]
        assert (method.scope, method.plugin_id) == ("operator.read", "method_and_route")
        assert method.handler({}, None) == {"pong": True}
        (route,) = registry.routes
        assert (route.path, route.methods, route.auth) == ("/mr/ping", ("GET", "POST"),
                                                           "gateway")


async def test_disabled_and_refused_plugins_get_records(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "good_tool", "conflict_a")
    make_plugin(src, "no_entry", manifest_overrides={"entry": "missing:register"})
    settings = make_settings(tmp_path, plugins={"load_paths": [str(src)],
                                                "deny": ["conflict_a"]})
    async with running_host(settings) as host:
        records = host.current.registry.records
        assert (records["conflict_a"].status, records["conflict_a"].reason) == (
            "disabled", "blocked by denylist")
        assert records["no_entry"].status == "error"
        assert records["no_entry"].phase in ("discovery", "validation")
        assert "not found" in (records["no_entry"].error or "")
        assert records["good_tool"].status == "loaded"


async def test_api_is_closed_after_register(tmp_path: Path) -> None:
    log = tmp_path / "late.txt"
    code = """
    def register(api):
        def start(context):
            try:
                api.register_tool(lambda arguments: "late", name="late_tool")
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                outcome = "accepted"
            with open(api.config["log"], "w") as f:
                f.write(outcome)

        api.register_service("late", start)
    """
    src = tmp_path / "src"
    make_plugin(src, "keeps_api", code=code)
    settings = make_settings(tmp_path, plugins={
        "load_paths": [str(src)], "entries": {"keeps_api": {"config": {"log": str(log)}}}})
    async with running_host(settings) as host:
        assert log.read_text().startswith("RegistrationError: plugin 'keeps_api': register_tool")
        assert "after register() returned" in log.read_text()
        assert host.current.registry.tool("late_tool") is None


CALLS: dict[str, Any] = {
    "register_tool": lambda api: api.register_tool(lambda a: 1, name="t"),
    "on": lambda api: api.on("agent_end", lambda: None),
    "register_provider": lambda api: api.register_provider(object()),
    "register_channel": lambda api: api.register_channel(object()),
    "register_method": lambda api: api.register_method("m.x", lambda p, c: 1),
    "register_route": lambda api: api.register_route("/x", lambda r: None),
    "register_service": lambda api: api.register_service("s", lambda c: None),
    "register_command": lambda api: api.register_command("c", lambda a, c: ""),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_every_registration_call_refuses_after_close(tmp_path: Path, call: str) -> None:
    manifest = read_manifest(FIXTURES / "good_tool" / "clawgate.plugin.json")
    api = PluginApi(manifest, config={}, root_config=None, state_dir=tmp_path,
                    hook_counter=iter(range(100)).__next__)
    staged = api.close()
    with pytest.raises(RegistrationError, match=f"{call} called after register"):
        CALLS[call](api)
    assert not any(getattr(staged, kind) for kind in ("tools", "hooks", "providers", "channels",
                                                      "methods", "routes", "services",
                                                      "commands"))


async def test_conflicts_first_wins_with_a_diagnostic(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "conflict_a", "conflict_b", "good_tool")
    async with running_host(make_settings(tmp_path, plugins={"load_paths": [str(src)]})) as host:
        registry = host.current.registry
        tool = registry.tool("same_name")
        assert tool is not None and tool.plugin_id == "conflict_a"
        assert tool.handler({}) == "a"
        assert registry.methods["same.method"].plugin_id == "conflict_a"
        assert registry.records["conflict_b"].status == "loaded"
        assert registry.records["conflict_b"].tools == ()
        assert registry.records["conflict_b"].methods == ()
        messages = [d.message for d in registry.diagnostics if d.plugin_id == "conflict_b"]
        assert any("tool 'same_name' already registered by plugin 'conflict_a'" in m
                   for m in messages)
        assert any("gateway method 'same.method' already registered by plugin 'conflict_a'" in m
                   for m in messages)
        assert registry.tool("greet") is not None


async def test_undeclared_provider_is_refused(tmp_path: Path) -> None:
    code = """
    class Stranger:
        id = "stranger"

        def models(self):
            return []

        async def stream(self, request):
            yield None

        async def aclose(self):
            pass

    def register(api):
        api.register_tool(lambda arguments: 1, name="sneaky_tool")
        api.register_provider(Stranger())
    """
    src = tmp_path / "src"
    make_plugin(src, "sneaky", code=code, manifest_overrides={"providers": ["declared"]})
    async with running_host(make_settings(tmp_path, plugins={"load_paths": [str(src)]})) as host:
        registry = host.current.registry
        record = registry.records["sneaky"]
        assert (record.status, record.phase) == ("error", "register")
        assert "provider 'stranger' is not declared" in (record.error or "")
        assert registry.provider("stranger") is None
        assert registry.tool("sneaky_tool") is None


async def test_reserved_method_and_path_are_refused(tmp_path: Path) -> None:
    src = copy_fixtures(tmp_path / "load", "method_and_route", "good_tool")
    host = PluginHost(make_settings(tmp_path, plugins={"load_paths": [str(src)]}),
                      bundled_root=None, reserved_methods=frozenset({"mr.ping", "health"}),
                      reserved_paths=("/mr/",))
    try:
        registry = (await host.start()).registry
        assert "mr.ping" not in registry.methods
        assert registry.routes == ()
        messages = [d.message for d in registry.diagnostics if d.plugin_id == "method_and_route"]
        assert any("gateway method 'mr.ping' already registered by the gateway core" in m
                   for m in messages)
        assert any("http route '/mr/ping'" in m and "gateway core (/mr/)" in m for m in messages)
        assert registry.records["method_and_route"].status == "loaded"
        assert registry.tool("greet") is not None
    finally:
        await host.aclose()


async def test_relative_imports_inside_a_plugin(tmp_path: Path) -> None:
    src = tmp_path / "src"
    root = make_plugin(
        src, "layered",
        code="""
        from . import helper
        from .sub.deep import DEEP


        def register(api):
            api.register_tool(lambda arguments: f"{helper.VALUE}-{DEEP}", name="layered_tool")
        """,
        files={"helper.py": "VALUE = 'from-helper'\n"},
    )
    (root / "sub").mkdir()
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "deep.py").write_text("from ..helper import VALUE\n\nDEEP = VALUE.upper()\n")
    async with running_host(make_settings(tmp_path, plugins={"load_paths": [str(src)]})) as host:
        tool = host.current.registry.tool("layered_tool")
        assert tool is not None, host.current.registry.records["layered"]
        assert tool.handler({}) == "from-helper-FROM-HELPER"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("def other(api):\n    pass\n", "has no function 'register'"),
        ("register = 42\n", "not callable"),
        ("async def _r(api):\n    pass\n\n\ndef register(api):\n    return _r(api)\n",
         "returned an awaitable"),
        ("def register(api):\n    api.register_tool(lambda: 1, name='bad_sig')\n",
         "must take (arguments)"),
        ("def register(api):\n    api.on('agent_end', lambda nope: None)\n",
         "asks for 'nope'"),
        ("def register(api):\n    api.register_method('x', lambda p, c: 1, scope='root')\n",
         "unknown scope"),
    ],
)
async def test_other_register_failures(tmp_path: Path, code: str, words: str) -> None:
    src = tmp_path / "src"
    make_plugin(src, "flawed", code=code)
    copy_fixtures(src, "good_tool")
    async with running_host(make_settings(tmp_path, plugins={"load_paths": [str(src)]})) as host:
        registry = host.current.registry
        record = registry.records["flawed"]
        assert record.status == "error"
        assert words in (record.error or "")
        assert owned_by(registry, "flawed") == []
        assert registry.records["good_tool"].status == "loaded"


async def test_ids_differing_only_in_punctuation_load_their_own_code(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for pid, name in (("foo-bar", "dash_tool"), ("foo_bar", "under_tool")):
        make_plugin(src, pid, code=f"def register(api):\n"
                                   f"    api.register_tool(lambda a: 1, name='{name}')\n")
    async with running_host(make_settings(tmp_path, plugins={"load_paths": [str(src)]})) as host:
        registry = host.current.registry
        assert registry.records["foo-bar"].tools == ("dash_tool",)
        assert registry.records["foo_bar"].tools == ("under_tool",)
