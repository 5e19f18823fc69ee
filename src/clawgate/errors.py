"""The exception tree of clawgate, and the one table every surface maps errors through.

Every error clawgate raises on purpose derives from :class:`ClawgateError` and carries the
context a reader needs (which plugin, which session, which method). :func:`kind_of` gives its
:class:`ErrorKind` — RPC error code, HTTP status and OpenAI error type — from
:data:`ERROR_TABLE`; the WebSocket, the HTTP API and the CLI all map errors through it::

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
    ├── QueueFullError           a session's queue (or the gateway's) is at its cap
    ├── ProviderError            a model provider failed (.provider, .kind, .status)
    ├── ToolError                a tool failed (.tool)
    ├── InvalidRequest           a request's parameters are wrong (.method)
    │   ├── NotFound             the request names something that does not exist
    │   ├── MethodNotAllowed     an HTTP method the route does not serve (.allow)
    │   ├── PayloadTooLarge      a body over the limit
    │   ├── UnsupportedMediaType a body that is not JSON
    │   └── RequestTimeout       a body that did not arrive in time
    ├── AuthError                missing or wrong credentials
    ├── Forbidden                authenticated or not, this caller may not do that
    ├── RateLimited              too many attempts; try again later (.retry_after_s)
    ├── Unavailable              not ready yet, shutting down, or the store cannot serve
    └── RpcError                 an error whose RPC code the raiser chose (.rpc_code, .details)

``reason`` (optional on every error) is the machine-readable code surfaces show beside the
message: OpenAI's ``error.code`` (``model_not_found``, ``store_unavailable``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ProviderErrorKind = Literal[
    "rate_limit", "timeout", "unavailable", "context_length", "refusal", "auth", "other"
]
RpcCode = Literal["NOT_LINKED", "NOT_PAIRED", "AGENT_TIMEOUT", "FORBIDDEN", "INVALID_REQUEST",
                  "UNAVAILABLE"]


class ClawgateError(Exception):
    """Root of every error clawgate raises on purpose."""

    reason: str | None = None

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message)


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
        super().__init__(f"plugin {plugin_id!r}: invalid config at {json_path}: {message}",
                         plugin_id=plugin_id)


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
    """A session's queue (or the gateway's bound on unfinished messages) is full and the drop
    policy refuses the new message."""

    reason = "queue_full"

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
    """A tool failed; the model sees the message as the tool result.

    Plugins raise it from a tool handler: ``raise ToolError("no such city")``. ``tool`` is
    filled in by the engine when the plugin leaves it out.
    """

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        self.tool = tool
        super().__init__(message)


class InvalidRequest(ClawgateError):
    """A request's parameters are wrong; the message names what was wrong."""

    def __init__(self, message: str, *, method: str | None = None,
                 reason: str | None = None) -> None:
        self.method = method
        super().__init__(message, reason=reason)


class NotFound(InvalidRequest):
    """The request names something (a model, an agent, a route) that does not exist."""

    reason = "not_found"


class MethodNotAllowed(InvalidRequest):
    """An HTTP method the route does not serve; ``allow`` lists the ones it does."""

    reason = "method_not_allowed"

    def __init__(self, message: str, *, allow: tuple[str, ...]) -> None:
        self.allow = allow
        super().__init__(message)


class PayloadTooLarge(InvalidRequest):
    """A request body over the configured limit."""

    reason = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    """A request body whose Content-Type is not JSON."""

    reason = "unsupported_media_type"


class RequestTimeout(InvalidRequest):
    """A request body did not arrive within the gateway's body timeout."""

    reason = "request_timeout"


class AuthError(ClawgateError):
    """Missing or wrong credentials."""

    reason = "unauthorized"


class Forbidden(ClawgateError):
    """The caller may not do this (a foreign browser origin, a missing scope)."""

    reason = "forbidden"


class RateLimited(ClawgateError):
    """Too many attempts (failed authentication, for one); retry after ``retry_after_s``."""

    reason = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class Unavailable(ClawgateError):
    """The gateway is not ready yet, is shutting down, or its store cannot serve."""


class RpcError(ClawgateError):
    """An error with an explicit RPC code (and OpenClaw ``details``) for one response."""

    def __init__(self, code: RpcCode, message: str, *, details: dict[str, Any] | None = None,
                 retryable: bool | None = None, retry_after_ms: int | None = None) -> None:
        self.rpc_code: RpcCode = code
        self.message = message
        self.details = details
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """How one class of error leaves every surface."""

    rpc: RpcCode  # the WebSocket error code
    status: int  # the HTTP status
    openai: str  # the OpenAI error body's ``type``


# One row per class; lookup walks the MRO, so a subclass without its own row inherits its
# parent's. A test checks that every class of the tree resolves to a row.
ERROR_TABLE: dict[type[ClawgateError], ErrorKind] = {
    ClawgateError: ErrorKind("UNAVAILABLE", 500, "api_error"),
    ConfigError: ErrorKind("INVALID_REQUEST", 400, "invalid_request_error"),
    PluginError: ErrorKind("UNAVAILABLE", 500, "api_error"),
    HookError: ErrorKind("FORBIDDEN", 403, "permission_error"),
    SessionError: ErrorKind("INVALID_REQUEST", 400, "invalid_request_error"),
    SessionNotFound: ErrorKind("INVALID_REQUEST", 404, "not_found_error"),
    QueueFullError: ErrorKind("UNAVAILABLE", 429, "rate_limit_error"),
    ProviderError: ErrorKind("UNAVAILABLE", 502, "api_error"),
    ToolError: ErrorKind("INVALID_REQUEST", 400, "invalid_request_error"),
    InvalidRequest: ErrorKind("INVALID_REQUEST", 400, "invalid_request_error"),
    NotFound: ErrorKind("INVALID_REQUEST", 404, "not_found_error"),
    MethodNotAllowed: ErrorKind("INVALID_REQUEST", 405, "invalid_request_error"),
    PayloadTooLarge: ErrorKind("INVALID_REQUEST", 413, "invalid_request_error"),
    UnsupportedMediaType: ErrorKind("INVALID_REQUEST", 415, "invalid_request_error"),
    RequestTimeout: ErrorKind("INVALID_REQUEST", 408, "invalid_request_error"),
    AuthError: ErrorKind("FORBIDDEN", 401, "authentication_error"),
    Forbidden: ErrorKind("FORBIDDEN", 403, "permission_error"),
    RateLimited: ErrorKind("UNAVAILABLE", 429, "rate_limit_error"),
    Unavailable: ErrorKind("UNAVAILABLE", 503, "api_error"),
    RpcError: ErrorKind("UNAVAILABLE", 500, "api_error"),
}
# An RpcError names its own code; its HTTP status and type follow from the code.
_BY_RPC_CODE: dict[str, ErrorKind] = {
    "INVALID_REQUEST": ERROR_TABLE[InvalidRequest],
    "FORBIDDEN": ErrorKind("FORBIDDEN", 403, "permission_error"),
    "UNAVAILABLE": ERROR_TABLE[Unavailable],
    "AGENT_TIMEOUT": ErrorKind("AGENT_TIMEOUT", 504, "api_error"),
    "NOT_LINKED": ErrorKind("NOT_LINKED", 409, "invalid_request_error"),
    "NOT_PAIRED": ErrorKind("NOT_PAIRED", 403, "permission_error"),
}


def kind_of(error: ClawgateError) -> ErrorKind:
    """The :class:`ErrorKind` of ``error``."""
    if isinstance(error, RpcError):
        return _BY_RPC_CODE[error.rpc_code]
    for cls in type(error).__mro__:
        row = ERROR_TABLE.get(cls)
        if row is not None:
            return row
    return ERROR_TABLE[ClawgateError]
