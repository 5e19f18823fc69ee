"""``PluginApi``: the object a plugin's ``register(api)`` receives.

Every registration is checked when it is made (a bad hook name, a provider the manifest does not
declare, a tool without a name) and staged; the loader commits the staged registrations only if
``register`` returns normally. The api is closed when ``register`` returns: a later registration
call raises, so a plugin cannot slip registrations in from a background thread or a callback.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from clawgate.chat import Capabilities
from clawgate.config import Config, Settings
from clawgate.errors import RegistrationError
from clawgate.plugins.hooks import make_handler
from clawgate.plugins.manifest import Manifest
from clawgate.plugins.registry import Command, Method, Route, Service, Staged, Tool
from clawgate.providers.base import Provider

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_METHOD_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_SCOPES = frozenset(
    {"operator.read", "operator.write", "operator.admin", "operator.approvals",
     "operator.pairing"}
)
_EMPTY_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}


class PluginApi:
    """Registration surface for one plugin during one ``register`` call."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        config: Mapping[str, Any],
        root_config: Any,
        state_dir: Path,
        hook_counter: Callable[[], int],
    ) -> None:
        self.id = manifest.id
        self.name = manifest.name or manifest.id
        self.version = manifest.version
        self.root = manifest.root
        self.config: Mapping[str, Any] = config
        """This plugin's validated ``plugins.entries.<id>.config`` (defaults filled in)."""
        self.root_config = root_config
        self.state_dir = state_dir
        self.logger = logging.getLogger(f"clawgate.plugin.{manifest.id}")
        self._manifest = manifest
        self._next_order = hook_counter
        self._staged = Staged()
        self._closed = False

    # -- lifecycle (loader only) ------------------------------------------------------------

    def close(self) -> Staged:
        """Close the api and hand the staged registrations to the loader."""
        self._closed = True
        return self._staged

    def _open(self, what: str) -> None:
        if self._closed:
            raise RegistrationError(
                f"plugin {self.id!r}: {what} called after register() returned; "
                "registrations are only accepted during register()",
                plugin_id=self.id,
            )

    def _refuse(self, message: str) -> RegistrationError:
        return RegistrationError(f"plugin {self.id!r}: {message}", plugin_id=self.id)

    def workspaces(self) -> dict[str, Path]:
        """Every configured agent's workspace, by agent id (read-only; computed from the config,
        so it never touches the disk). Empty when the api carries no gateway config."""
        if not isinstance(self.root_config, Config):
            return {}
        settings = Settings(config=self.root_config, state_dir=self.state_dir,
                            config_path=self.state_dir / "clawgate.toml")
        return {agent.id: settings.agent_workspace(agent) for agent in settings.agents()}

    def resolve_path(self, relative: str) -> Path:
        """A path inside the plugin's folder; one that escapes it is refused."""
        root = self.root.resolve()
        path = (root / relative).resolve()
        if path != root and root not in path.parents:
            raise self._refuse(f"path {relative!r} escapes the plugin folder")
        return path

    # -- registrations ----------------------------------------------------------------------

    def register_tool(
        self,
        handler: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Callable[..., Any]:
        """Register a tool. ``handler(arguments)`` or ``handler(arguments, context)``.

        The name defaults to the function's name and the description to its docstring.
        Returns ``handler`` so it can be used as a decorator body.
        """
        self._open("register_tool")
        tool_name = str(name or getattr(handler, "__name__", ""))
        if not _TOOL_NAME.match(tool_name):
            raise self._refuse(f"tool name {tool_name!r} must match {_TOOL_NAME.pattern}")
        if not callable(handler):
            raise self._refuse(f"tool {tool_name!r} handler is not callable")
        positional = [
            p for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(positional) not in (1, 2):
            raise self._refuse(
                f"tool {tool_name!r} handler must take (arguments) or (arguments, context)"
            )
        schema = parameters if parameters is not None else _EMPTY_PARAMETERS
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            raise self._refuse(f"tool {tool_name!r} parameters must be a JSON Schema object")
        self._staged.tools.append(
            Tool(
                name=tool_name,
                description=(description or inspect.getdoc(handler) or "").strip(),
                parameters=dict(schema),
                handler=handler,
                plugin_id=self.id,
                wants_context=len(positional) == 2,
            )
        )
        return handler

    def on(
        self,
        hook: str,
        handler: Callable[..., Any],
        *,
        priority: int = 0,
        timeout: float | None = None,
    ) -> None:
        """Register a hook handler; higher priority runs first. See ``clawgate.plugins.hooks``."""
        self._open("on")
        self._staged.hooks.append(
            make_handler(self.id, hook, handler, priority=priority, timeout_s=timeout,
                         order=self._next_order())
        )

    def register_provider(self, provider: Provider) -> None:
        """Register a model provider; its id must be listed in the manifest's ``providers``."""
        self._open("register_provider")
        pid = getattr(provider, "id", None)
        if not isinstance(pid, str) or not pid:
            raise self._refuse("provider has no string 'id'")
        if pid.lower() not in {p.lower() for p in self._manifest.providers}:
            raise self._refuse(
                f"provider {pid!r} is not declared in the manifest's providers "
                f"{list(self._manifest.providers)}"
            )
        for attr in ("stream", "models", "aclose"):
            if not callable(getattr(provider, attr, None)):
                raise self._refuse(f"provider {pid!r} has no {attr}() method")
        self._staged.providers.append(provider)

    def register_channel(self, channel: Any) -> None:
        """Register a chat channel (``clawgate.Channel``); its id must be listed in the
        manifest's ``channels``."""
        self._open("register_channel")
        cid = getattr(channel, "id", None)
        if not isinstance(cid, str) or cid not in self._manifest.channels:
            raise self._refuse(
                f"channel {cid!r} is not declared in the manifest's channels "
                f"{list(self._manifest.channels)}"
            )
        for attr in ("monitor", "send", "edit", "typing", "probe"):
            if not inspect.iscoroutinefunction(getattr(channel, attr, None)):
                raise self._refuse(f"channel {cid!r}: {attr}() must be an async method")
        if not isinstance(getattr(channel, "capabilities", None), Capabilities):
            raise self._refuse(f"channel {cid!r}: capabilities must be a clawgate.Capabilities")
        schema = getattr(channel, "config_schema", None)
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            raise self._refuse(f"channel {cid!r}: config_schema must be a JSON Schema object")
        secrets = getattr(channel, "secrets", ())
        if not isinstance(secrets, tuple) or not all(isinstance(n, str) for n in secrets):
            raise self._refuse(f"channel {cid!r}: secrets must be a tuple of key names")
        self._staged.channels.append(channel)

    def register_method(
        self, name: str, handler: Callable[..., Any], *, scope: str = "operator.write"
    ) -> None:
        """Register a WebSocket RPC method ``handler(params, context)``, sync or async."""
        self._open("register_method")
        if not _METHOD_NAME.match(name):
            raise self._refuse(f"method name {name!r} is not a dotted identifier")
        if scope not in _SCOPES:
            raise self._refuse(f"method {name!r}: unknown scope {scope!r}")
        if not callable(handler):
            raise self._refuse(f"method {name!r} handler is not callable")
        self._staged.methods.append(Method(name, handler, scope, self.id))

    def register_route(
        self,
        path: str,
        handler: Callable[..., Any],
        *,
        methods: tuple[str, ...] = ("GET",),
        auth: Literal["gateway", "none"] = "gateway",
    ) -> None:
        """Register an HTTP route served by the gateway (a Starlette endpoint)."""
        self._open("register_route")
        if not path.startswith("/") or " " in path:
            raise self._refuse(f"route path {path!r} must start with '/'")
        if auth not in ("gateway", "none"):
            raise self._refuse(f"route {path!r}: auth must be 'gateway' or 'none'")
        verbs = tuple(m.upper() for m in methods)
        self._staged.routes.append(Route(path, handler, verbs, auth, self.id))

    def register_service(
        self,
        service_id: str,
        start: Callable[..., Any],
        stop: Callable[..., Any] | None = None,
    ) -> None:
        """Register a background service started with the generation and stopped with it."""
        self._open("register_service")
        if not callable(start) or (stop is not None and not callable(stop)):
            raise self._refuse(f"service {service_id!r}: start/stop must be callable")
        self._staged.services.append(Service(service_id, start, stop, self.id))

    def register_command(
        self, name: str, handler: Callable[..., Any], *, description: str = ""
    ) -> None:
        """Register a slash command (``/name args``) answered without the model."""
        self._open("register_command")
        if not _TOOL_NAME.match(name):
            raise self._refuse(f"command name {name!r} must match {_TOOL_NAME.pattern}")
        self._staged.commands.append(Command(name, description, handler, self.id))
