"""What plugins register, and the immutable registry one generation holds.

Registrations are values (frozen dataclasses) that the loader collects from each plugin's
``register(api)`` and commits only when the whole call succeeded. Conflicts between plugins (two
claiming one tool name or RPC method) keep the first and become diagnostics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypedDict

from clawgate.plugins.hooks import HookCaller, HookHandler
from clawgate.plugins.metadata import Diagnostic
from clawgate.providers.base import Provider

RecordStatus = Literal["loaded", "disabled", "error", "blocked", "overridden"]
Phase = Literal["discovery", "validation", "probe", "load", "register"]


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool handler learns about the call it serves."""

    session_key: str
    agent_id: str
    run_id: str
    workspace: Path | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call. ``handler(arguments)`` or ``handler(arguments, context)``,
    sync or async; its return value (str, or JSON-able) becomes the tool result."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    handler: Callable[..., Any]
    plugin_id: str = ""
    wants_context: bool = False

    def spec(self) -> dict[str, Any]:
        """The OpenAI function-tool definition the model sees."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


@dataclass(frozen=True, slots=True)
class MethodContext:
    """The ``context`` a plugin RPC method handler receives.

    ``broadcast(event, payload)`` sends an event to every connection holding
    ``operator.read``; it may be called from the worker thread a sync handler runs on.
    """

    method: str
    conn_id: str
    client_id: str
    role: str
    scopes: frozenset[str]
    plugin_id: str
    broadcast: Callable[[str, Any], None] = field(repr=False)


class ServiceContext(TypedDict):
    """What a plugin service's ``start(context)`` and ``stop(context)`` receive."""

    state_dir: Path
    config: Any  # the gateway's validated Config


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a plugin command handler learns about the message it answers."""

    session_key: str
    agent_id: str
    channel: str | None
    run_id: str


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    plugin_id: str
    provider: Provider


@dataclass(frozen=True, slots=True)
class ChannelEntry:
    plugin_id: str
    channel: Any


@dataclass(frozen=True, slots=True)
class Method:
    """An RPC method served on the WebSocket control plane: ``handler(params, context)``."""

    name: str
    handler: Callable[..., Any]
    scope: str
    plugin_id: str


@dataclass(frozen=True, slots=True)
class Route:
    """An HTTP route: a Starlette endpoint ``handler(request) -> Response``."""

    path: str
    handler: Callable[..., Any]
    methods: tuple[str, ...]
    auth: Literal["gateway", "none"]
    plugin_id: str


@dataclass(frozen=True, slots=True)
class Service:
    """A background service: ``start(context)`` and ``stop(context)``, sync or async."""

    id: str
    start: Callable[..., Any]
    stop: Callable[..., Any] | None
    plugin_id: str


@dataclass(frozen=True, slots=True)
class Command:
    """A slash command handled without the model: ``handler(args, context) -> str``."""

    name: str
    description: str
    handler: Callable[..., Any]
    plugin_id: str


@dataclass(frozen=True, slots=True)
class PluginRecord:
    """The outcome of one plugin in one generation."""

    id: str
    origin: str
    root: str
    status: RecordStatus
    reason: str
    phase: Phase | None = None
    error: str | None = None
    manifest: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON row for ``plugins list --json`` and the ``plugins.list`` method."""
        row: dict[str, Any] = {
            "id": self.id,
            "origin": self.origin,
            "root": self.root,
            "status": self.status,
            "reason": self.reason,
        }
        if self.phase:
            row["failurePhase"] = self.phase
        if self.error:
            row["error"] = self.error
        for name in ("tools", "hooks", "providers", "channels", "methods", "routes", "services",
                     "commands"):
            values = getattr(self, name)
            if values:
                row[name] = list(values)
        if self.manifest:
            row["manifest"] = dict(self.manifest)
        return row


@dataclass(frozen=True, slots=True)
class Registry:
    """Everything one generation's plugins registered. Never mutated after the build."""

    records: Mapping[str, PluginRecord]
    tools: Mapping[str, Tool]
    providers: Mapping[str, ProviderEntry]
    channels: Mapping[str, ChannelEntry]
    methods: Mapping[str, Method]
    routes: tuple[Route, ...]
    services: tuple[Service, ...]
    commands: Mapping[str, Command]
    hook_handlers: tuple[HookHandler, ...]
    diagnostics: tuple[Diagnostic, ...]
    hooks: HookCaller

    def provider(self, provider_id: str) -> Provider | None:
        entry = self.providers.get(provider_id.lower())
        return None if entry is None else entry.provider

    def tool(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def record(self, plugin_id: str) -> PluginRecord | None:
        return self.records.get(plugin_id)


@dataclass(slots=True)
class Staged:
    """One plugin's registrations, collected by its api before they are committed."""

    tools: list[Tool] = field(default_factory=list)
    hooks: list[HookHandler] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)
    channels: list[Any] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)


class RegistryBuilder:
    """Collects committed registrations in plugin order; the first claimant of a name wins."""

    def __init__(self, reserved_methods: frozenset[str], reserved_paths: tuple[str, ...]) -> None:
        self._reserved_methods = reserved_methods
        self._reserved_paths = reserved_paths
        self.records: dict[str, PluginRecord] = {}
        self.tools: dict[str, Tool] = {}
        self.providers: dict[str, ProviderEntry] = {}
        self.channels: dict[str, ChannelEntry] = {}
        self.methods: dict[str, Method] = {}
        self.routes: list[Route] = []
        self.services: list[Service] = []
        self.commands: dict[str, Command] = {}
        self.hooks: list[HookHandler] = []
        self.diagnostics: list[Diagnostic] = []

    def commit(self, plugin_id: str, staged: Staged) -> dict[str, tuple[str, ...]]:
        """Add a plugin's staged registrations; return what it actually got, by kind."""
        got: dict[str, list[str]] = {k: [] for k in (
            "tools", "hooks", "providers", "channels", "methods", "routes", "services",
            "commands")}

        def conflict(kind: str, name: str, owner: str) -> None:
            self.diagnostics.append(Diagnostic(
                "error", f"plugin {plugin_id!r}: {kind} {name!r} already registered by {owner}",
                plugin_id))

        for tool in staged.tools:
            if tool.name in self.tools:
                conflict("tool", tool.name, f"plugin {self.tools[tool.name].plugin_id!r}")
            else:
                self.tools[tool.name] = tool
                got["tools"].append(tool.name)
        for provider in staged.providers:
            key = provider.id.lower()
            if key in self.providers:
                conflict("provider", provider.id, f"plugin {self.providers[key].plugin_id!r}")
            else:
                self.providers[key] = ProviderEntry(plugin_id, provider)
                got["providers"].append(provider.id)
        for channel in staged.channels:
            cid = str(channel.id)
            if cid in self.channels:
                conflict("channel", cid, f"plugin {self.channels[cid].plugin_id!r}")
            else:
                self.channels[cid] = ChannelEntry(plugin_id, channel)
                got["channels"].append(cid)
        for method in staged.methods:
            if method.name in self._reserved_methods:
                conflict("gateway method", method.name, "the gateway core")
            elif method.name in self.methods:
                conflict("gateway method", method.name,
                         f"plugin {self.methods[method.name].plugin_id!r}")
            else:
                self.methods[method.name] = method
                got["methods"].append(method.name)
        taken = {r.path: r.plugin_id for r in self.routes}
        for route in staged.routes:
            core = next((p for p in self._reserved_paths if _covers(p, route.path)), None)
            if core is not None:
                conflict("http route", route.path, f"the gateway core ({core})")
            elif route.path in taken:
                conflict("http route", route.path, f"plugin {taken[route.path]!r}")
            else:
                self.routes.append(route)
                got["routes"].append(route.path)
        for command in staged.commands:
            if command.name in self.commands:
                conflict("command", command.name,
                         f"plugin {self.commands[command.name].plugin_id!r}")
            else:
                self.commands[command.name] = command
                got["commands"].append(command.name)
        self.services.extend(staged.services)
        got["services"] = [s.id for s in staged.services]
        self.hooks.extend(staged.hooks)
        got["hooks"] = [h.hook for h in staged.hooks]
        return {k: tuple(v) for k, v in got.items()}

    def build(self) -> Registry:
        hooks = tuple(self.hooks)
        return Registry(
            records=MappingProxyType(dict(self.records)),
            tools=MappingProxyType(dict(self.tools)),
            providers=MappingProxyType(dict(self.providers)),
            channels=MappingProxyType(dict(self.channels)),
            methods=MappingProxyType(dict(self.methods)),
            routes=tuple(self.routes),
            services=tuple(self.services),
            commands=MappingProxyType(dict(self.commands)),
            hook_handlers=hooks,
            diagnostics=tuple(self.diagnostics),
            hooks=HookCaller(hooks),
        )


def _covers(reserved: str, path: str) -> bool:
    """A reserved path ending in "/" (other than the root) reserves its whole subtree."""
    if reserved != "/" and reserved.endswith("/"):
        return path.startswith(reserved)
    return path == reserved
