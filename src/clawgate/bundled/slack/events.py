"""HTTP mode: Slack's Events API (and slash commands) calling the gateway.

Routes (the core serves ``/channels/slack/<account>/<path>`` and hands the request here):

- ``POST .../events`` — the app's Event Subscriptions Request URL. ``url_verification``
  answers its ``challenge``; ``event_callback`` is received (durably) and then answered 200.
  Slack retries a delivery that got no 2xx within 3 s (``X-Slack-Retry-Num``); a retry of
  an admitted message is a duplicate for the core's dedupe and is answered 200 as well.
- ``POST .../commands`` — the Request URL of the ``/clawd`` slash command (form-encoded).

Every request must carry Slack's v0 signature: ``X-Slack-Signature: v0=<hex HMAC-SHA256(
signing_secret, "v0:<X-Slack-Request-Timestamp>:<raw body>")>`` (checked by slack-sdk's
``SignatureVerifier``), with a timestamp within 5 minutes; otherwise 401 and nothing happens.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson
from slack_sdk.signature import SignatureVerifier

from clawgate import WebhookRequest, WebhookResponse

SKEW_S = 300
OnEvent = Callable[[Mapping[str, Any]], Awaitable[None]]
OnCommand = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any] | None]]


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message}}


def check(secret: str, request: WebhookRequest, *, now: float | None = None) -> str | None:
    """None when the request is signed with ``secret`` within the window, else why not."""
    stamp = request.headers.get("x-slack-request-timestamp", "")
    signature = request.headers.get("x-slack-signature", "")
    if not stamp or not signature:
        return "missing X-Slack-Request-Timestamp or X-Slack-Signature"
    try:
        sent = int(stamp)
    except ValueError:
        return "X-Slack-Request-Timestamp must be unix seconds"
    if abs((time.time() if now is None else now) - sent) > SKEW_S:
        return "X-Slack-Request-Timestamp is more than 5 minutes off"
    if not SignatureVerifier(secret).is_valid(request.body, stamp, signature):
        return "bad X-Slack-Signature"
    return None


async def serve(secret: str, request: WebhookRequest, on_event: OnEvent,
                on_command: OnCommand) -> WebhookResponse:
    """Answer one request of Slack's (see the module docstring)."""
    if request.path not in ("events", "commands"):
        return WebhookResponse(404, _error(f"no route {request.path!r}: use events or "
                                           "commands"))
    if request.method != "POST":
        return WebhookResponse(405, _error("use POST"), {"Allow": "POST"})
    refused = check(secret, request)
    if refused is not None:
        return WebhookResponse(401, _error(refused))
    if request.path == "commands":
        form = dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("ssl_check"):
            return WebhookResponse(200, {"ok": True})
        return WebhookResponse(200, await on_command(form) or {"ok": True})
    try:
        payload = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return WebhookResponse(400, _error("body is not valid JSON"))
    if not isinstance(payload, dict):
        return WebhookResponse(400, _error("body must be a JSON object"))
    kind = payload.get("type")
    if kind == "url_verification":
        challenge = payload.get("challenge")
        if not isinstance(challenge, str):
            return WebhookResponse(400, _error("url_verification without a challenge"))
        return WebhookResponse(200, {"challenge": challenge})
    if kind == "event_callback":
        await on_event(payload)  # durable (or refused for good) when it returns
    return WebhookResponse(200, {"ok": True})
