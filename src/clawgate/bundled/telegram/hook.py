"""Webhook mode: Telegram POSTs each update to ``/channels/telegram/<account>/webhook`` with the
secret token in ``X-Telegram-Bot-Api-Secret-Token``.

Answers: 200 ``{"ok": true, "outcome"}`` once the update is durable (a duplicate is 200 too,
``"outcome": "duplicate"``, and so is an update with nothing to receive, ``"skipped"``), so
Telegram forgets it; 401 for a missing or wrong secret (compared in
constant time); 400 for a body that is not an update; 404 for another path or an account in
polling mode; 405 for another method; 503 while the account is starting (Telegram retries).
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
import telegram

from clawgate import Account, ChannelContext, WebhookRequest, WebhookResponse

from .client import Bots
from .monitor import receive
from .normalize import Identity

SECRET_HEADER = "x-telegram-bot-api-secret-token"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> WebhookResponse:
    return WebhookResponse(status, {"ok": False, "description": message}, headers or {})


async def handle(account: Account, request: WebhookRequest, context: ChannelContext,
                 bots: Bots, identities: dict[str, Identity]) -> WebhookResponse:
    """Serve one webhook request (see the module docstring)."""
    if request.path != "webhook" or account.config.get("mode") != "webhook":
        return _error(404, f"no Telegram webhook at {request.path!r} for this account")
    if request.method != "POST":
        return _error(405, "use POST", {"Allow": "POST"})
    secret = str(account.config.get("webhook_secret") or "")
    given = request.headers.get(SECRET_HEADER, "")
    if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
        return _error(401, "missing or wrong X-Telegram-Bot-Api-Secret-Token")
    me = identities.get(account.account_id)
    if me is None:
        return _error(503, "the account is starting; try again", {"Retry-After": "1"})
    try:
        data: Any = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        return _error(400, f"body is not valid JSON: {exc}")
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
        return _error(400, "body is not a Telegram Update (no integer update_id)")
    bot = bots.get(account)
    try:
        update = telegram.Update.de_json(data, bot)
    except (TypeError, ValueError, KeyError) as exc:
        return _error(400, f"body is not a Telegram Update: {exc}")
    outcome = await receive(context, account, update, me)
    return WebhookResponse(200, {"ok": True, "outcome": outcome})
