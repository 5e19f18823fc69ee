"""clawgate: a self-hosted, multi-channel AI gateway.

This module is the plugin author's API: everything a plugin needs to import, and nothing else.
Bundled plugins import only from here, like any third-party plugin.
"""

from __future__ import annotations

import gc

from clawgate import codecache

# Importing the API below creates ~100,000 objects (modules, classes, pydantic validators) that
# live as long as the process. With the cyclic collector running, it walks them again and again
# to find next to nothing (~90 collections, ~16 ms of a gateway's start-up); merely pausing it
# is worse, since the first collection after the pause walks all of them at once (~30 ms). So
# it is paused for these imports, then they are frozen (gc.freeze: moved out of every later
# collection; refcounting still frees what is dropped) and the collector is left as it was
# found. The cost: garbage cycles that exist at this moment are never collected (a few
# thousand small objects from the imports themselves).
_collecting = gc.isenabled()
gc.disable()
codecache.install()  # the dataclasses below compile from the cache of an earlier run

try:
    from clawgate.chat import (
        Account,
        Attachment,
        Capabilities,
        Channel,
        ChannelAuthError,
        ChannelContext,
        ChannelSendError,
        ChannelState,
        DeliveryReceipt,
        InboundMessage,
        OutboundMedia,
        OutboundMessage,
        Received,
        Target,
        WebhookRequest,
        WebhookResponse,
    )
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
    from clawgate.plugins.registry import (
        CommandContext,
        MethodContext,
        ServiceContext,
        Tool,
        ToolContext,
    )
    from clawgate.providers.base import (
        THINKING_LEVELS,
        AuthAware,
        Cost,
        Finish,
        InputKind,
        Message,
        ModelCost,
        ModelEvent,
        ModelInfo,
        ModelRequest,
        ProfileStatus,
        Provider,
        TextDelta,
        ThinkingLevel,
        ToolCall,
        ToolSpec,
        Usage,
        text_of,
    )
    from clawgate.providers.catalog import Catalog, parse_models
    from clawgate.providers.profiles import AuthProfiles, Credential, profile_credentials
    from clawgate.sessions.keys import session_scope
finally:
    gc.freeze()
    if _collecting:
        gc.enable()

__version__ = "0.1.0"

__all__ = [
    "HOOK_SPECS",
    "THINKING_LEVELS",
    "Account",
    "Attachment",
    "AuthAware",
    "AuthProfiles",
    "Capabilities",
    "Catalog",
    "Channel",
    "ChannelAuthError",
    "ChannelContext",
    "ChannelSendError",
    "ChannelState",
    "ClawgateError",
    "CommandContext",
    "Cost",
    "Credential",
    "DeliveryReceipt",
    "Finish",
    "HookSpec",
    "InboundMessage",
    "InputKind",
    "InvalidRequest",
    "Message",
    "MethodContext",
    "ModelCost",
    "ModelEvent",
    "ModelInfo",
    "ModelRequest",
    "OutboundMedia",
    "OutboundMessage",
    "PluginApi",
    "PluginError",
    "ProfileStatus",
    "Provider",
    "ProviderError",
    "ProviderErrorKind",
    "Received",
    "RegistrationError",
    "ServiceContext",
    "Target",
    "TextDelta",
    "ThinkingLevel",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "ToolSpec",
    "Usage",
    "WebhookRequest",
    "WebhookResponse",
    "__version__",
    "parse_models",
    "profile_credentials",
    "session_scope",
    "text_of",
]
