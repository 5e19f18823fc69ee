"""A webhook receiver for the generic ``webhook`` channel's outbound POSTs, and the signer for its
inbound requests.

    async with WebhookReceiver() as hook:
        hook.fail_status("POST /hook", 503, times=2)        # or rate_limit(..., retry_after=1)
        ... the gateway POSTs replies to f"{hook.url}/hook" ...
        await hook.wait_for(lambda c: c.name == "POST /hook" and hook.answered(c) == 200)
        assert hook.duplicates() == {}                      # no key delivered twice

Every POST to any path is recorded (``Call.name`` is ``"POST <path>"``; headers include
``Authorization`` and ``Idempotency-Key``; the body is parsed JSON). It answers ``status``
(default 200, JSON ``{"ok": true}``) unless a scripted fault says otherwise: ``fail_status``
(5xx, or 400), ``rate_limit`` (429 with ``Retry-After``), ``hang`` (slow: no answer for a
while), or ``respond_slowly(seconds)`` for a delay that still ends in success; a
``responder`` (a function of the call returning a response, or None for the default) can answer
like a real app would. Per
``Idempotency-Key`` it counts the successful (2xx) deliveries: ``duplicates()`` lists the keys
delivered successfully more than once.

Inbound: :func:`sign` computes the ``X-Clawgate-Timestamp`` / ``X-Clawgate-Signature`` headers
(``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>``) the gateway checks.
"""

from __future__ import annotations

import hashlib
import hmac
import http
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tests.support.fakes.harness import Call, FakeServer, Fault, json_response

__all__ = ["WebhookReceiver", "sign", "signature"]

MAX_KEYS = 100_000


def signature(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def sign(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The headers that sign ``body`` for the gateway's inbound webhook route."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {"X-Clawgate-Timestamp": str(ts),
            "X-Clawgate-Signature": signature(secret, ts, body),
            "Content-Type": "application/json"}


class WebhookReceiver(FakeServer):
    """Records POSTs and answers them as scripted."""

    def __init__(self, *, status: int = 200) -> None:
        super().__init__()
        self.status = status
        self.delay = 0.0
        self.responder: Callable[[Call], Response | None] | None = None
        self._answers: OrderedDict[int, int] = OrderedDict()
        self._delivered: Counter[str] = Counter()

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._receive, methods=["POST", "PUT"])]

    def fault_response(self, fault: Fault, call: Call) -> Response:
        if fault.kind == "rate_limit":
            seconds = max(0, round(fault.retry_after))
            return json_response({"error": "rate_limited", "retry_after": fault.retry_after},
                                 status=429, headers={"Retry-After": str(seconds)})
        status = fault.status
        message = fault.message or http.HTTPStatus(status).phrase
        return json_response({"error": message, "code": fault.code}, status=status)

    def respond_slowly(self, seconds: float) -> None:
        """Delay every later answer by ``seconds`` (the answer is still a success)."""
        self.delay = seconds

    async def _receive(self, request: Request) -> Response:
        name = f"{request.method} /{request.path_params['path']}"
        call = await self.record_request(request, name)
        response = await self.apply_fault(call)
        if response is None and self.responder is not None:
            response = self.responder(call)
        if response is None:
            if self.delay and await self.pause(self.delay):
                response = json_response({"error": "shutting down"}, status=503)
            else:
                response = json_response({"ok": True}, status=self.status)
        self._answers[call.seq] = response.status_code
        while len(self._answers) > MAX_KEYS:
            self._answers.popitem(last=False)
        key = call.headers.get("idempotency-key")
        if key and 200 <= response.status_code < 300:
            if key in self._delivered or len(self._delivered) < MAX_KEYS:
                self._delivered[key] += 1
        self.changed()
        return response

    def answered(self, call: Call) -> int | None:
        """The status the receiver answered ``call`` with (None while it is pending)."""
        return self._answers.get(call.seq)

    def delivered(self, key: str) -> int:
        """How many times the POSTs with ``Idempotency-Key: key`` were answered 2xx."""
        return self._delivered[key]

    def duplicates(self) -> dict[str, int]:
        """Idempotency keys delivered successfully more than once, with their counts."""
        return {key: n for key, n in self._delivered.items() if n > 1}

    def bodies(self, path: str | None = None) -> list[object]:
        """Parsed bodies of the successful POSTs (to ``path``, if given), oldest first."""
        return [call.body for call in self.calls
                if (path is None or call.path == path)
                and (self._answers.get(call.seq) or 0) // 100 == 2]

    def reset(self) -> None:
        super().reset()
        self._answers.clear()
        self._delivered.clear()
        self.delay = 0.0

    @staticmethod
    def json(call: Call) -> object:
        """The body of ``call`` decoded as JSON (bytes bodies too)."""
        return orjson.loads(call.body) if isinstance(call.body, bytes) else call.body
