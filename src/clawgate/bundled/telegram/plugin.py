"""The Telegram channel: a bot reached over the Bot API, by our own ``getUpdates`` long poll
(default) or a webhook at ``/channels/telegram/<account>/webhook``. See ``channel.py`` and
docs/channels.md.

Besides the channel, the plugin registers ``/start`` — the first thing every Telegram client
sends to a bot. A sender the owner has not approved never reaches it (the core's pairing answers
with a code first); an approved one gets a short greeting.
"""

from __future__ import annotations

from clawgate import CommandContext, PluginApi

from .channel import TelegramChannel

GREETING = "Hi! Send me a message and I'll answer. /help lists the commands."


def start(_args: str, _context: CommandContext) -> str:
    """``/start``: a greeting (the deep-link payload, if any, is ignored)."""
    return GREETING


def register(api: PluginApi) -> None:
    channel = TelegramChannel()
    api.register_channel(channel)
    api.register_service("telegram-bots", channel.open, channel.close)
    api.register_command("start", start, description="Start talking with the bot")
