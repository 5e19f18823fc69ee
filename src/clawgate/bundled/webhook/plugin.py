"""The webhook channel: any system can talk to an agent over two HTTP calls.

Inbound: ``POST /channels/webhook/<account>/inbound`` with a JSON message, signed with the
account's ``inbound_secret`` (``X-Clawgate-Signature: sha256=<hex HMAC-SHA256(secret,
"<timestamp>.<raw body>")>`` and ``X-Clawgate-Timestamp: <unix seconds>``). Outbound: each
reply part is ``POST <outbound_url>`` with ``Authorization: Bearer <outbound_token>`` and
``Idempotency-Key: <intent id>:<part>``. See ``channel.py``.
"""

from __future__ import annotations

from clawgate import PluginApi

from .channel import WebhookChannel


def register(api: PluginApi) -> None:
    channel = WebhookChannel()
    api.register_channel(channel)
    api.register_service("webhook-http", channel.open, channel.close)
