"""clawgate: a self-hosted, multi-channel AI gateway.

This module is the plugin author's API: everything a plugin needs to import, and nothing else.
Bundled plugins import only from here, like any third-party plugin.
"""

from __future__ import annotations

from clawgate.errors import (
    ClawgateError,
    InvalidRequest,
    PluginError,
    ProviderError,
    ProviderErrorKind,
    RegistrationError,
    ToolError,
)
from clawgate.plugins.api import PluginApi
from clawgate.plugins.hooks import SPECS as HOOK_SPECS
from clawgate.plugins.hooks import HookSpec
from clawgate.plugins.registry import Tool, ToolContext
from clawgate.providers.base import (
    Finish,
    Message,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    Provider,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
    text_of,
)
from clawgate.sessions.keys import session_scope

__version__ = "0.1.0"

__all__ = [
    "HOOK_SPECS",
    "ClawgateError",
    "Finish",
    "HookSpec",
    "InvalidRequest",
    "Message",
    "ModelEvent",
    "ModelInfo",
    "ModelRequest",
    "PluginApi",
    "PluginError",
    "Provider",
    "ProviderError",
    "ProviderErrorKind",
    "RegistrationError",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "ToolSpec",
    "Usage",
    "__version__",
    "session_scope",
    "text_of",
]
