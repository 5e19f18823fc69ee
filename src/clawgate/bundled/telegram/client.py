"""python-telegram-bot clients, one ``telegram.Bot`` per account, and Bot API errors mapped to
the core's send errors.

This module imports ``telegram``: the channel imports it only when an account starts or sends,
so a gateway without a Telegram account never loads the library.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import telegram
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from clawgate import Account, ChannelSendError

POOL = 32  # connections for sends, edits, typing and downloads (getUpdates has its own)
CONNECT_TIMEOUT_S = 10.0


class Bots:
    """The clients of one channel instance (one generation), by account; closed together by
    the plugin's service when the generation retires."""

    def __init__(self) -> None:
        self._bots: dict[tuple[str, str, str], telegram.Bot] = {}

    def get(self, account: Account) -> telegram.Bot:
        """The account's client (created on first use, no network I/O)."""
        config = account.config
        key = (account.account_id, str(config["bot_token"]), str(config["api_base_url"]))
        bot = self._bots.get(key)
        if bot is None:
            bot = self._bots[key] = make_bot(config)
        return bot

    async def close(self) -> None:
        bots, self._bots = list(self._bots.values()), {}
        for bot in bots:
            await bot.shutdown()


def make_bot(config: Mapping[str, Any]) -> telegram.Bot:
    """A ``telegram.Bot`` for an account's config (``api_base_url`` may be a self-hosted Bot
    API server, or the tests' fake)."""
    root = str(config["api_base_url"]).rstrip("/")
    timeout = float(config["request_timeout_s"])
    poll = float(config["poll_timeout_s"]) + float(config["poll_stall_s"])
    return telegram.Bot(
        str(config["bot_token"]), base_url=f"{root}/bot", base_file_url=f"{root}/file/bot",
        request=HTTPXRequest(connection_pool_size=POOL, read_timeout=timeout,
                             write_timeout=timeout, connect_timeout=CONNECT_TIMEOUT_S,
                             pool_timeout=timeout, media_write_timeout=max(timeout, 60.0)),
        # The stall watchdog cancels a getUpdates after poll_timeout_s + poll_stall_s; the
        # library's own read timeout (added to the poll's timeout) is a later backstop.
        get_updates_request=HTTPXRequest(connection_pool_size=1, read_timeout=poll + 5,
                                         write_timeout=timeout,
                                         connect_timeout=CONNECT_TIMEOUT_S,
                                         pool_timeout=timeout))


def retry_after(exc: RetryAfter) -> float:
    """The seconds Telegram asked to wait (``parameters.retry_after``)."""
    with warnings.catch_warnings():  # PTB 22 warns about its coming timedelta return type
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def scrub(text: str, token: str) -> str:
    """``text`` without the bot token (error messages may quote a URL)."""
    return text.replace(token, "<bot_token>") if token else text


def send_error(exc: TelegramError, what: str, token: str = "") -> ChannelSendError:
    """The core's view of a failed Bot API call: 429 waits for ``retry_after``; timeouts,
    network errors and 5xx are retried; a refusal (400, 403) is final."""
    detail = scrub(str(exc), token)
    if isinstance(exc, RetryAfter):
        wait = retry_after(exc)
        return ChannelSendError(f"{what}: Telegram rate limit, retry after {wait:g} s",
                                retry_after_s=wait)
    if isinstance(exc, BadRequest | Forbidden):  # BadRequest is a NetworkError: check first
        return ChannelSendError(f"{what} refused: {detail}", retryable=False)
    if isinstance(exc, InvalidToken):
        return ChannelSendError(f"{what}: the bot token was refused ({detail}); fix bot_token")
    if isinstance(exc, TimedOut):
        return ChannelSendError(f"{what} timed out: {detail}")
    if isinstance(exc, NetworkError | Conflict | ChatMigrated):
        return ChannelSendError(f"{what} failed: {detail}")
    return ChannelSendError(f"{what} failed: {type(exc).__name__}: {detail}")


def refused(exc: TelegramError, *phrases: str) -> bool:
    """A 400 whose description contains one of ``phrases`` (case-insensitive)."""
    text = str(exc).lower()
    return isinstance(exc, BadRequest) and any(p in text for p in phrases)
