"""clawgate: a self-hosted, multi-channel AI gateway.

This module is the plugin author's API: everything a plugin needs to import, and nothing else.
"""

from __future__ import annotations

from clawgate.errors import (
    ClawgateError,
    PluginError,
    ProviderError,
    RegistrationError,
    ToolError,
)
from clawgate.plugins.api import PluginApi
from clawgate.plugins.hooks import SPECS as HOOK_SPECS
from clawgate.plugins.hooks import HookSpec
from clawgate.plugins.registry import Tool, ToolContext
from clawgate.providers.base import (
    Finish,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    Provider,
    TextDelta,
    ToolCall,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "HOOK_SPECS",
    "ClawgateError",
    "Finish",
    "HookSpec",
    "ModelEvent",
    "ModelInfo",
    "ModelRequest",
    "PluginApi",
    "PluginError",
    "Provider",
    "ProviderError",
    "RegistrationError",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "Usage",
    "__version__",
]
