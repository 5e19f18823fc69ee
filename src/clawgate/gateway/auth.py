"""Gateway authentication: the shared token (or password), compared in constant time, and a
per-address limit on wrong credentials with an exponential lockout.

On first start a random token is generated, stored at ``<state>/gateway.token`` with mode 0600
and printed once. ``CLAWGATE_GATEWAY_TOKEN`` (or ``OPENCLAW_GATEWAY_TOKEN``), the config's
``gateway.auth.token`` and the stored file are consulted in that order.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from clawgate.config import AuthConfig

TOKEN_FILE = "gateway.token"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client must present. ``mode == "none"`` accepts everyone."""

    mode: str
    secret: str | None
    generated: bool = False

    def check(self, presented: str | None) -> bool:
        if self.mode == "none":
            return True
        if not presented or self.secret is None:
            return False
        return hmac.compare_digest(presented.encode(), self.secret.encode())


def resolve_credentials(auth: AuthConfig, state_dir: Path,
                        env: Mapping[str, str] | None = None) -> Credentials:
    """The gateway's credentials; generates and stores a token on first start. Blocking."""
    env = os.environ if env is None else env
    if auth.mode == "none":
        return Credentials("none", None)
    if auth.mode == "password":
        secret = env.get("CLAWGATE_GATEWAY_PASSWORD") or env.get("OPENCLAW_GATEWAY_PASSWORD") \
            or auth.password
        return Credentials("password", secret or None)
    from_env = env.get("CLAWGATE_GATEWAY_TOKEN") or env.get("OPENCLAW_GATEWAY_TOKEN")
    if from_env or auth.token:
        return Credentials("token", from_env or auth.token)
    path = state_dir / TOKEN_FILE
    try:
        return Credentials("token", path.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)  # no leading "-": it is passed as `--token X`
    # O_EXCL + 0600: never readable by others, never silently replaced.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return Credentials("token", token, generated=True)


@dataclass(slots=True)
class _Strikes:
    """One address's recent wrong credentials."""

    guesses: OrderedDict[str, float] = field(default_factory=OrderedDict)  # fingerprint -> when
    lockouts: int = 0
    locked_until: float = 0.0
    last: float = 0.0


def fingerprint(presented: str) -> str:
    """A short digest of a presented credential (never the credential itself)."""
    return hashlib.sha256(presented.encode()).hexdigest()[:16]


class FailureLimiter:
    """Locks out an address that keeps presenting *wrong* credentials.

    Only a wrong credential counts; a missing one (a probe, an ``<img>`` tag) never does, and
    the gateway checks a presented credential before the lockout, so the right token is never
    refused. Guesses are counted per address and presented-credential fingerprint: a client
    retrying one stale token is one guess, not many. After ``max_attempts`` different wrong
    credentials within ``window_s`` the address is locked for ``base_lockout_s``; every further
    wrong guess doubles the lockout, up to ``max_lockout_s``. An address quiet for
    ``max_lockout_s`` is forgotten; at most ``max_addresses`` are remembered.
    """

    def __init__(self, *, max_attempts: int = 10, window_s: float = 60.0,
                 base_lockout_s: float = 1.0, max_lockout_s: float = 300.0,
                 max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max = max_attempts
        self._window = window_s
        self._base = base_lockout_s
        self._cap = max_lockout_s
        self._max_addresses = max_addresses
        self._clock = clock
        self._by_address: OrderedDict[str, _Strikes] = OrderedDict()

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may present a credential again (0 when it may now)."""
        strikes = self._by_address.get(address)
        if strikes is None:
            return 0.0
        return max(0.0, strikes.locked_until - self._clock())

    def failed(self, address: str, presented: str) -> None:
        """``address`` presented ``presented``, which is wrong."""
        now = self._clock()
        strikes = self._by_address.get(address)
        if strikes is None or now - strikes.last > self._cap:
            strikes = _Strikes()
        self._by_address[address] = strikes
        self._by_address.move_to_end(address)
        while len(self._by_address) > self._max_addresses:  # bounded under a spray
            self._by_address.popitem(last=False)
        strikes.last = now
        guesses = strikes.guesses
        while guesses and now - next(iter(guesses.values())) > self._window:
            guesses.popitem(last=False)
        key = fingerprint(presented)
        if key in guesses:  # the same wrong credential again: not a new guess
            guesses.move_to_end(key)
            guesses[key] = now
            return
        guesses[key] = now
        while len(guesses) > self._max:
            guesses.popitem(last=False)
        if strikes.lockouts or len(guesses) >= self._max:
            strikes.lockouts += 1
            lockout = min(self._cap, self._base * 2 ** min(strikes.lockouts - 1, 30))
            strikes.locked_until = now + lockout

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address, None)
