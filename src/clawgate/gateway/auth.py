"""Gateway authentication: the shared token (or password), compared in constant time, and a
per-address limit on failed attempts.

On first start a random token is generated, stored at ``<state>/gateway.token`` with mode 0600
and printed once. ``CLAWGATE_GATEWAY_TOKEN`` (or ``OPENCLAW_GATEWAY_TOKEN``), the config's
``gateway.auth.token`` and the stored file are consulted in that order.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
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
    token = secrets.token_urlsafe(32)
    # O_EXCL + 0600: never readable by others, never silently replaced.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return Credentials("token", token, generated=True)


class FailureLimiter:
    """At most ``max_attempts`` failures per address per window, then a lockout."""

    def __init__(self, *, max_attempts: int = 10, window_s: float = 60.0,
                 lockout_s: float = 300.0, exempt_loopback: bool = False,
                 max_addresses: int = 10_000) -> None:
        self._max = max_attempts
        self._window = window_s
        self._lockout = lockout_s
        self._exempt_loopback = exempt_loopback
        self._max_addresses = max_addresses
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._locked: dict[str, float] = {}

    def retry_after(self, address: str) -> float:
        """Seconds until ``address`` may try again (0 when it may now)."""
        until = self._locked.get(address)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._locked[address]
            return 0.0
        return left

    def failed(self, address: str) -> None:
        if self._exempt_loopback and address in ("127.0.0.1", "::1"):
            return
        now = time.monotonic()
        recent = [t for t in self._failures.get(address, []) if now - t < self._window]
        recent.append(now)
        self._failures[address] = recent
        self._failures.move_to_end(address)
        while len(self._failures) > self._max_addresses:  # bounded memory under a spray
            self._failures.popitem(last=False)
        if len(recent) >= self._max:
            self._locked[address] = now + self._lockout
            self._failures.pop(address, None)
            if len(self._locked) > self._max_addresses:  # drop expired lockouts, then oldest
                for key in [k for k, until in self._locked.items() if until <= now]:
                    del self._locked[key]
                while len(self._locked) > self._max_addresses:
                    del self._locked[next(iter(self._locked))]

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
