"""Auth profiles: several credentials for one provider, used round-robin with cooldowns.

OpenClaw's rules (reference §7), in a provider plugin's own object:

- a session sticks to the profile it was given, so the provider's prompt cache stays warm; it
  moves only when that profile is cooling down (or already failed in this call);
- otherwise the least recently used available profile is picked, so sessions spread over keys;
- an auth, rate-limit or timeout failure puts the profile in cooldown for 30 s, then 1 min, then
  5 min for each further consecutive failure (longer when the server's ``retry-after`` asks for
  it); a success clears the count;
- when every profile is cooling down the call fails at once with a ``rate_limit``
  :class:`~clawgate.errors.ProviderError`, which lets the turn fall back to another model.

State lives in memory, per provider instance (one plugin generation): a reload starts fresh.
Secrets stay inside :class:`Credential` (hidden from ``repr``) and never reach a status row.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clawgate.errors import InvalidRequest, ProviderError, ProviderErrorKind
from clawgate.providers.base import AuthAware, ProfileStatus, Provider

COOLDOWN_SCHEDULE_S: tuple[float, ...] = (30.0, 60.0, 300.0)
COOLING_KINDS: frozenset[ProviderErrorKind] = frozenset({"auth", "rate_limit", "timeout"})
STICKY_LIMIT = 10_000  # sessions remembered per provider (oldest forgotten first)
RETRY_AFTER_CAP_S = 3600.0


@dataclass(frozen=True, slots=True)
class Credential:
    """One profile's credential. ``secret`` is None when its variable is unset or empty."""

    id: str
    secret: str | None = field(default=None, repr=False)
    source: str = ""  # where the secret came from, e.g. "env:ANTHROPIC_API_KEY"


def profile_credentials(config: Mapping[str, object], provider: str,
                env: Mapping[str, str] | None = None) -> list[Credential]:
    """The credentials a provider plugin's config names.

    ``profiles = [{id = "work", api_key_env = "KEY_WORK"}, ...]`` gives one credential per entry;
    without ``profiles``, ``api_key_env`` gives the single profile ``<provider>:default``.
    """
    env = os.environ if env is None else env
    raw = config.get("profiles") or ()
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise InvalidRequest(f"{provider}: profiles must be a list of tables")
    found: list[Credential] = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not entry.get("id") or not entry.get("api_key_env"):
            raise InvalidRequest(f"{provider}: each profile needs an id and an api_key_env")
        name = str(entry["api_key_env"])
        found.append(Credential(str(entry["id"]), env.get(name) or None, f"env:{name}"))
    if not found:
        name = str(config.get("api_key_env") or "")
        found.append(Credential(f"{provider}:default", (env.get(name) or None) if name else None,
                                f"env:{name}" if name else ""))
    ids = [c.id for c in found]
    if len(set(ids)) != len(ids):
        raise InvalidRequest(f"{provider}: profile ids must be unique, got {ids}")
    return found


@dataclass(slots=True)
class _State:
    errors: int = 0
    until: float = 0.0  # monotonic time the cooldown ends (0: not cooling)
    last_pick: int = 0  # order of the last pick (0: never); ties of a coarse clock cannot occur
    last_used_wall: float | None = None
    last_error: ProviderErrorKind | None = None


class AuthProfiles:
    """The profiles of one provider: which to use next, cooldowns, stickiness, status.

    Methods are synchronous and do no I/O; call them from the event loop that owns the
    provider. ``clock`` (monotonic seconds) and ``wall`` (epoch seconds, for status only) are
    injectable for tests.
    """

    def __init__(self, provider: str, profiles: Sequence[Credential], *,
                 schedule: Sequence[float] = COOLDOWN_SCHEDULE_S,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 sticky_limit: int = STICKY_LIMIT) -> None:
        if not profiles:
            raise InvalidRequest(f"{provider}: at least one auth profile is needed")
        if not schedule or any(s <= 0 for s in schedule):
            raise InvalidRequest(f"{provider}: cooldowns must be positive seconds")
        self.provider = provider
        self._profiles = {p.id: p for p in profiles}
        self._order = [p.id for p in profiles]
        self._state = {p.id: _State() for p in profiles}
        self._schedule = tuple(float(s) for s in schedule)
        self._clock = clock
        self._wall = wall
        self._sticky: OrderedDict[str, str] = OrderedDict()
        self._sticky_limit = max(1, sticky_limit)
        self._picks = 0

    def __len__(self) -> int:
        return len(self._order)

    def pick(self, session_key: str | None = None, tried: Collection[str] = ()) -> Credential:
        """The credential for the next attempt of ``session_key`` (not one of ``tried``).

        Raises a ``rate_limit`` :class:`ProviderError` when every untried profile is cooling
        down, and an ``auth`` one when every profile was tried.
        """
        now = self._clock()
        candidates = [i for i in self._order if i not in tried]
        if not candidates:
            raise ProviderError(f"{self.provider}: every auth profile failed for this call",
                                provider=self.provider, kind=self._exhausted_kind())
        ready = [i for i in candidates if self._state[i].until <= now]
        if not ready:
            soonest = min(self._state[i].until for i in candidates) - now
            raise ProviderError(
                f"{self.provider}: all auth profiles are cooling down "
                f"(the first is available again in {soonest:.0f} s)",
                provider=self.provider, kind="rate_limit")
        pinned = self._sticky.get(session_key) if session_key is not None else None
        if pinned in ready:
            chosen = pinned
        else:
            # Never-used profiles first (in config order), then the least recently used.
            chosen = min(ready, key=lambda i: (self._state[i].last_pick, self._order.index(i)))
        self._picks += 1
        state = self._state[chosen]
        state.last_pick, state.last_used_wall = self._picks, self._wall()
        if session_key is not None:
            self._sticky[session_key] = chosen
            self._sticky.move_to_end(session_key)
            while len(self._sticky) > self._sticky_limit:
                self._sticky.popitem(last=False)
        return self._profiles[chosen]

    def failed(self, profile_id: str, kind: ProviderErrorKind,
               retry_after: float | None = None) -> float:
        """Record a failed call; returns the cooldown started (0 when ``kind`` does not cool)."""
        state = self._state[profile_id]
        state.last_error = kind
        if kind not in COOLING_KINDS:
            return 0.0
        state.errors += 1
        step = self._schedule[min(state.errors, len(self._schedule)) - 1]
        if retry_after is not None:
            step = max(step, min(retry_after, RETRY_AFTER_CAP_S))
        state.until = self._clock() + step
        return step

    def succeeded(self, profile_id: str) -> None:
        """Record a successful call: the error count and cooldown are cleared."""
        state = self._state[profile_id]
        state.errors, state.until, state.last_error = 0, 0.0, None

    def reset(self, profile_id: str | None = None) -> list[str]:
        """Clear cooldowns and error counts of ``profile_id`` (or every profile)."""
        if profile_id is not None and profile_id not in self._state:
            raise InvalidRequest(f"{self.provider}: no auth profile {profile_id!r}; "
                                 f"known: {self._order}")
        ids = self._order if profile_id is None else [profile_id]
        for i in ids:
            self.succeeded(i)
        return list(ids)

    def status(self) -> list[ProfileStatus]:
        """One row per profile, in config order; never the secret."""
        now, wall = self._clock(), self._wall()
        pinned: dict[str, int] = {}
        for chosen in self._sticky.values():
            pinned[chosen] = pinned.get(chosen, 0) + 1
        rows: list[ProfileStatus] = []
        for i in self._order:
            state, cred = self._state[i], self._profiles[i]
            left = max(0.0, state.until - now)
            rows.append(ProfileStatus(
                id=i, provider=self.provider, source=cred.source,
                hasKey=cred.secret is not None,
                state="cooldown" if left > 0 else "ok",
                errorCount=state.errors,
                cooldownUntil=int((wall + left) * 1000) if left > 0 else None,
                cooldownRemainingMs=int(left * 1000),
                lastError=state.last_error,
                lastUsed=int(state.last_used_wall * 1000) if state.last_used_wall else None,
                sessions=pinned.get(i, 0),
            ))
        return rows

    def _exhausted_kind(self) -> ProviderErrorKind:
        kinds = {self._state[i].last_error for i in self._order}
        return "auth" if kinds == {"auth"} else "rate_limit"


def auth_report(providers: Iterable[Provider]) -> dict[str, Any]:
    """``models.authStatus``: ``{"providers": [{"provider", "profiles": [ProfileStatus]}]}`` for
    every provider with auth profiles, sorted by provider id; no secrets."""
    rows = [{"provider": p.id, "profiles": p.auth_status()}
            for p in providers if isinstance(p, AuthAware)]
    return {"providers": sorted(rows, key=lambda r: str(r["provider"]))}


def reset_auth(providers: Iterable[Provider], provider: str | None = None,
               profile: str | None = None) -> dict[str, Any]:
    """Clear cooldowns: of ``profile`` of ``provider``, of every profile of ``provider``, or of
    every profile of every provider. Returns ``{"reset": [{"provider", "profiles": [ids]}]}``;
    an unknown provider or profile raises :class:`InvalidRequest` and changes nothing."""
    aware = {p.id.lower(): p for p in providers if isinstance(p, AuthAware)}
    if profile is not None and provider is None:
        raise InvalidRequest("a profile can only be reset together with its provider")
    if provider is not None and provider.lower() not in aware:
        raise InvalidRequest(f"no provider {provider!r} with auth profiles; "
                             f"known: {sorted(aware)}")
    chosen = [aware[provider.lower()]] if provider is not None else list(aware.values())
    if profile is not None and profile not in {s["id"] for s in chosen[0].auth_status()}:
        raise InvalidRequest(f"{provider}: no auth profile {profile!r}")
    return {"reset": [{"provider": p.id, "profiles": p.reset_auth(profile)} for p in chosen]}
