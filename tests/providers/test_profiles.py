"""Auth profiles: round-robin, stickiness per session, the cooldown schedule, status, reset."""

from __future__ import annotations

import pytest

from clawgate import AuthProfiles, Credential, InvalidRequest, ProviderError, profile_credentials
from clawgate.providers.profiles import auth_report, reset_auth


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def profiles(n: int = 3, clock: Clock | None = None, **options: object) -> AuthProfiles:
    creds = [Credential(f"p{i}", f"secret-{i}", f"env:KEY_{i}") for i in range(n)]
    return AuthProfiles("acme", creds, clock=clock or Clock(), wall=lambda: 1_700_000_000.0,
                        **options)  # type: ignore[arg-type]


def test_new_sessions_spread_round_robin_over_the_profiles() -> None:
    p = profiles(3)
    assert [p.pick(f"s{i}").id for i in range(6)] == ["p0", "p1", "p2", "p0", "p1", "p2"]


def test_a_session_sticks_to_its_profile() -> None:
    p = profiles(3)
    first = p.pick("alice").id
    p.pick("bob")
    p.pick("carol")
    assert [p.pick("alice").id for _ in range(3)] == [first] * 3


def test_a_failure_cools_the_profile_and_moves_the_session() -> None:
    clock = Clock()
    p = profiles(2, clock)
    assert p.pick("alice").id == "p0"
    assert p.failed("p0", "rate_limit") == 30.0
    assert p.pick("alice").id == "p1"  # moved while p0 cools down
    assert p.pick("alice").id == "p1"  # and sticks to its new profile
    clock.advance(30)
    assert p.pick("bob").id == "p0"  # available again once the cooldown expired


def test_cooldowns_grow_30s_1min_5min_and_reset_on_success() -> None:
    clock = Clock()
    p = profiles(1, clock)
    steps = []
    for _ in range(4):
        steps.append(p.failed("p0", "auth"))
        clock.advance(steps[-1])
    assert steps == [30.0, 60.0, 300.0, 300.0]
    p.succeeded("p0")
    assert p.failed("p0", "timeout") == 30.0


def test_retry_after_longer_than_the_step_wins() -> None:
    p = profiles(1)
    assert p.failed("p0", "rate_limit", retry_after=120) == 120
    assert p.status()[0]["cooldownRemainingMs"] == 120_000


def test_errors_that_are_not_the_keys_fault_do_not_cool() -> None:
    p = profiles(2)
    for kind in ("other", "context_length", "unavailable", "refusal"):
        assert p.failed("p0", kind) == 0.0  # type: ignore[arg-type]
    assert p.pick("s").id == "p0"


def test_all_cooling_fails_at_once_with_rate_limit() -> None:
    clock = Clock()
    p = profiles(2, clock)
    p.failed("p0", "rate_limit")
    p.failed("p1", "auth", retry_after=90)
    with pytest.raises(ProviderError) as caught:
        p.pick("s")
    assert caught.value.kind == "rate_limit" and caught.value.failover
    assert "30 s" in str(caught.value)  # the soonest profile
    clock.advance(30)
    assert p.pick("s").id == "p0"


def test_tried_profiles_are_skipped_and_exhaustion_is_reported() -> None:
    p = profiles(2)
    assert p.pick("s", tried={"p0"}).id == "p1"
    p.failed("p0", "auth")
    p.failed("p1", "auth")
    with pytest.raises(ProviderError) as caught:
        p.pick("s", tried={"p0", "p1"})
    assert caught.value.kind == "auth"


def test_status_has_no_secret_and_shows_cooldowns_and_pins() -> None:
    clock = Clock()
    p = profiles(2, clock)
    p.pick("alice")
    p.pick("bob")
    p.pick("carol")
    p.failed("p1", "rate_limit")
    rows = p.status()
    assert "secret" not in repr(rows) and "secret" not in repr(p._profiles)
    assert [(r["id"], r["state"], r["errorCount"], r["sessions"]) for r in rows] == [
        ("p0", "ok", 0, 2), ("p1", "cooldown", 1, 1)]
    assert rows[1]["cooldownUntil"] == 1_700_000_030_000
    assert rows[1]["lastError"] == "rate_limit" and rows[1]["source"] == "env:KEY_1"
    assert rows[0]["hasKey"] is True and rows[0]["lastUsed"] == 1_700_000_000_000


def test_reset_clears_one_or_all_and_refuses_unknown_ids() -> None:
    p = profiles(2)
    p.failed("p0", "auth")
    p.failed("p1", "auth")
    assert p.reset("p1") == ["p1"]
    assert [r["state"] for r in p.status()] == ["cooldown", "ok"]
    assert p.reset() == ["p0", "p1"]
    assert {r["state"] for r in p.status()} == {"ok"}
    with pytest.raises(InvalidRequest, match="no auth profile 'nope'"):
        p.reset("nope")


def test_stickiness_is_bounded() -> None:
    p = profiles(2, sticky_limit=10)
    for i in range(100):
        p.pick(f"s{i}")
    assert sum(r["sessions"] for r in p.status()) == 10


def test_credentials_from_config_and_environment() -> None:
    env = {"K_WORK": "w", "K_HOME": "h", "ANTHROPIC_API_KEY": "default"}
    creds = profile_credentials(
        {"profiles": [{"id": "work", "api_key_env": "K_WORK"},
                      {"id": "home", "api_key_env": "K_HOME"},
                      {"id": "unset", "api_key_env": "K_NONE"}]}, "anthropic", env)
    assert [(c.id, c.secret, c.source) for c in creds] == [
        ("work", "w", "env:K_WORK"), ("home", "h", "env:K_HOME"), ("unset", None, "env:K_NONE")]
    (single,) = profile_credentials({"api_key_env": "ANTHROPIC_API_KEY"}, "anthropic", env)
    assert (single.id, single.secret) == ("anthropic:default", "default")
    with pytest.raises(InvalidRequest, match="unique"):
        profile_credentials({"profiles": [{"id": "a", "api_key_env": "X"}] * 2}, "x", env)


class _Aware:
    def __init__(self, id: str) -> None:
        self.id = id
        self.profiles = profiles(2)

    def auth_status(self):  # noqa: ANN201
        return self.profiles.status()

    def reset_auth(self, profile_id: str | None = None) -> list[str]:
        return self.profiles.reset(profile_id)

    def models(self):  # noqa: ANN201
        return []


def test_auth_report_and_reset_over_providers() -> None:
    a, b = _Aware("beta"), _Aware("alpha")
    a.profiles.failed("p0", "auth")
    report = auth_report([a, b])  # type: ignore[list-item]
    assert [r["provider"] for r in report["providers"]] == ["alpha", "beta"]
    assert reset_auth([a, b], "beta", "p0") == {  # type: ignore[list-item]
        "reset": [{"provider": "beta", "profiles": ["p0"]}]}
    assert a.profiles.status()[0]["state"] == "ok"
    with pytest.raises(InvalidRequest, match="no provider 'gamma'"):
        reset_auth([a, b], "gamma")  # type: ignore[list-item]
    with pytest.raises(InvalidRequest, match="no auth profile 'zz'"):
        reset_auth([a], "beta", "zz")  # type: ignore[list-item]
