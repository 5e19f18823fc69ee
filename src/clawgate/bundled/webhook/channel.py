"""The webhook channel's mechanics: signature checks and JSON in, authenticated POSTs out.

Inbound body: ``{"id": str (unique per message), "from": str, "text": str, "chat_type":
"direct"|"group" (default direct), "conversation": str? (default: from), "thread": str?,
"mentioned": bool?, "name": str?}``. Answers: 202 ``{"accepted": true, "session_key",
"outcome"}`` once the message is durably admitted (or answered: a command, a pairing code);
200 ``{"duplicate": true}`` for an id seen before; 401 for a missing or bad signature or a
timestamp more than 5 minutes off; 400 naming the bad field; 413 over the body limit (the
core's).

Outbound body: ``{"intent_id", "to", "conversation", "thread", "text", "reply_to", "part",
"parts", "origin", "attachment"?}`` (a file of the reply: name, mime_type, kind, url,
data_base64); a 2xx (optionally ``{"id": "<platform id>"}``) is the receipt; 5xx, 429
(with ``Retry-After``) and timeouts are retried; any other 4xx fails the delivery.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Any

import orjson

from clawgate import (
    Account,
    Capabilities,
    ChannelContext,
    ChannelSendError,
    DeliveryReceipt,
    InboundMessage,
    InvalidRequest,
    OutboundMessage,
    Target,
    WebhookRequest,
    WebhookResponse,
)

if TYPE_CHECKING:
    import httpx

SKEW_S = 300
CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["inbound_secret"],
    "properties": {
        "inbound_secret": {"type": "string", "minLength": 16,
                           "description": "Shared secret of the inbound signature."},
        "outbound_url": {"type": "string", "pattern": "^https?://",
                         "description": "Where replies are POSTed (none: inbound only)."},
        "outbound_token": {"type": "string", "minLength": 1,
                           "description": "Bearer token sent with every reply."},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 300, "default": 10},
    },
}
FIELDS = ("id", "from", "text", "chat_type", "conversation", "thread", "mentioned", "name",
          "origin")


class WebhookChannel:
    """``clawgate.Channel`` for plain HTTP."""

    id = "webhook"
    label = "Webhook"
    capabilities = Capabilities(chat_types=("direct", "group"), text_limit=4000, media=True)
    config_schema = CONFIG_SCHEMA
    secrets = ("inbound_secret", "outbound_token")

    def __init__(self) -> None:
        self._http: httpx.AsyncClient | None = None
        self._open = False

    # -- lifecycle (the plugin's service) -----------------------------------------------------

    async def open(self, _context: object) -> None:
        # The HTTP client (and httpx itself, ~5 MB) comes with the first reply to send: a
        # gateway whose webhook accounts only receive, or that has none, never loads it.
        self._open = True

    async def close(self, _context: object) -> None:
        self._open = False
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if not self._open:
            raise ChannelSendError("the webhook channel is not started")
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(follow_redirects=False)
        return self._http

    # -- the Channel protocol ------------------------------------------------------------------

    async def monitor(self, account: Account, context: ChannelContext) -> None:
        """Nothing to poll: messages arrive on the webhook route. Reports the account up."""
        context.status(connected=True, mode="webhook",
                       webhookPath=f"/channels/webhook/{account.account_id}/inbound",
                       outbound=bool(account.config.get("outbound_url")))
        await asyncio.Event().wait()  # until the gateway stops the account

    async def webhook(self, account: Account, request: WebhookRequest,
                      context: ChannelContext) -> WebhookResponse:
        if request.path != "inbound":
            return WebhookResponse(404, _error(f"no route {request.path!r}; POST to inbound"))
        if request.method != "POST":
            return WebhookResponse(405, _error("use POST"), {"Allow": "POST"})
        refused = _check_signature(str(account.config["inbound_secret"]), request)
        if refused is not None:
            return WebhookResponse(401, _error(refused))
        try:
            message = _message(request.body)
        except InvalidRequest as exc:
            return WebhookResponse(400, _error(str(exc)))
        received = await context.receive(message)
        if received.outcome == "duplicate":
            return WebhookResponse(200, {"duplicate": True})
        body: dict[str, Any] = {"accepted": True, "outcome": received.outcome}
        if received.session_key:
            body["session_key"] = received.session_key
        return WebhookResponse(202, body)

    async def send(self, account: Account, message: OutboundMessage) -> DeliveryReceipt:
        url = account.config.get("outbound_url")
        if not url:
            raise ChannelSendError("this webhook account has no outbound_url", retryable=False)
        http = self._client()
        intent_id = message.idempotency_key.rsplit(":", 1)[0]
        headers = {"Idempotency-Key": message.idempotency_key,
                   "Content-Type": "application/json"}
        token = account.config.get("outbound_token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        target = message.target
        payload: dict[str, Any] = {
            "intent_id": intent_id, "to": target.to, "conversation": target.to,
            "thread": target.thread, "text": message.text, "reply_to": target.reply_to,
            "part": message.part, "parts": message.parts,
            "origin": "clawgate" if message.origin == "gateway" else "reply"}
        if message.media is not None:  # a file of the reply, inline (capped by media_max_mb)
            media = message.media
            payload["attachment"] = {"name": media.name, "mime_type": media.mime_type,
                                     "kind": media.kind, "url": media.url,
                                     "data_base64": base64.b64encode(media.data).decode()}
        import httpx

        try:
            response = await http.post(str(url), content=orjson.dumps(payload), headers=headers,
                                       timeout=float(account.config["timeout_s"]))
        except httpx.TimeoutException as exc:
            raise ChannelSendError(f"POST {url} timed out: {exc}") from None
        except httpx.HTTPError as exc:
            raise ChannelSendError(f"POST {url} failed: {exc}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise ChannelSendError(f"POST {url} answered {response.status_code}",
                                   retry_after_s=_retry_after(response))
        if not 200 <= response.status_code < 300:
            raise ChannelSendError(f"POST {url} answered {response.status_code}: "
                                   f"{response.text[:200]}", retryable=False)
        platform_id = _receipt_id(response)
        return DeliveryReceipt((platform_id,) if platform_id else ())

    async def edit(self, account: Account, target: Target, message_id: str, text: str) -> None:
        raise ChannelSendError("the webhook channel cannot edit messages", retryable=False)

    async def typing(self, account: Account, target: Target) -> None:
        return None  # nothing to show on a webhook

    async def probe(self, account: Account) -> dict[str, Any]:
        url = account.config.get("outbound_url")
        return {"ok": True, "outbound": bool(url), "inbound": "signed POST"}


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message}}


def _check_signature(secret: str, request: WebhookRequest) -> str | None:
    """None when the request is signed with ``secret`` within the time window, else why not."""
    stamp = request.headers.get("x-clawgate-timestamp", "")
    signature = request.headers.get("x-clawgate-signature", "")
    if not stamp or not signature:
        return "missing X-Clawgate-Timestamp or X-Clawgate-Signature"
    try:
        sent = int(stamp)
    except ValueError:
        return "X-Clawgate-Timestamp must be unix seconds"
    if abs(time.time() - sent) > SKEW_S:
        return "X-Clawgate-Timestamp is more than 5 minutes off"
    expected = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + request.body,
                                    hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        return "bad X-Clawgate-Signature"
    return None


def _message(body: bytes) -> InboundMessage:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}")

    def text(name: str, *, required: bool = False, limit: int = 256) -> str | None:
        value = data.get(name)
        if value is None:
            if required:
                raise InvalidRequest(f"`{name}` is required")
            return None
        if not isinstance(value, str) or (required and not value.strip()):
            raise InvalidRequest(f"`{name}` must be a non-empty string")
        if len(value) > limit:
            raise InvalidRequest(f"`{name}` is longer than {limit} characters")
        return value

    message_id = text("id", required=True)
    sender = text("from", required=True)
    body_text = text("text", required=True, limit=100_000)
    chat_type = data.get("chat_type", "direct")
    if chat_type not in ("direct", "group"):
        raise InvalidRequest("`chat_type` must be \"direct\" or \"group\"")
    conversation = text("conversation")
    if chat_type == "group" and not conversation:
        raise InvalidRequest("`conversation` is required for a group message")
    mentioned = data.get("mentioned", False)
    if not isinstance(mentioned, bool):
        raise InvalidRequest("`mentioned` must be a boolean")
    assert message_id is not None and sender is not None and body_text is not None
    return InboundMessage(message_id, sender, body_text, conversation or sender,
                          chat_type=chat_type, thread=text("thread"), mentioned=mentioned,
                          sender_name=text("name"), origin=text("origin"))


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


def _receipt_id(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    platform_id = data.get("id") if isinstance(data, dict) else None
    return str(platform_id) if platform_id is not None else None
