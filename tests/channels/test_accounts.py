"""Channel accounts from config: several accounts, secrets by environment variable, and bad
config that disables one account with a clear reason instead of taking the gateway down."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.support import SECRET, message, post, texts
from tests.support.fakes.webhook import WebhookReceiver
from tests.support.gateway_server import serve_gateway
from tests.support.poll import until
from tests.support.ws_client import open_client

pytestmark = pytest.mark.anyio


async def test_accounts_secrets_and_broken_config(tmp_path: Path) -> None:
    async with WebhookReceiver() as hook:
        config = {"channels": {
            "webhook": {"outbound_url": f"{hook.url}/hook", "dm_policy": "open",
                        "allow_from": ["*"], "accounts": {
                            "ops": {"inbound_secret_env": "OPS_SECRET"},
                            "typo": {"inbound_secret": SECRET, "dm_polcy": "open"},
                            "short": {"inbound_secret": "short"},
                            "unset": {"inbound_secret_env": "NOT_SET_ANYWHERE"},
                            "both": {"inbound_secret": SECRET, "inbound_secret_env": "X"},
                            "off": {"inbound_secret": SECRET, "enabled": False}}},
            "nosuch": {"token": "x"}}}
        async with serve_gateway(tmp_path, config, env={"OPS_SECRET": SECRET}) as server, \
                server.client(token=None) as http, open_client(server) as ws:
            ok = await post(http, message("via ops"), account="ops")
            assert ok.status_code == 202, ok.text
            await until(lambda: texts(hook) == ["via ops"])
            assert (await post(http, message("x"), account="off")).status_code == 404
            status = await ws.ok("channels.status")
            rows = {r["accountId"]: r for r in status["channelAccounts"]["webhook"]}
            assert rows["ops"]["configured"] and rows["ops"]["connected"]
            assert "unknown" not in str(rows["ops"].get("lastError", ""))
            assert "dm_polcy" in rows["typo"]["lastError"]
            assert "inbound_secret" in rows["short"]["lastError"]
            assert "NOT_SET_ANYWHERE is not set" in rows["unset"]["lastError"]
            assert "not both" in rows["both"]["lastError"]
            assert rows["off"]["enabled"] is False and rows["off"]["running"] is False
            assert status["channels"]["nosuch"]["error"] == \
                "no loaded plugin provides channel 'nosuch'"
            config_out = await ws.ok("config.get")
            assert SECRET not in str(config_out)  # secrets never shown
