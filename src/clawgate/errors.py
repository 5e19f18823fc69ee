"""The exception tree of clawgate.

Every error clawgate raises on purpose derives from :class:`ClawgateError`, carries the context
a reader needs (which plugin, which session, which method), and maps to one RPC error code and
one HTTP status through :data:`ERROR_TABLE`::

    ClawgateError
    ├── ConfigError              config file or value is invalid (.path = dotted key)
    ├── PluginError              something about one plugin (.plugin_id)
    │   ├── ManifestError        clawgate.plugin.json is missing or invalid (.file, .field)
    │   ├── PluginConfigError    plugins.entries.<id>.config fails the schema (.json_path)
    │   ├── PluginLoadError      import or register() failed (.phase)
    │   └── RegistrationError    a registration call was refused (bad hook, closed api, ...)
    ├── HookError                a fail-closed hook handler failed or blocked (.hook)
    ├── SessionError             a session operation was refused (.session_key)
    │   ├── SessionKeyError      a session key does not follow the grammar
    │   └── SessionNotFound      no session under that key
    ├── QueueFullError           a session's queue is at its cap (.session_key)
    ├── ProviderError            a model provider failed (.provider, .kind, .status)
    ├── ToolError                a tool failed (.tool)
    ├── InvalidRequest           a request's parameters are wrong (.method)
    ├── AuthError                missing or wrong credentials
    └── Unavailable              not ready yet or shutting down
"""

from __future__ import annotations

from typing import Literal

ProviderErrorKind = Literal[
    "rate_limit", "timeout", "unavailable", "context_length", "refusal", "auth", "other"
]


class ClawgateError(Exception):
    """Root of every error clawgate raises on purpose."""


class ConfigError(ClawgateError):
    """The config file or one of its values is invalid; ``path`` is the dotted key."""

    def __init__(self, message: str, *, path: str = "", file: str | None = None) -> None:
        self.path = path
        self.file = file
        where = f"{file}: " if file else ""
        at = f"{path}: " if path else ""
        super().__init__(f"{where}{at}{message}")


class PluginError(ClawgateError):
    """An error that belongs to one plugin."""

    def __init__(self, message: str, *, plugin_id: str | None = None) -> None:
        self.plugin_id = plugin_id
        super().__init__(message)


class ManifestError(PluginError):
    """A plugin manifest is missing, unreadable or invalid."""

    def __init__(
        self, message: str, *, file: str, field: str = "", plugin_id: str | None = None
    ) -> None:
        self.file = file
        self.field = field
        at = f" (field {field!r})" if field else ""
        super().__init__(f"{file}{at}: {message}", plugin_id=plugin_id)


class PluginConfigError(PluginError):
    """``plugins.entries.<id>.config`` does not satisfy the manifest's configSchema."""

    def __init__(self, message: str, *, plugin_id: str, json_path: str) -> None:
        self.json_path = json_path
        super().__init__(f"invalid config at {json_path}: {message}", plugin_id=plugin_id)


class PluginLoadError(PluginError):
    """Importing a plugin or running its ``register()`` failed."""

    def __init__(self, message: str, *, plugin_id: str, phase: str) -> None:
        self.phase = phase
        super().__init__(message, plugin_id=plugin_id)


class RegistrationError(PluginError):
    """A registration call made by a plugin was refused."""


class HookError(ClawgateError):
    """A fail-closed hook handler raised, timed out or blocked."""

    def __init__(self, message: str, *, hook: str, plugin_id: str | None = None) -> None:
        self.hook = hook
        self.plugin_id = plugin_id
        super().__init__(message)


class SessionError(ClawgateError):
    """A session operation was refused."""

    def __init__(self, message: str, *, session_key: str | None = None) -> None:
        self.session_key = session_key
        super().__init__(message)


class SessionKeyError(SessionError):
    """A session key does not follow the grammar."""


class SessionNotFound(SessionError):
    """No session exists under the key."""


class QueueFullError(ClawgateError):
    """A session's queue is full and its drop policy refuses the new message."""

    def __init__(self, message: str, *, session_key: str) -> None:
        self.session_key = session_key
        super().__init__(message)


class ProviderError(ClawgateError):
    """A model provider call failed; ``kind`` says whether a fallback is worth trying."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: ProviderErrorKind = "other",
        status: int | None = None,
    ) -> None:
        self.provider = provider
        self.kind: ProviderErrorKind = kind
        self.status = status
        super().__init__(message)

    @property
    def failover(self) -> bool:
        """True when another model may succeed where this one failed."""
        return self.kind in ("rate_limit", "timeout", "unavailable") or (
            self.status is not None and self.status >= 500
        )


class ToolError(ClawgateError):
    """A tool failed; the model sees the message as the tool result."""

    def __init__(self, message: str, *, tool: str) -> None:
        self.tool = tool
        super().__init__(message)


class InvalidRequest(ClawgateError):
    """A request's parameters are wrong; the message names what was wrong."""

    def __init__(self, message: str, *, method: str | None = None) -> None:
        self.method = method
        super().__init__(message)


class AuthError(ClawgateError):
    """Missing or wrong credentials."""


class Unavailable(ClawgateError):
    """The gateway is not ready yet, or is shutting down."""


# One table maps every error class to (RPC error code, HTTP status). Lookup walks the MRO, so a
# subclass without its own row inherits its parent's.
ERROR_TABLE: dict[type[ClawgateError], tuple[str, int]] = {
    ClawgateError: ("UNAVAILABLE", 500),
    ConfigError: ("INVALID_REQUEST", 400),
    PluginError: ("UNAVAILABLE", 500),
    HookError: ("FORBIDDEN", 403),
    SessionError: ("INVALID_REQUEST", 400),
    SessionNotFound: ("INVALID_REQUEST", 404),
    QueueFullError: ("UNAVAILABLE", 429),
    ProviderError: ("UNAVAILABLE", 502),
    ToolError: ("INVALID_REQUEST", 400),
    InvalidRequest: ("INVALID_REQUEST", 400),
    AuthError: ("FORBIDDEN", 401),
    Unavailable: ("UNAVAILABLE", 503),
}


def classify(error: ClawgateError) -> tuple[str, int]:
    """Return the (RPC code, HTTP status) pair for ``error``."""
    for cls in type(error).__mro__:
        row = ERROR_TABLE.get(cls)
        if row is not None:
            return row
    return ERROR_TABLE[ClawgateError]
