"""The Sessions panel over 100,000 stored sessions: keyset pages forward and back, the
server-side channel filter, and a search, in Chromium against a real gateway process whose
store was seeded through the store API before it started."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from clawgate.config import STORE_FILE
from clawgate.sessions.store import SessionStore
from tests.ui.conftest import Gateway, login, shoot

SESSIONS = 100_000
BATCH = 2_000


def fields(n: int) -> tuple[str, dict[str, str]]:
    """Every third session is a Slack group, the rest Telegram DMs."""
    if n % 3 == 0:
        return f"agent:main:slack:group:c{n}", {"chat_type": "group", "channel": "slack",
                                                 "subject": f"Room {n:06d}"}
    return f"agent:main:telegram:direct:{n}", {"chat_type": "direct", "channel": "telegram",
                                                "display_name": f"User {n:06d}"}


async def seed(path: Path) -> None:
    async with SessionStore(path) as store:
        for start in range(0, SESSIONS, BATCH):
            await asyncio.gather(*(store.ensure(key, **values) for key, values in
                                   map(fields, range(start, start + BATCH))))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    state = tmp_path_factory.mktemp("ui-scale") / "state"
    state.mkdir(parents=True)
    # In a thread of its own: Playwright's sync API holds an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, seed(state / STORE_FILE)).result()
    gw = Gateway(state)
    try:
        gw.wait_ready()
        yield gw
    finally:
        gw.stop()


def keys(page: Page) -> list[str]:
    rows = page.locator("#sessions-rows tr")
    return list(rows.evaluate_all("(rows) => rows.map((r) => r.dataset.key)"))


def test_pages_through_100000_sessions_and_filters_by_channel(page: Page,
                                                              gateway: Gateway) -> None:
    login(page, gateway)
    page.click("a[data-panel=sessions]")
    summary = page.locator("#sessions-summary")
    expect(summary).to_have_text("1–50 of more than 1,000")
    first = keys(page)
    assert len(first) == 50 and len(set(first)) == 50
    seen = set(first)
    for n in range(2, 6):  # forward by nextCursor: new rows every page, none repeated
        page.click("#sessions-next")
        expect(summary).to_have_text(f"{(n - 1) * 50 + 1}–{n * 50} of more than 1,000")
        rows = keys(page)
        assert len(rows) == 50 and not seen & set(rows)
        seen |= set(rows)
    page.click("#sessions-prev")
    expect(summary).to_have_text("151–200 of more than 1,000")
    # The channel filter runs in sessions.list: every row of every page is a Slack one.
    page.select_option("#sessions-channel", "slack")
    expect(summary).to_have_text("1–50 of more than 1,000")
    expect(page.locator("#sessions-rows tr").first).to_contain_text("slack")
    assert all(":slack:" in key for key in keys(page))
    page.click("#sessions-next")
    expect(summary).to_have_text("51–100 of more than 1,000")
    assert all(":slack:" in key for key in keys(page))
    page.fill("#sessions-search", "User 012346")
    expect(summary).to_have_text("0 of 0")  # a Telegram name under the Slack filter
    page.select_option("#sessions-channel", "")
    expect(page.locator("#sessions-rows tr")).to_have_count(1)
    expect(page.locator("#sessions-rows tr")).to_have_attribute(
        "data-key", "agent:main:telegram:direct:12346")
    expect(summary).to_have_text("1–1 of 1")
    shoot(page, "sessions-100k-desktop")
    assert page.errors == []  # type: ignore[attr-defined]
