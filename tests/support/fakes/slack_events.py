"""Slack's Events API over HTTP, from Slack's side: signed POSTs of ``event_callback`` payloads to
an app's Request URL, the ``url_verification`` challenge, and Slack's retries.

Signing follows Slack's v0 scheme: ``X-Slack-Request-Timestamp: <unix seconds>`` and
``X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:<timestamp>:<raw body>")>``. A
delivery that is not answered 2xx within ``timeout`` seconds (Slack allows 3) is retried up to
three times with ``X-Slack-Retry-Num`` (1, 2, 3) and ``X-Slack-Retry-Reason`` (``http_timeout``,
``http_error``, ``connection_failed``), unless the app answers with ``X-Slack-No-Retry: 1``.
Slack spaces its retries by about a minute and five minutes; the sender's ``retry_delays``
default to a few milliseconds so tests stay fast.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

if TYPE_CHECKING:
    from tests.support.fakes.slack import SlackFake

__all__ = ["Attempt", "EventsSender", "event_callback", "sign", "signature"]


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """``v0=<hex HMAC-SHA256(secret, "v0:<timestamp>:<body>")>``."""
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with a signed request body."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": signature(secret, ts, body),
            "Content-Type": "application/json"}


def event_callback(fake: SlackFake, event: dict[str, Any]) -> dict[str, Any]:
    """The Events API ``event_callback`` wrapper of ``event`` for ``fake``'s workspace."""
    return {
        "token": "fake-verification-token", "team_id": fake.team_id,
        "context_team_id": fake.team_id, "context_enterprise_id": None,
        "api_app_id": fake.app_id, "event": event, "type": "event_callback",
        "event_id": f"Ev{secrets.token_hex(5).upper()}",
        "event_time": int(float(event.get("event_ts") or time.time())),
        "authorizations": [{"enterprise_id": None, "team_id": fake.team_id,
                            "user_id": fake.bot_user_id, "is_bot": True,
                            "is_enterprise_install": False}],
        "is_ext_shared_channel": False,
        "event_context": f"4-{secrets.token_hex(12)}",
    }


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST of a delivery: its retry number, the answer's status (None: no answer) and
    body."""

    retry: int
    status: int | None
    body: bytes
    reason: str | None


class EventsSender:
    """Sends Events API requests the way Slack does (``fake.events``)."""

    def __init__(self, fake: SlackFake, *, retry_delays: tuple[float, ...] = (0.01, 0.02, 0.04),
                 timeout: float = 3.0) -> None:
        self.fake = fake
        self.retry_delays = retry_delays
        self.timeout = timeout

    def _secret(self, secret: str | None) -> str:
        return self.fake.signing_secret if secret is None else secret

    async def _post(self, client: httpx.AsyncClient, url: str, body: bytes, secret: str,
                    headers: dict[str, str]) -> tuple[int | None, bytes, httpx.Headers | None,
                                                      str | None]:
        try:
            answer = await client.post(url, content=body, headers={**sign(secret, body),
                                                                   **headers})
        except httpx.TimeoutException:
            return None, b"", None, "http_timeout"
        except httpx.HTTPError:
            return None, b"", None, "connection_failed"
        reason = None if 200 <= answer.status_code < 300 else "http_error"
        return answer.status_code, answer.content, answer.headers, reason

    async def verify_url(self, url: str, *, secret: str | None = None) -> bool:
        """Send the ``url_verification`` challenge; True when the app echoes it back (as plain
        text, ``{"challenge": ...}`` JSON, or form)."""
        challenge = secrets.token_urlsafe(24)
        body = orjson.dumps({"token": "fake-verification-token", "challenge": challenge,
                             "type": "url_verification"})
        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            status, answer, _, _ = await self._post(client, url, body, self._secret(secret), {})
        if status != 200:
            return False
        if answer.strip() == challenge.encode():
            return True
        try:
            decoded = orjson.loads(answer)
        except orjson.JSONDecodeError:
            return answer.decode("utf-8", "replace").strip() == f"challenge={challenge}"
        return isinstance(decoded, dict) and decoded.get("challenge") == challenge

    async def send(self, url: str, event: dict[str, Any], *, secret: str | None = None,
                   retries: int = 3) -> list[Attempt]:
        """POST ``event`` (wrapped in an ``event_callback``) to ``url``, retrying like Slack;
        returns every attempt, the first with ``retry`` 0."""
        return await self.send_payload(url, event_callback(self.fake, event), secret=secret,
                                       retries=retries)

    async def send_payload(self, url: str, payload: dict[str, Any], *,
                           secret: str | None = None, retries: int = 3) -> list[Attempt]:
        """POST a ready Events API payload (any ``type``) with Slack's retries."""
        body = orjson.dumps(payload)
        attempts: list[Attempt] = []
        async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
            headers: dict[str, str] = {}
            for retry in range(retries + 1):
                if retry:
                    delay = self.retry_delays[min(retry, len(self.retry_delays)) - 1]
                    if await self.fake.pause(delay):
                        break
                status, answer, answer_headers, reason = await self._post(
                    client, url, body, self._secret(secret), headers)
                attempts.append(Attempt(retry, status, answer, reason))
                if reason is None:
                    break
                if answer_headers is not None and answer_headers.get("x-slack-no-retry") == "1":
                    break
                headers = {"X-Slack-Retry-Num": str(retry + 1), "X-Slack-Retry-Reason": reason}
        return attempts
