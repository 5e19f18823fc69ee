"""The webhook receiver and the inbound signer, exercised with a real HTTP client (httpx)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from tests.support.fakes.webhook import WebhookReceiver, sign, signature

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as server:
        yield server


async def post(http: httpx.AsyncClient, hook: WebhookReceiver, key: str, text: str,
               read_s: float = 5.0) -> httpx.Response:
    return await http.post(f"{hook.url}/replies", json={"text": text}, timeout=read_s,
                           headers={"Authorization": "Bearer out-token", "Idempotency-Key": key})


async def test_records_posts_with_headers_and_body(hook: WebhookReceiver) -> None:
    async with httpx.AsyncClient(trust_env=False) as http:
        answer = await post(http, hook, "k1", "hello")
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    call = await hook.wait_for("POST /replies")
    assert call.headers["authorization"] == "Bearer out-token"
    assert call.headers["idempotency-key"] == "k1"
    assert call.body == {"text": "hello"} and orjson.loads(call.raw) == {"text": "hello"}
    assert hook.answered(call) == 200
    assert hook.bodies("/replies") == [{"text": "hello"}]


async def test_scripted_statuses_and_duplicate_detection(hook: WebhookReceiver) -> None:
    hook.fail_status("POST /replies", 503, times=2)
    hook.rate_limit("POST /replies", retry_after=7)
    hook.error("POST /replies", "bad_payload", "rejected", status=400)
    async with httpx.AsyncClient(trust_env=False) as http:
        statuses = []
        for _ in range(5):
            answer = await post(http, hook, "k1", "retry me")
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert answer.headers["Retry-After"] == "7"
        assert statuses == [503, 503, 429, 400, 200]
        assert hook.duplicates() == {}
        assert hook.delivered("k1") == 1
        await post(http, hook, "k1", "retry me")
        await post(http, hook, "k2", "other")
    assert hook.duplicates() == {"k1": 2}
    assert hook.delivered("k2") == 1
    assert hook.pending_faults == 0
    hook.reset()
    assert hook.duplicates() == {} and list(hook.calls) == []


async def test_hang_makes_the_client_time_out_and_slow_still_succeeds(
        hook: WebhookReceiver) -> None:
    hook.hang("POST /replies", seconds=5)
    async with httpx.AsyncClient(trust_env=False) as http:
        with pytest.raises(httpx.ReadTimeout):
            await post(http, hook, "k1", "slow", read_s=0.2)
        hook.respond_slowly(0.05)
        answer = await post(http, hook, "k1", "slow")
    assert answer.status_code == 200
    assert hook.delivered("k1") == 1  # the timed-out attempt was never a success


async def test_signer_matches_an_independent_hmac() -> None:
    body = orjson.dumps({"text": "inbound"})
    headers = sign("s3cret", body, timestamp=1_700_000_000)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers["X-Clawgate-Timestamp"] == "1700000000"
    assert headers["X-Clawgate-Signature"] == f"sha256={expected}"
    assert signature("s3cret", 1_700_000_000, body + b" ") != headers["X-Clawgate-Signature"]
    assert sign("other", body, timestamp=1_700_000_000)["X-Clawgate-Signature"] != \
        headers["X-Clawgate-Signature"]
