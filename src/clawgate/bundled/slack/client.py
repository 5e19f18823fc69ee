"""One account's Slack Web API: slack-sdk's ``AsyncWebClient`` on a pooled aiohttp session,
with Slack's answers mapped to the core's errors.

This module imports slack-sdk and aiohttp; the channel imports it only when an account starts
or sends (a gateway without a Slack account never pays for them).

Error mapping (the core retries what is retryable, with backoff):

- HTTP 429 (``ratelimited``) -> ``ChannelSendError(retry_after_s=<Retry-After>)``;
- ``invalid_auth``, ``not_authed``, ``token_revoked``... -> not retryable, the message says
  how to fix the token (``identity()`` raises ``ChannelAuthError`` for them);
- 5xx, ``internal_error``/``fatal_error``/``service_unavailable``/``request_timeout``,
  timeouts and connection failures -> retryable;
- any other error (``channel_not_found``, ``not_in_channel``, ``msg_too_long``...) -> not
  retryable: the delivery fails and shows in ``channels.status``.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from clawgate import ChannelAuthError, ChannelSendError, OutboundMedia

from .normalize import FileRef, Identity

T = TypeVar("T")

AUTH_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked",
                         "token_expired", "not_allowed_token_type", "no_permission"})
RETRYABLE_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout"})
BOT_FIX = ("set bot_token to the app's Bot User OAuth Token (xoxb-...; Slack app settings > "
           "OAuth & Permissions) and reinstall the app to the workspace if it was revoked")
APP_FIX = ("set app_token to an app-level token (xapp-...) with the connections:write scope "
           "(Slack app settings > Basic Information > App-Level Tokens) and enable Socket Mode")
MAX_NAMES = 2000  # user id -> display name, most recent kept
MAX_FILES = 2000  # file id -> download URL of recent inbound files
NAME_TIMEOUT_S = 2.0  # a sender's name is nice to have, never worth holding a message up
NAME_RETRY_S = 600.0  # a failed lookup (no users:read scope, Slack down) is not retried sooner
MAX_DOWNLOAD = 50 * 1024 * 1024


def slack_error(exc: SlackApiError) -> str:
    """The ``error`` code of a Web API error answer (``""`` when it had none)."""
    data = exc.response.data
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def send_error(what: str, exc: Exception) -> ChannelSendError:
    """The core's error for a failed Web API call."""
    if isinstance(exc, SlackApiError):
        status = int(exc.response.status_code)
        code = slack_error(exc) or f"HTTP {status}"
        if status == 429 or code == "ratelimited":
            return ChannelSendError(f"{what}: rate limited by Slack",
                                    retry_after_s=_retry_after(exc.response))
        if code in AUTH_ERRORS:
            return ChannelSendError(f"{what}: Slack refused the bot token ({code}); {BOT_FIX}",
                                    retryable=False)
        retryable = status >= 500 or code in RETRYABLE_ERRORS
        return ChannelSendError(f"{what}: {code}", retryable=retryable)
    if isinstance(exc, SlackClientError):  # e.g. the upload URL answered an error status
        return ChannelSendError(f"{what}: {exc}")
    return ChannelSendError(f"{what}: {type(exc).__name__}: {exc}".rstrip(": "))


def _retry_after(response: AsyncSlackResponse) -> float | None:
    headers = response.headers or {}
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except (TypeError, ValueError):
        return None


def _remember(store: OrderedDict[str, T], key: str, value: T, limit: int) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)


class SlackApi:
    """The Web API of one account (its bot token, its ``api_base_url``)."""

    def __init__(self, bot_token: str, base_url: str, timeout_s: float) -> None:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s),
                                             trust_env=False)
        # No SDK-level retries: the core retries with backoff (and a retried post could
        # otherwise double a message behind the core's back).
        self.web = AsyncWebClient(token=bot_token, base_url=base_url, session=self.session,
                                  timeout=int(max(1, timeout_s)), retry_handlers=[])
        self._token = bot_token
        self._identity: Identity | None = None
        self._identity_lock = asyncio.Lock()
        self._names: OrderedDict[str, str] = OrderedDict()
        self._misses: OrderedDict[str, float] = OrderedDict()  # user id -> when it failed
        self._files: OrderedDict[str, str] = OrderedDict()

    async def aclose(self) -> None:
        await self.session.close()

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
            raise send_error(what, exc) from None

    # -- identity --------------------------------------------------------------------------

    async def identity(self, *, fresh: bool = False) -> Identity:
        """The bot's identity from ``auth.test`` (once; ``fresh`` asks again). A refused token
        raises ``ChannelAuthError`` with the fix."""
        async with self._identity_lock:
            if self._identity is not None and not fresh:
                return self._identity
            try:
                answer = await self.web.auth_test()
            except SlackApiError as exc:
                code = slack_error(exc)
                if code in AUTH_ERRORS:
                    raise ChannelAuthError(f"Slack refused the bot token ({code})",
                                           fix=BOT_FIX) from None
                raise send_error("auth.test", exc) from None
            except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
                raise send_error("auth.test", exc) from None
            self._identity = Identity(str(answer.get("user_id") or ""),
                                      str(answer.get("bot_id") or ""),
                                      str(answer.get("user") or ""),
                                      str(answer.get("team_id") or ""),
                                      str(answer.get("team") or ""))
            if not self._identity.user_id:
                raise ChannelAuthError("auth.test did not name a bot user: is bot_token a bot "
                                       "token?", fix=BOT_FIX)
            return self._identity

    @property
    def known_identity(self) -> Identity | None:
        return self._identity

    # -- inbound helpers -------------------------------------------------------------------

    @property
    def names(self) -> Mapping[str, str]:
        """The display names known so far (user id -> name)."""
        return self._names

    async def learn_name(self, user_id: str) -> None:
        """Look up a sender's display name once (``users.info``), best effort and brief."""
        if not user_id or user_id in self._names:
            return
        now = time.monotonic()
        failed = self._misses.get(user_id)
        if failed is not None and now - failed < NAME_RETRY_S:
            return
        try:
            answer = await asyncio.wait_for(self.web.users_info(user=user_id), NAME_TIMEOUT_S)
        except (SlackClientError, aiohttp.ClientError, TimeoutError):
            _remember(self._misses, user_id, now, MAX_NAMES)
            return
        user = answer.get("user") or {}
        profile = user.get("profile") or {}
        name = profile.get("display_name") or user.get("real_name") or user.get("name")
        if isinstance(name, str) and name:
            _remember(self._names, user_id, name, MAX_NAMES)
            self._misses.pop(user_id, None)
        else:
            _remember(self._misses, user_id, now, MAX_NAMES)

    def keep_files(self, refs: list[FileRef]) -> None:
        for ref in refs:
            if ref.url:
                _remember(self._files, ref.file_id, ref.url, MAX_FILES)

    async def download(self, file_id: str) -> tuple[bytes, str]:
        """An inbound file's bytes and type, from its ``url_private_download`` with the bot
        token."""
        url = self._files.get(file_id)
        if url is None:
            raise ChannelSendError(f"file {file_id}: no download URL known", retryable=False)
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            async with self.session.get(url, headers=headers) as response:
                if response.status >= 400:
                    raise ChannelSendError(f"file {file_id}: HTTP {response.status}",
                                           retryable=response.status >= 500)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(65_536):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD:
                        raise ChannelSendError(f"file {file_id} is too large", retryable=False)
                    chunks.append(chunk)
                return b"".join(chunks), response.content_type or "application/octet-stream"
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise send_error(f"file {file_id}", exc) from None

    # -- outbound --------------------------------------------------------------------------

    async def post(self, channel: str, text: str, thread_ts: str | None) -> str:
        """``chat.postMessage``; the new message's ``ts``."""
        answer = await self._call("chat.postMessage", self.web.chat_postMessage(
            channel=channel, text=text, thread_ts=thread_ts, mrkdwn=True))
        return str(answer.get("ts") or "")

    async def update(self, channel: str, ts: str, text: str) -> None:
        """``chat.update`` of one of the bot's messages."""
        await self._call("chat.update", self.web.chat_update(channel=channel, ts=ts,
                                                             text=text))

    async def upload(self, channel: str, media: OutboundMedia, thread_ts: str | None) -> str:
        """A file through ``files.getUploadURLExternal`` -> upload -> ``files.completeUpload
        External`` (slack-sdk's ``files_upload_v2``); the file id."""
        answer = await self._call("files.upload", self.web.files_upload_v2(
            channel=channel, content=media.data, filename=media.name, title=media.name,
            thread_ts=thread_ts))
        file: Any = answer.get("file") or (answer.get("files") or [{}])[0]
        return str(file.get("id") or "") if isinstance(file, dict) else ""

    async def probe(self) -> dict[str, Any]:
        """A cheap identity call (``auth.test``)."""
        me = await self.identity(fresh=True)
        return {"ok": True, "bot": me.status()}
