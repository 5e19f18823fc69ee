"""Where a cron run's reply goes, and what actually happened to it.

Two ways out, as in OpenClaw:

- **announce**: the reply becomes a durable intent of the channel runtime (chunked, sent,
  receipted and retried like any channel reply) and the run waits up to
  ``cron.delivery_timeout_s`` for its outcome: ``delivered`` when every part has a receipt,
  ``not-delivered`` when the platform refused it for good, ``unknown`` when it is still pending
  at the deadline (the outbound worker keeps trying; the run does not claim a success it has
  not seen). ``channel: "last"`` — and a channel without ``to`` — use the route the agent's main
  session last received a channel message on.
- **webhook**: the finished run is POSTed as JSON to ``delivery.to`` with
  ``Authorization: Bearer <cron.webhook_token>`` (when set) and ``Idempotency-Key: <runId>``;
  a 2xx is ``delivered``, anything else ``not-delivered``.

The cron layer may not import the channel runtime (they are siblings); the runtime hands it in
as a :class:`Channels`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import orjson

from clawgate.cron.jobs import DeliveryStatus
from clawgate.errors import NotFound
from clawgate.sessions.channelstore import Delivery as Route
from clawgate.sessions.channelstore import Intent, IntentKind
from clawgate.sessions.store import SessionStore

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("clawgate.cron.delivery")

WEBHOOK_TIMEOUT_S = 10.0
LAST = "last"


class Channels(Protocol):
    """What cron needs of the channel runtime (``ChannelRuntime`` provides it)."""

    def route(self, channel: str, to: str, *, account_id: str | None = None,
              thread: str | None = None) -> Route:
        """An enabled account of ``channel`` and the recipient; NotFound naming what is
        missing."""
        ...

    async def announce(self, route: Route, text: str, *,
                       kind: IntentKind = "announce") -> str:
        """A durable intent for ``text``; its id."""
        ...

    async def settle(self, intent_id: str, deadline_s: float) -> Intent | None:
        """The intent once sent or failed, or pending at the deadline."""
        ...


@dataclass(frozen=True, slots=True)
class Sent:
    """What became of one delivery."""

    status: DeliveryStatus
    error: str | None = None


class Courier:
    """Delivers cron results: resolves announce targets, sends and awaits intents, POSTs
    webhooks (with one HTTP client, made when the first webhook is due)."""

    def __init__(self, store: SessionStore, channels: Channels | None, *,
                 main_key: Callable[[str], str], timeout_s: float,
                 webhook_token: str | None = None) -> None:
        self._store = store
        self._channels = channels
        self._main_key = main_key
        self.timeout_s = timeout_s
        self._token = webhook_token
        self._http: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        """Close the webhook client (if one was made)."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    # -- announce --------------------------------------------------------------------------

    async def route(self, channel: str | None, to: str | None, account_id: str | None,
                    agent_id: str) -> Route:
        """The route of an announcement for ``agent_id``'s job (``channel`` None or ``last``:
        the main session's last route). NotFound names the field that cannot be resolved."""
        if self._channels is None:
            raise NotFound("delivery.channel: this gateway runs no channels")
        last = await self.last_route(agent_id)
        if not channel or channel == LAST:
            if last is None:
                raise NotFound(f'delivery.channel: "{LAST}" needs a channel message on the '
                               f"agent's main session first; none was received yet")
            channel, account_id = last.channel, account_id or last.account
        if to:
            return self._channels.route(channel, to, account_id=account_id)
        if last is None or last.channel != channel:
            raise NotFound(f"delivery.to: no recipient for channel {channel!r} (and the "
                           "main session's last route is not on it)")
        return self._channels.route(channel, str(last.target.get("to") or ""),
                                    account_id=account_id or last.account,
                                    thread=last.target.get("thread"))

    async def last_route(self, agent_id: str) -> Route | None:
        """Where the agent's main session last received a channel message (None: never)."""
        entry = await self._store.get(self._main_key(agent_id))
        if entry is None or not entry.last_channel or not entry.last_to:
            return None
        return Route(entry.last_channel, entry.last_account_id or "default",
                     {"to": entry.last_to, "chat_type": "direct",
                      "thread": entry.last_thread_id, "reply_to": None})

    async def announce(self, route: Route, text: str) -> Sent:
        """Send ``text`` through the channel's durable outbound and wait for its outcome."""
        assert self._channels is not None  # a route exists only with channels
        intent_id = await self._channels.announce(route, text)
        return await self.settle(intent_id)

    async def settle(self, intent_id: str) -> Sent:
        """What became of an intent, waiting up to ``timeout_s`` for its outcome."""
        if self._channels is None:
            return Sent("unknown", "this gateway runs no channels")
        intent = await self._channels.settle(intent_id, self.timeout_s)
        if intent is None:
            return Sent("unknown", "the delivery record is gone")
        if intent.status == "sent":
            return Sent("delivered")
        if intent.status == "failed":
            return Sent("not-delivered", intent.last_error or "the channel refused it")
        why = f"; last attempt: {intent.last_error}" if intent.last_error else ""
        return Sent("unknown", f"still pending after {self.timeout_s:g} s (the gateway keeps "
                               f"retrying){why}")

    async def notice(self, route: Route, text: str) -> None:
        """A gateway notice (not awaited): the owner is told something."""
        if self._channels is not None:
            await self._channels.announce(route, text, kind="notice")

    # -- webhook ---------------------------------------------------------------------------

    async def post(self, url: str, body: Mapping[str, Any], *, key: str) -> Sent:
        """POST ``body`` as JSON to ``url``; 2xx is a delivery."""
        import httpx  # only a gateway with webhook jobs pays for it

        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=False)
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        shown = _redact(url)
        try:
            response = await self._http.post(url, content=orjson.dumps(dict(body)),
                                             headers=headers, timeout=WEBHOOK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            return Sent("not-delivered", f"POST {shown} failed: {type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return Sent("delivered")
        return Sent("not-delivered", f"POST {shown} answered {response.status_code}")


def _redact(url: str) -> str:
    """A URL as logs and run entries show it: no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
