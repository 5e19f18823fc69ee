"""Lockout rules through a real server: the client address is the socket peer unless a trusted
proxy forwards it, only wrong credentials count, the right token is never refused, and the
lockout grows exponentially (issue 7, items 4 and 5)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from clawgate.gateway.auth import FailureLimiter
from tests.support.gateway_server import TOKEN, serve_gateway
from tests.support.ws_client import WsClient, connect_params

pytestmark = pytest.mark.anyio


async def test_forwarded_for_is_ignored_without_trusted_proxies(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path) as server, httpx.AsyncClient(
            base_url=server.url, timeout=10) as http:
        statuses = []
        for n in range(40):  # a rotating header must not buy fresh addresses
            r = await http.get("/v1/models", headers={
                "Authorization": f"Bearer guess-{n}", "X-Forwarded-For": f"198.51.100.{n}"})
            statuses.append(r.status_code)
        assert statuses[:10] == [401] * 10
        assert set(statuses[10:]) == {429}
        # ...and a forged header cannot escape the lockout, nor lock anyone else out.
        r = await http.get("/v1/models", headers={"Authorization": "Bearer guess-x",
                                                  "X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 429
        r = await http.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200


async def test_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    config = {"gateway": {"trusted_proxies": ["127.0.0.1"]}}
    async with serve_gateway(tmp_path, config) as server, httpx.AsyncClient(
            base_url=server.url, timeout=10) as http:
        for n in range(10):
            r = await http.get("/v1/models", headers={
                "Authorization": f"Bearer guess-{n}", "X-Forwarded-For": "198.51.100.7"})
            assert r.status_code == 401
        locked = await http.get("/v1/models", headers={
            "Authorization": "Bearer guess-10", "X-Forwarded-For": "198.51.100.7"})
        other = await http.get("/v1/models", headers={
            "Authorization": "Bearer guess-11", "X-Forwarded-For": "198.51.100.8"})
        assert (locked.status_code, other.status_code) == (429, 401)


async def test_missing_credentials_never_lock_anyone_out(tmp_path: Path) -> None:
    async with serve_gateway(tmp_path) as server, httpx.AsyncClient(
            base_url=server.url, timeout=10) as http:
        for _ in range(30):  # an <img src=".../metrics"> on any web page
            assert (await http.get("/metrics")).status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert (await http.get("/metrics", headers=good)).status_code == 200
        # One stale token retried is one guess, not many.
        for _ in range(30):
            r = await http.get("/metrics", headers={"Authorization": "Bearer stale"})
            assert r.status_code == 401
        # Ten different wrong tokens lock the address, but never the right token.
        for n in range(10):
            await http.get("/metrics", headers={"Authorization": f"Bearer guess-{n}"})
        assert (await http.get("/metrics", headers={
            "Authorization": "Bearer guess-11"})).status_code == 429
        assert (await http.get("/metrics", headers=good)).status_code == 200
        client = await WsClient.open(server)
        try:
            await client.challenge()
            assert (await client.connect(connect_params()))["ok"]
        finally:
            await client.ws.close()


def test_lockout_doubles_with_each_further_wrong_guess() -> None:
    now = [1000.0]
    limiter = FailureLimiter(max_attempts=3, base_lockout_s=1, max_lockout_s=8,
                             clock=lambda: now[0])
    for n in range(3):
        limiter.failed("a", f"guess-{n}")
    assert limiter.retry_after("a") == 1
    waits = []
    for n in range(3, 8):
        now[0] += limiter.retry_after("a")  # wait out the lockout, then guess again
        assert limiter.retry_after("a") == 0
        limiter.failed("a", f"guess-{n}")
        waits.append(limiter.retry_after("a"))
    assert waits == [2, 4, 8, 8, 8]
    assert limiter.retry_after("b") == 0
    limiter.succeeded("a")
    assert limiter.retry_after("a") == 0
