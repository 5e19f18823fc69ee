"""The Slack channel: Socket Mode (default) or the HTTP Events API in, the Web API out, through
slack-sdk. See ``channel.py``; the user's guide is docs/channels.md#the-slack-channel.

slack-sdk is imported only when a Slack account starts or sends: registering the channel costs
a gateway nothing.
"""

from __future__ import annotations

from clawgate import PluginApi

from .channel import SlackChannel


def register(api: PluginApi) -> None:
    channel = SlackChannel()
    api.register_channel(channel)
    api.register_service("slack-clients", channel.open, channel.close)
