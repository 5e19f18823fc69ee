"""The docs keep up with the code (in the style of datasette's ``tests/test_docs.py``).

Each test fails when something the code accepts is missing from docs/ or documented
differently: hooks and their arguments, ``PluginApi`` methods and their signatures, manifest
fields, enable rules, config keys and their defaults, environment variables, the TOML examples,
the example plugin, the commands shown in README.md and docs/, the core RPC methods (with their
scopes), events and HTTP routes in docs/protocol.md, and the modules of ``src/clawgate`` in the
module map of docs/architecture.md.
"""

from __future__ import annotations

import inspect
import re
import shlex
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from clawgate import cli, config
from clawgate.agents.turn import Submission
from clawgate.gateway.methods import CORE, RESERVED
from clawgate.gateway.methods.system import EVENTS
from clawgate.plugins import activation, manifest
from clawgate.plugins.api import PluginApi
from clawgate.plugins.hooks import SPECS
from clawgate.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(
    r"^(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<info>[^\n]*)\n(?P<body>.*?)^```", re.M | re.S
)


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def blocks(name: str, info: str | None = None) -> list[re.Match[str]]:
    """Fenced code blocks of a Markdown file, optionally only those of one language."""
    found = FENCE.finditer(text(name))
    return [m for m in found if info is None or m["info"].strip() == info]


def table_row(doc: str, key: str) -> list[str] | None:
    """The cells of the Markdown table row whose first cell is ``key`` in backticks."""
    for line in doc.splitlines():
        if line.startswith(f"| `{key}` |"):
            return [cell.strip() for cell in line.strip().strip("|").split(" | ")]
    return None


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# -- hooks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_is_documented_with_its_arguments(name: str) -> None:
    spec = SPECS[name]
    row = table_row(text("docs/plugins.md"), name)
    assert row is not None, f"hook {name!r} is missing from the hook table in docs/plugins.md"
    _, arguments, mode, timeout, fail, fields, *_ = row
    assert ticked(arguments) == list(spec.params), f"hook {name!r}: arguments differ"
    assert mode == spec.mode, f"hook {name!r}: mode differs"
    expected_timeout = "none" if spec.timeout_s is None else f"{spec.timeout_s:g} s"
    assert timeout == expected_timeout, f"hook {name!r}: timeout differs"
    assert fail == spec.fail, f"hook {name!r}: fail policy differs"
    assert ticked(fields) == list(spec.fields), f"hook {name!r}: modifiable fields differ"


# -- PluginApi --------------------------------------------------------------------------------


def _default(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        inner = ", ".join(_default(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def signature(name: str) -> str:
    """``api.name(a, b, *, c=1)``: how docs/plugins.md spells a method, annotations left out."""
    parts: list[str] = []
    keyword_only = False
    params = list(inspect.signature(getattr(PluginApi, name)).parameters.values())[1:]
    for param in params:
        if param.kind is param.KEYWORD_ONLY and not keyword_only:
            parts.append("*")
            keyword_only = True
        default = "" if param.default is param.empty else f"={_default(param.default)}"
        parts.append(param.name + default)
    return f"api.{name}({', '.join(parts)})"


API_METHODS = sorted(
    name for name, _ in inspect.getmembers(PluginApi, inspect.isfunction)
    if not name.startswith("_")
)


def test_plugin_api_has_methods() -> None:
    assert "register_tool" in API_METHODS and "on" in API_METHODS


@pytest.mark.parametrize("name", API_METHODS)
def test_plugin_api_method_is_documented(name: str) -> None:
    expected = signature(name)
    assert f"`{expected}`" in text("docs/plugins.md"), (
        f"PluginApi.{name} is not documented in docs/plugins.md as `{expected}`"
    )


def test_plugin_api_attributes_are_documented(tmp_path: Path) -> None:
    stub = manifest.Manifest(id="x", config_schema={}, path=tmp_path / manifest.MANIFEST_NAME,
                             digest="")
    api = PluginApi(stub, config={}, root_config=None, state_dir=tmp_path,
                    hook_counter=lambda: 0)
    doc = text("docs/plugins.md")
    public = sorted(name for name in vars(api) if not name.startswith("_"))
    assert public, "PluginApi has no public attributes?"
    missing = [name for name in public if f"`api.{name}`" not in doc]
    assert not missing, f"PluginApi attributes not documented in docs/plugins.md: {missing}"


# -- manifest and enable rules ----------------------------------------------------------------


@pytest.mark.parametrize("field", sorted(manifest._KNOWN))
def test_manifest_field_is_documented(field: str) -> None:
    assert table_row(text("docs/plugins.md"), field) is not None, (
        f"manifest field {field!r} is missing from the manifest table in docs/plugins.md"
    )


def test_enable_rules_are_documented_in_order() -> None:
    rows = re.findall(r"^\| \d+ \| `([a-z-]+)` \|", text("docs/plugins.md"), re.M)
    assert rows == [rule.name for rule in activation.RULES]


# -- configuration ----------------------------------------------------------------------------


def _nested(annotation: Any) -> Iterator[tuple[type[BaseModel], str]]:
    """Models inside a field's type, with the path segment that leads into them."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, ""
    elif origin is tuple and args:
        for model, _ in _nested(args[0]):
            yield model, "[]"
    elif origin is dict and len(args) == 2:
        for model, _ in _nested(args[1]):
            yield model, ".<id>"
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _nested(arg)


def config_keys(
    model: type[BaseModel] = config.Config, prefix: str = ""
) -> Iterator[tuple[str, FieldInfo]]:
    """Every key of the config, as a dotted path (``agents[].model.primary``)."""
    for name, field in model.model_fields.items():
        path = prefix + name
        yield path, field
        for nested, segment in _nested(field.annotation):
            yield from config_keys(nested, f"{path}{segment}.")


CONFIG_KEYS = dict(config_keys())


def documented_default(field: FieldInfo) -> str | None:
    """How the default column shows a field's default; None when it is a nested table."""
    if field.default_factory is not None:
        made = field.default_factory()  # type: ignore[call-arg]
        return None if isinstance(made, BaseModel) else ("`{}`" if made == {} else None)
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`[]`" if not value else None
    return f"`{value!r}`"


def test_config_has_keys() -> None:
    assert "plugins.entries.<id>.config" in CONFIG_KEYS
    assert "agents[].model.primary" in CONFIG_KEYS


@pytest.mark.parametrize("key", sorted(CONFIG_KEYS))
def test_config_key_is_documented(key: str) -> None:
    row = table_row(text("docs/configuration.md"), key)
    assert row is not None, f"config key {key!r} is missing from docs/configuration.md"
    expected = documented_default(CONFIG_KEYS[key])
    if expected is not None:
        assert row[2] == expected, f"config key {key!r}: documented default differs"


def environment_variables() -> list[str]:
    """Every CLAWGATE_/OPENCLAW_ variable the source names, including the diagnostics ones that
    ``diagnostics/timeline.py`` looks up under both prefixes through ``_env(env, NAME)``."""
    found: set[str] = set()
    for path in sorted((ROOT / "src" / "clawgate").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        found |= set(re.findall(r'"((?:CLAWGATE|OPENCLAW)_[A-Z][A-Z_]*)"', source))
        for name in re.findall(r'_env\(env, "([A-Z_]+)"\)', source):
            found |= {f"CLAWGATE_{name}", f"OPENCLAW_{name}"}
    return sorted(found)


def test_environment_variables_are_found() -> None:
    assert "CLAWGATE_STATE_DIR" in environment_variables()
    assert "OPENCLAW_DIAGNOSTICS_TIMELINE_PATH" in environment_variables()


@pytest.mark.parametrize("name", environment_variables())
def test_environment_variable_is_documented(name: str) -> None:
    assert f"`{name}`" in text("docs/configuration.md"), f"{name} is not documented"


TOML_BLOCKS = [
    pytest.param(m["body"], id=f"{path.name}:{i}")
    for path in sorted(DOCS.glob("*.md"))
    for i, m in enumerate(blocks(f"docs/{path.name}", "toml"))
]


def test_configuration_has_a_toml_example() -> None:
    assert blocks("docs/configuration.md", "toml")


@pytest.mark.parametrize("body", TOML_BLOCKS)
def test_toml_example_is_valid_config(body: str) -> None:
    config.parse(tomllib.loads(body))


def test_full_example_sets_every_section() -> None:
    body = blocks("docs/configuration.md", "toml")[-1]["body"]
    assert set(tomllib.loads(body)) == set(config.Config.model_fields)


# -- commands -----------------------------------------------------------------------------------


def shown_commands() -> list[tuple[str, str, bool]]:
    """(file, command, runnable) for every clawgate command in README.md and docs/.

    Commands in shell code blocks are meant to be run, so they must reach a handler; inline
    mentions (``clawgate plugins``) need only name real subcommands and options.
    """
    found: list[tuple[str, str, bool]] = []
    for name in ["README.md", *(f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")))]:
        for block in blocks(name):
            if block["info"].strip() not in ("sh", "shell", "bash", "console", ""):
                continue
            for line in block["body"].splitlines():
                for part in re.split(r"&&|\|\||;|\|", line.strip().removeprefix("$ ")):
                    found.append((name, part.strip(), True))
        for inline in re.findall(r"`(clawgate [^`]+)`", text(name)):
            # Placeholders: "<id>" and argparse-style metavars ("--port N", "-m TEXT") stand
            # for a value, "[--json]" for an optional flag.
            command = re.sub(r"<[^>]+>|\b[A-Z][A-Z_]*\b", "1", inline)
            command = re.sub(r"\[([^\]]+)\]", r"\1", command)
            found.append((name, command, False))
    return [f for f in found if f[1].split(" ", 1)[0] in ("clawgate", ".venv/bin/clawgate")]


def test_commands_are_found() -> None:
    assert any(c.startswith(".venv/bin/clawgate plugins") for _, c, _ in shown_commands())


@pytest.mark.parametrize(("where", "command", "runnable"), shown_commands())
def test_shown_command_exists(where: str, command: str, runnable: bool) -> None:
    argv = shlex.split(command)[1:]
    if argv == ["--version"]:
        assert "--version" in cli._parser()._option_string_actions
        return
    try:
        args = cli._parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: {command!r} is not a valid clawgate command")
    if runnable:
        assert getattr(args, "handler", None) is not None, f"{where}: {command!r} does nothing"


# -- the example plugin -------------------------------------------------------------------------


def write_example(folder: Path) -> Path:
    files = [m for m in blocks("docs/plugins.md") if m["file"]]
    assert {m["file"] for m in files} == {"hello/clawgate.plugin.json", "hello/plugin.py"}
    for match in files:
        path = folder / match["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(match["body"], encoding="utf-8")
    return folder / "hello"


@pytest.mark.anyio
async def test_example_plugin_loads_and_works(tmp_path: Path) -> None:
    root = write_example(tmp_path / "src")
    cfg = config.parse({"plugins": {
        "load_paths": [str(root)],
        "entries": {"hello": {"config": {"signature": "sent by clawgate"}}},
    }})
    settings = config.Settings(cfg, tmp_path / "state", tmp_path / "state" / "clawgate.toml")
    async with Runtime.open(settings) as runtime:
        registry = runtime.host.current.registry
        record = registry.record("hello")
        assert record is not None and record.status == "loaded", record
        assert (record.tools, record.hooks, record.commands) == (
            ("greet",), ("message_sending",), ("hello",))
        engine = runtime.engine
        # The tool, through a turn: the echo provider calls it on "/tool greet {...}".
        called = await engine.run(Submission('/tool greet {"name": "Ada"}'))
        assert called.text.startswith("tool greet said: Hello, Ada!"), called.text
        # The hook: every reply is signed.
        plain = await engine.run(Submission("Hi"))
        assert plain.text == "Hi\n-- sent by clawgate"
        # The command, dispatched by the turn API before the model.
        command = await engine.submit(Submission("/hello"))
        assert command.command == "hello"
        assert (await command.result()).text == "Hello, world!"


def test_example_plugin_passes_doctor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_example(tmp_path / "src")
    state = tmp_path / "state"
    state.mkdir()
    (state / "clawgate.toml").write_text(f"[plugins]\nload_paths = [{str(root)!r}]\n",
                                         encoding="utf-8")
    monkeypatch.setenv("CLAWGATE_STATE_DIR", str(state))
    monkeypatch.delenv("CLAWGATE_CONFIG", raising=False)
    assert cli.main(["plugins", "doctor"]) == 0


# -- the wire protocol ----------------------------------------------------------------------------


CORE_METHODS = sorted(RESERVED - {"connect"})


def test_core_methods_are_found() -> None:
    assert "sessions.list" in CORE_METHODS and "chat.send" in CORE_METHODS


@pytest.mark.parametrize("name", CORE_METHODS)
def test_core_method_is_documented_with_its_scope(name: str) -> None:
    row = table_row(text("docs/protocol.md"), name)
    assert row is not None, (
        f"RPC method {name!r} is missing from the method table in docs/protocol.md"
    )
    assert row[1] == f"`{CORE[name].scope}`", f"RPC method {name!r}: scope differs"


@pytest.mark.parametrize("event", EVENTS)
def test_event_is_documented(event: str) -> None:
    assert table_row(text("docs/protocol.md"), event) is not None, (
        f"event {event!r} (features.events) is missing from docs/protocol.md"
    )


def http_routes() -> list[str]:
    """Every route path the gateway's app defines, read from the route table in
    ``gateway/app.py``: its routes, and the OpenAI table under each prefix it is mounted at.
    The plugin-route catch-all (``/{path:path}``) is left out."""
    app = (ROOT / "src" / "clawgate" / "gateway" / "app.py").read_text(encoding="utf-8")
    paths = set(re.findall(r'\b(?:Route|WebSocketRoute)\("(/[^"]*)"', app))
    mounted = re.search(r"for prefix in \(([^)]*)\)", app)
    assert mounted is not None
    prefixes = re.findall(r'"(/[^"]*)"', mounted.group(1))
    suffixes = re.findall(r'^\s*\("(/[^"]*)", \(', app, re.M)
    paths |= {prefix + suffix for prefix in prefixes for suffix in suffixes}
    return sorted(p for p in paths if not re.fullmatch(r"/\{[^}]*\}", p))


def test_http_routes_are_found() -> None:
    routes = http_routes()
    assert {"/", "/health", "/metrics", "/v1/chat/completions", "/openclaw/v1/responses",
            "/v1/models/{model_id:path}"} <= set(routes), routes


@pytest.mark.parametrize("path", http_routes())
def test_http_route_is_documented(path: str) -> None:
    # A path parameter may be spelled differently in the docs: /v1/models/{id}.
    parts = re.split(r"\{[^}]*\}", path)
    pattern = r"\{[^}`]+\}".join(re.escape(part) for part in parts)
    assert re.search(f"`{pattern}`", text("docs/protocol.md")), (
        f"HTTP route {path} is missing from docs/protocol.md"
    )


# -- the module map -------------------------------------------------------------------------------


def module_map() -> set[str]:
    """The file paths the module map in docs/architecture.md names: a tree in a code block,
    two spaces per level, folders ending in ``/``, the first word of each line a name."""
    section = text("docs/architecture.md").split("\n## Module map\n", 1)[1]
    body = FENCE.search(section)
    assert body is not None, "docs/architecture.md: the module map has no code block"
    paths: set[str] = set()
    folders: list[tuple[int, str]] = []
    for line in body["body"].splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        name = line.split()[0]
        while folders and folders[-1][0] >= indent:
            folders.pop()
        where = "".join(folder for _, folder in folders)
        if name.endswith("/"):
            folders.append((indent, name))
        else:
            paths.add(where + name)
    return paths


MODULES = sorted(
    path.relative_to(ROOT).as_posix() for path in (ROOT / "src" / "clawgate").rglob("*.py")
)


def test_modules_are_found() -> None:
    assert "src/clawgate/gateway/methods/chat.py" in MODULES
    assert "src/clawgate/agents/engine.py" in module_map()


@pytest.mark.parametrize("module", MODULES)
def test_module_is_in_the_module_map(module: str) -> None:
    assert module in module_map(), (
        f"{module} is missing from the module map in docs/architecture.md"
    )


def test_module_map_names_only_existing_modules() -> None:
    stale = sorted(p for p in module_map() if p.endswith(".py") and not (ROOT / p).is_file())
    assert not stale, f"the module map in docs/architecture.md names missing modules: {stale}"
