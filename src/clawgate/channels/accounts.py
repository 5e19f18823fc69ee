"""Channel accounts from ``[channels.<id>]``: the common keys every channel shares (policy), the
platform keys its plugin's schema declares, secrets given by environment-variable name.

``[channels.<id>]`` is one account, ``default``; ``[channels.<id>.accounts.<account>]`` are
several, each inheriting the channel-level keys. A broken account (unknown key, a failing
schema, an unset ``*_env`` variable) becomes an account with an ``error`` and is never started;
the other accounts are unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clawgate.chat import Account, Channel
from clawgate.plugins.metadata import apply_schema
from clawgate.plugins.schemas import SchemaCache
from clawgate.types import DmScope

DEFAULT_ACCOUNT = "default"
DmPolicy = Literal["pairing", "allowlist", "open", "disabled"]
GroupPolicy = Literal["allowlist", "open", "disabled"]


class _Strict(BaseModel):
    """Strict types (``"4"`` is not 4, ``"yes"`` not true); TOML arrays become tuples."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _arrays(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return data


class GroupRule(_Strict):
    """``groups.<id>`` (``"*"`` is every group): whether the bot must be mentioned, and which
    agent the group talks to."""

    require_mention: bool = True
    agent: str | None = None
    allow_from: tuple[str, ...] | None = None  # senders allowed here (default: group_allow_from)


class Policy(_Strict):
    """The common keys of an account (OpenClaw's names in snake case)."""

    enabled: bool = True
    agent: str | None = None
    dm_policy: DmPolicy = "pairing"
    allow_from: tuple[str, ...] = ()
    group_policy: GroupPolicy = "allowlist"
    group_allow_from: tuple[str, ...] = ()
    groups: dict[str, GroupRule] = Field(default_factory=dict)
    mention_patterns: tuple[str, ...] = ()
    text_chunk_limit: int | None = Field(default=None, ge=100, le=100_000)
    reply_to_mode: Literal["off", "first", "all"] = "off"
    streaming: Literal["partial", "block", "off"] = "partial"
    dm_scope: DmScope | None = None
    history_limit: int = Field(default=50, ge=0, le=500)

    @field_validator("allow_from", "group_allow_from", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        # Senders are compared as text: a numeric Telegram id may be written as a number.
        if isinstance(value, list | tuple):
            return tuple(str(v).strip() for v in value
                         if isinstance(v, str | int) and str(v).strip())
        return value

    @model_validator(mode="after")
    def _open_needs_star(self) -> Policy:
        if self.dm_policy == "open" and "*" not in self.allow_from:
            raise ValueError('dm_policy "open" needs "*" in allow_from (say it on purpose)')
        return self

    def group(self, group_id: str) -> GroupRule | None:
        """The rule of a group: its own, else the ``"*"`` rule, else None (not listed)."""
        return self.groups.get(group_id) or self.groups.get("*")


COMMON_KEYS = frozenset(Policy.model_fields)


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One account as the runtime uses it: policy, the plugin's ``Account``, or the error that
    keeps it from starting."""

    channel: str
    account_id: str
    policy: Policy
    account: Account | None
    error: str | None = None

    @property
    def enabled(self) -> bool:
        return self.policy.enabled and self.error is None


def accounts(channel: Channel, raw: Mapping[str, Any], env: Mapping[str, str],
             schemas: SchemaCache) -> list[AccountConfig]:
    """Every account of ``channel`` in its ``[channels.<id>]`` table, in config order."""
    base = {k: v for k, v in raw.items() if k != "accounts"}
    named = raw.get("accounts")
    if named is None:
        return [_account(channel, DEFAULT_ACCOUNT, base, env, schemas, f"channels.{channel.id}")]
    if not isinstance(named, Mapping) or not named:
        return [AccountConfig(channel.id, DEFAULT_ACCOUNT, Policy(), None,
                              f"channels.{channel.id}.accounts: must be a table of accounts")]
    return [_account(channel, str(account_id), {**base, **dict(own or {})}, env, schemas,
                     f"channels.{channel.id}.accounts.{account_id}")
            for account_id, own in named.items()]


def _account(channel: Channel, account_id: str, raw: Mapping[str, Any], env: Mapping[str, str],
             schemas: SchemaCache, where: str) -> AccountConfig:
    common = {k: v for k, v in raw.items() if k in COMMON_KEYS}
    try:
        policy = Policy.model_validate(common)
    except ValidationError as exc:
        first = exc.errors()[0]
        dotted = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        return AccountConfig(channel.id, account_id, Policy(), None,
                             f"{where}{'.' + dotted if dotted else ''}: {message}")
    platform = {k: v for k, v in raw.items() if k not in COMMON_KEYS}
    try:
        platform = _secrets(channel, platform, env, where)
    except ValueError as exc:
        return AccountConfig(channel.id, account_id, policy, None, str(exc))
    value, reason = apply_schema(channel.config_schema, platform, schemas)
    if reason is not None:
        return AccountConfig(channel.id, account_id, policy, None, f"{where}: {reason}")
    return AccountConfig(channel.id, account_id, policy, Account(channel.id, account_id, value))


def _secrets(channel: Channel, raw: dict[str, Any], env: Mapping[str, str],
             where: str) -> dict[str, Any]:
    """``<key>_env`` names an environment variable holding ``<key>`` (so secrets stay out of
    the file); giving both is refused."""
    out = dict(raw)
    for name in channel.secrets:
        indirect = out.pop(f"{name}_env", None)
        if indirect is None:
            continue
        if name in out:
            raise ValueError(f"{where}: give {name} or {name}_env, not both")
        if not isinstance(indirect, str) or not indirect:
            raise ValueError(f"{where}.{name}_env: must name an environment variable")
        value = env.get(indirect)
        if not value:
            raise ValueError(f"{where}.{name}_env: the environment variable {indirect} is not "
                             "set")
        out[name] = value
    return out
