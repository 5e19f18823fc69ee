"""The Control UI in a real browser: Debian's Chromium driven by Playwright, against a real
``clawgate gateway`` process on 127.0.0.1.

One gateway and one browser per test module (the tests of a module are independent of each
other's sessions); every test gets a fresh browser context (empty localStorage). Screenshots go
to ``tests/ui/artifacts/`` (ignored by git), or ``CLAWGATE_UI_ARTIFACTS``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.support.fakes.webhook import sign

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]
TOKEN = "ui-test-token-0123456789"
SECRET = "webhook-secret-for-ui-tests"
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CLAWGATE = str(Path(sys.executable).with_name("clawgate"))
ARTIFACTS = Path(os.environ.get("CLAWGATE_UI_ARTIFACTS")
                 or Path(__file__).resolve().parent / "artifacts")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_toml(state: Path) -> str:
    gate = state / "gate"
    gate.mkdir(parents=True, exist_ok=True)
    paths = [str(FIXTURES / "engine" / "engine_tools"),
             str(FIXTURES / "plugins" / "raises_at_import")]
    return f"""
[[agents]]
id = "main"
default = true

[[agents]]
id = "slow"
name = "Gated"
model = {{ primary = "gate/gate" }}

[plugins]
load_paths = {orjson.dumps(paths).decode()}

[plugins.entries.engine_tools]
enabled = true
config = {{ gate_dir = {orjson.dumps(str(gate)).decode()} }}

[plugins.entries.echo.config]
chunk_chars = 3

[channels.webhook]
inbound_secret = "{SECRET}"
outbound_url = "http://127.0.0.1:9/unreachable"
dm_policy = "pairing"
allow_from = []

[delivery]
backoff_base_ms = 1000
backoff_max_ms = 60000
"""


class Gateway:
    """A ``clawgate gateway`` child process with the UI test config."""

    def __init__(self, state: Path) -> None:
        self.state = state
        state.mkdir(parents=True, exist_ok=True)
        (state / "clawgate.toml").write_text(config_toml(state))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "CLAWGATE_STATE_DIR": str(state),
               "CLAWGATE_GATEWAY_PORT": str(self.port), "CLAWGATE_GATEWAY_TOKEN": TOKEN}
        env.pop("CLAWGATE_CONFIG", None)
        self.log = (state / "gateway.log").open("w")
        self.proc = subprocess.Popen([CLAWGATE, "gateway"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("gateway exited early:\n"
                                     + (self.state / "gateway.log").read_text())
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:
                self.proc.wait(0.05)
            except subprocess.TimeoutExpired:
                pass
        raise AssertionError("gateway did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    # -- helpers the tests use -------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def completion(self, text: str, *, user: str) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/v1/chat/completions", headers=self.headers(), timeout=30,
                       json={"model": "clawgate", "user": user,
                             "messages": [{"role": "user", "content": text}]})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def inbound(self, text: str, *, sender: str) -> dict[str, Any]:
        body = orjson.dumps({"id": f"{sender}-{time.time_ns()}", "from": sender, "text": text})
        r = httpx.post(f"{self.url}/channels/webhook/default/inbound", content=body,
                       headers=sign(SECRET, body), timeout=10)
        assert r.status_code in (200, 202), r.text
        return dict(r.json())

    def open_gate(self) -> None:
        (self.state / "gate" / "open").touch()

    def close_gate(self) -> None:
        (self.state / "gate" / "open").unlink(missing_ok=True)

    def cli(self, *args: str) -> str:
        """Run a ``clawgate`` client command against this gateway; its output."""
        env = {**os.environ, "CLAWGATE_STATE_DIR": str(self.state),
               "CLAWGATE_GATEWAY_PORT": str(self.port), "CLAWGATE_GATEWAY_TOKEN": TOKEN}
        done = subprocess.run([CLAWGATE, *args], env=env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def dashboard(self, token: str = TOKEN) -> str:
        return f"{self.url}/#token={token}"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = Gateway(tmp_path_factory.mktemp("ui") / "state")
    try:
        gw.wait_ready()
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # The browser tests never download a browser: a missing Chromium is a failure (CI installs
    # the Debian package), not a skip.
    assert Path(CHROMIUM).exists() or shutil.which("chromium"), (
        f"{CHROMIUM} is missing: apt-get install -y chromium")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=DESKTOP)
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # type: ignore[attr-defined]
    yield page


def login(page: Page, gateway: Gateway) -> None:
    """Open the dashboard link and wait for the chat panel."""
    page.goto(gateway.dashboard())
    # (wait_for_function would evaluate a string, which the page's CSP forbids: good.)
    page.wait_for_selector("#panel-chat[data-ready]")


def shoot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
