"""The Discord channel: a bot account on Discord's Gateway (receiving) and REST API (sending),
through hikari. hikari is imported only when an account starts or sends, so a gateway without a
``[channels.discord]`` account never loads it. See ``channel.py``.
"""

from __future__ import annotations

from clawgate import PluginApi

from .channel import DiscordChannel


def register(api: PluginApi) -> None:
    channel = DiscordChannel()
    api.register_channel(channel)
    api.register_service("discord-clients", channel.open, channel.close)
