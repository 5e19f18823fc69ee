"""Typed configuration: ``clawgate.toml`` in the state directory, validated by pydantic.

The state directory is ``~/.clawgate`` unless ``CLAWGATE_STATE_DIR`` names another; the config
file is ``<state>/clawgate.toml`` unless ``CLAWGATE_CONFIG`` names another. A missing file means
defaults. Unknown keys are refused with their dotted path, so a typo never passes silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from clawgate.errors import ConfigError
from clawgate.types import DmScope, QueueMode

DEFAULT_AGENT_ID = "main"
STORE_FILE = "clawgate.db"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class _Strict(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


class PluginEntryConfig(_Model):
    """``plugins.entries.<id>``: per-plugin switch and config."""

    enabled: bool | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class PluginSlots(_Model):
    """``plugins.slots``: exclusive capability slots."""

    # "none" disables the slot; None means "first memory plugin wins".
    memory: str | None = None


class PluginsConfig(_Model):
    """``[plugins]``: which plugins load and with what config."""

    enabled: bool = True
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    load_paths: tuple[str, ...] = ()
    slots: PluginSlots = Field(default_factory=PluginSlots)
    entries: dict[str, PluginEntryConfig] = Field(default_factory=dict)
    # New or changed plugin code from outside the package is first imported and registered in
    # a child process (the probe) that must answer within this many seconds.
    probe_timeout_s: float = Field(default=10.0, gt=0, le=600)
    # Threads that run plugins' synchronous code (tools, methods, routes); a call running
    # longer than stuck_call_s counts as a stuck worker.
    pool_threads: int = Field(default=8, ge=1, le=256)
    stuck_call_s: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("allow", "deny")
    @classmethod
    def _trim(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.strip() for i in ids if i.strip()))

    def entry(self, plugin_id: str) -> PluginEntryConfig:
        """The entry for ``plugin_id``, or an empty one."""
        return self.entries.get(plugin_id) or _EMPTY_ENTRY


_EMPTY_ENTRY = PluginEntryConfig()


class ModelConfig(_Model):
    """An agent's model: a primary ``provider/model`` ref and ordered fallbacks."""

    primary: str = "echo/echo"
    fallbacks: tuple[str, ...] = ()


class IdentityConfig(_Model):
    name: str | None = None
    emoji: str | None = None
    avatar: str | None = None


_HH_MM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
# A duration such as "30m", "1h30m", "45s", "2d", "0m"; a bare number means minutes.
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h|d))+|[0-9]+(?:\.[0-9]+)?")


class ActiveHoursConfig(_Strict):
    """``heartbeat.active_hours``: the local-time window heartbeats run in (end exclusive)."""

    start: str
    end: str
    # An IANA zone; unset means the host's zone.
    tz: str | None = None

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str, info: ValidationInfo) -> str:
        if not (_HH_MM.fullmatch(value) or (info.field_name == "end" and value == "24:00")):
            raise ValueError(f"{value!r} is not a time HH:MM (00:00-23:59; end may be 24:00)")
        return value

    @field_validator("tz")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


class HeartbeatConfig(_Strict):
    """``[heartbeat]`` (every agent's default) or ``agents[].heartbeat`` (one agent's; keys it
    sets win over the defaults): the periodic main-session turn that reads ``HEARTBEAT.md``."""

    every: str = "30m"
    active_hours: ActiveHoursConfig | None = None
    target: str = Field(default="last", min_length=1)
    to: str | None = None
    prompt: str | None = None
    ack_max_chars: int = Field(default=300, ge=0, le=100_000)

    @field_validator("every")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not _DURATION.fullmatch(value.strip().lower()):
            raise ValueError(f"{value!r} is not a duration such as 30m, 1h30m or 45s")
        return value.strip().lower()


class CronConfig(_Strict):
    """``[cron]``: the job scheduler."""

    enabled: bool = True
    max_concurrent_runs: int = Field(default=1, ge=1, le=64)
    # Consecutive failed runs that disable a job (and tell its owner); 0 never disables.
    failure_threshold: int = Field(default=5, ge=0, le=1000)
    run_history: int = Field(default=200, ge=1, le=10_000)
    max_jobs: int = Field(default=10_000, ge=1, le=1_000_000)
    run_timeout_s: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    # How long a run waits for its announcement's receipt before recording it as pending.
    delivery_timeout_s: float = Field(default=60.0, gt=0, le=86_400)
    # Sent as ``Authorization: Bearer <token>`` with webhook deliveries (OpenClaw's
    # ``cron.webhookToken``).
    webhook_token: str | None = Field(default=None, min_length=1)


class AgentConfig(_Model):
    """One ``[[agents]]`` entry."""

    id: str
    name: str | None = None
    workspace: str | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    default: bool = False
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    heartbeat: HeartbeatConfig | None = None
    # "ro": the agent may not write its workspace (no memory flush, no memory_append).
    workspace_access: Literal["rw", "ro"] = "rw"


class MemoryFlushConfig(_Strict):
    """``[engine.compaction.memory_flush]``: the silent turn that asks the agent to write what
    matters to its memory files before a compaction (OpenClaw's
    ``agents.defaults.compaction.memoryFlush``)."""

    enabled: bool = True
    # The flush runs once the prompt estimate reaches
    # context window - reserve_tokens - soft_threshold_tokens, below the compaction threshold.
    soft_threshold_tokens: int = Field(default=4000, ge=0, le=10_000_000)
    # The flush turn's user message and the text added to its system prompt (None: built-in).
    prompt: str | None = Field(default=None, min_length=1, max_length=20_000)
    system_prompt: str | None = Field(default=None, min_length=1, max_length=20_000)


class CompactionConfig(_Strict):
    """``[engine.compaction]``: summarising the older turns of a session that outgrows its
    model's context window (OpenClaw's ``agents.defaults.compaction``)."""

    enabled: bool = True
    # Compaction runs once the prompt estimate reaches context window - reserve_tokens.
    reserve_tokens: int = Field(default=20_000, ge=0, le=10_000_000)
    # The newest turns kept verbatim after a compaction (at most this many tokens).
    keep_recent_tokens: int = Field(default=20_000, ge=0, le=10_000_000)
    # The summariser: a provider/model ref; None means the session's own model (and fallbacks).
    model: str | None = Field(default=None, min_length=1, max_length=256)
    # The window assumed for a model whose catalogue entry has no context_window.
    default_context_window: int = Field(default=200_000, ge=1_000, le=100_000_000)
    memory_flush: MemoryFlushConfig = Field(default_factory=MemoryFlushConfig)


class EngineConfig(_Model):
    """``[engine]``: lanes, queues and the turn loop.

    (OpenClaw keeps these under ``agents.defaults``; here ``[[agents]]`` is the roster, so the
    engine's knobs get their own table.)
    """

    # Turns spend nearly all their time waiting on the provider, so the global cap is in the
    # tens (measured in docs/architecture.md, "Lanes"); per-session FIFO is the lanes' own.
    max_concurrent: int = Field(default=32, ge=1, le=1024)
    queue_mode: QueueMode = "followup"
    queue_cap: int = Field(default=20, ge=1, le=10_000)
    # Admitted, unfinished runs across all sessions: many sessions at once must not grow memory
    # without bound.
    max_pending: int = Field(default=1000, ge=1, le=1_000_000)
    queue_drop: Literal["new", "old"] = "new"
    collect_window_ms: int = Field(default=500, ge=0, le=60_000)
    max_iterations: int = Field(default=8, ge=1, le=100)
    turn_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    compaction: CompactionConfig = Field(default_factory=CompactionConfig)
    # After a crash: "rerun" runs the acknowledged messages that had not started again (so they
    # get a reply); "mark" records them as interrupted, unanswered.
    resume_interrupted: Literal["rerun", "mark"] = "rerun"
    # Several replicas on one PostgreSQL store: how often each looks for runs owned by a dead
    # replica and takes them over (the failover delay after a kill -9 is at most this, plus
    # the turn run again). Unused on SQLite.
    takeover_interval_s: float = Field(default=2.0, ge=0.1, le=300)


class AuthConfig(_Model):
    mode: Literal["token", "password", "none"] = "token"
    token: str | None = None
    password: str | None = None


class WsConfig(_Model):
    """``[gateway.ws]``: bounds of the WebSocket control plane (I12)."""

    max_connections: int = Field(default=10_000, ge=1, le=1_000_000)
    # Queued outbound bytes of all connections together; None sizes it for the machine.
    max_buffered_bytes: int | None = Field(default=None, ge=65_536)
    # Queued outbound bytes of one connection; a client past it is disconnected (1008).
    max_connection_buffered_bytes: int = Field(default=512 * 1024, ge=4096)
    max_payload_bytes: int = Field(default=26_214_400, ge=1024, le=268_435_456)
    tick_interval_ms: int = Field(default=15_000, ge=10, le=3_600_000)
    handshake_timeout_ms: int | None = Field(default=None, ge=10, le=600_000)
    # permessage-deflate: a zlib context pair costs ~300 KB per connection, so it is off.
    compression: bool = False


class ControlUiConfig(_Model):
    """``[gateway.control_ui]``: the browser dashboard served by the gateway."""

    enabled: bool = True
    # Where the page is served; always ends with "/" ("/console" means "/console/").
    base_path: str = Field(default="/", max_length=128)
    # The Overview charts: one sample of the gateway's metrics per interval, the newest
    # ``samples`` kept (360 x 10 s = one hour).
    sample_interval_s: float = Field(default=10.0, ge=0.05, le=3600)
    samples: int = Field(default=360, ge=2, le=100_000)

    @field_validator("base_path")
    @classmethod
    def _base(cls, value: str) -> str:
        segments = value.strip("/").split("/")
        if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)*/?", value) or not value.startswith("/") \
                or any(s in (".", "..") for s in segments):
            raise ValueError(f"{value!r} is not a URL path like \"/\" or \"/console/\"")
        path = value.rstrip("/") + "/"
        if path.startswith(("/v1/", "/openclaw/v1/", "/channels/")):
            raise ValueError(f"{value!r} is inside a path the gateway serves itself")
        return path


class GatewayConfig(_Model):
    """``[gateway]``: the listener."""

    port: int = Field(default=18789, ge=0, le=65535)
    bind: str = "127.0.0.1"
    auth: AuthConfig = Field(default_factory=AuthConfig)
    # Browser origins allowed besides the gateway's own (same host) and loopback pages.
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # Peers whose X-Forwarded-For is believed (addresses or CIDR networks); none by default,
    # so the client address is the socket peer.
    trusted_proxies: tuple[str, ...] = ()
    # A connection must send a whole request head (or WebSocket upgrade) within this time.
    header_timeout_s: float = Field(default=10.0, gt=0, le=3600)
    # A request body must arrive within this time.
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # Kernel send buffer of each accepted socket (0: the OS sizes it, up to 4 MiB per socket
    # on Linux for a client that stops reading).
    send_buffer_bytes: int = Field(default=262_144, ge=0, le=67_108_864)
    ws: WsConfig = Field(default_factory=WsConfig)
    control_ui: ControlUiConfig = Field(default_factory=ControlUiConfig)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address or network") from None
        return values


class SessionConfig(_Model):
    """``[session]``: session-key shape."""

    main_key: str = "main"
    dm_scope: DmScope = "main"


class BindingMatch(_Model):
    """What a binding matches: a channel, and optionally one account, DM peer or group."""

    channel: str | None = None
    account: str | None = None
    peer: str | None = None
    group: str | None = None


class Binding(_Model):
    """``[[bindings]]``: messages that match go to ``agent`` (peer beats group beats account
    beats channel)."""

    agent: str = Field(min_length=1)
    match: BindingMatch = Field(default_factory=BindingMatch)


class DeliveryConfig(_Model):
    """``[delivery]``: how channel replies are retried (durable outbound)."""

    max_attempts: int = Field(default=12, ge=1, le=1000)
    backoff_base_ms: int = Field(default=1000, ge=1, le=600_000)
    backoff_max_ms: int = Field(default=60_000, ge=1, le=86_400_000)
    # Files replies carry (``MEDIA:`` tokens): the size cap, and local folders besides the
    # agents' workspaces that files may be sent from (relative to the state dir).
    media_max_mb: float = Field(default=20.0, gt=0, le=2048)
    media_roots: tuple[str, ...] = ()


class StoreConfig(_Model):
    """``[store]``: where sessions, transcripts, runs, channel and cron state live."""

    # None: the SQLite file <state>/clawgate.db. "postgresql://user:pw@host:port/db": a
    # PostgreSQL database (several gateways may share it); "sqlite:PATH": another SQLite file
    # (relative to the state dir). CLAWGATE_STORE_URL overrides it.
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        check_store_url(value)
        return value


def check_store_url(value: str) -> None:
    """Refuse a store URL that is neither ``postgresql://...`` nor ``sqlite:PATH``."""
    scheme, sep, rest = value.partition(":")
    if not sep or scheme not in ("postgresql", "postgres", "sqlite") or not rest.strip("/"):
        raise ValueError("must be a postgresql://user:password@host:port/database URL or "
                         "sqlite:PATH")


class Config(_Model):
    """The whole validated config."""

    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    agents: tuple[AgentConfig, ...] = ()
    engine: EngineConfig = Field(default_factory=EngineConfig)
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    session: SessionConfig = Field(default_factory=SessionConfig)
    # ``[channels.<id>]``: validated when the channel runtime starts, against the common keys
    # (``channels.accounts.Policy``) and the owning plugin's schema.
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    bindings: tuple[Binding, ...] = ()
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    cron: CronConfig = Field(default_factory=CronConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)

    def plugins_digest(self) -> str:
        """Digest of the plugins section: one input of the metadata-snapshot key."""
        return digest(self.plugins.model_dump(mode="json"))


@dataclass(frozen=True, slots=True)
class Settings:
    """A loaded config together with where it came from."""

    config: Config
    state_dir: Path
    config_path: Path

    def agent_workspace(self, agent: AgentConfig) -> Path:
        """The agent's workspace: configured (relative to the state dir) or a default folder."""
        if agent.workspace:
            return (self.state_dir / Path(agent.workspace).expanduser()).resolve()
        name = "workspace" if agent.id == DEFAULT_AGENT_ID else f"workspace-{agent.id}"
        return self.state_dir / name

    def agents(self) -> tuple[AgentConfig, ...]:
        """The configured agents, or the implicit default agent ``main``."""
        return self.config.agents or (AgentConfig(id=DEFAULT_AGENT_ID, default=True),)

    def store_location(self) -> Path | str:
        """Where the session store is: ``store.url`` (a PostgreSQL URL, or an SQLite path), by
        default the SQLite file ``<state>/clawgate.db``."""
        url = self.config.store.url
        if url is None:
            return self.state_dir / STORE_FILE
        if url.startswith("sqlite:"):
            return self.state_dir / Path(url.removeprefix("sqlite:")).expanduser()
        return url

    def workspaces(self) -> tuple[Path, ...]:
        """Every configured agent's workspace, deduplicated, in roster order."""
        return tuple(dict.fromkeys(self.agent_workspace(a) for a in self.agents()))


def digest(value: Any) -> str:
    """A stable sha256 hex digest of a JSON-able value (keys sorted)."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def write_state_file(path: Path, body: bytes) -> None:
    """Replace ``path`` with ``body`` atomically (a temporary file in the same directory, then
    a rename), creating the directory 0700; a reader sees the old file or the new one, never
    half of one. Raises OSError."""
    import tempfile  # only the writers of state files need it

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """The state directory: ``CLAWGATE_STATE_DIR`` or ``~/.clawgate``."""
    env = os.environ if env is None else env
    raw = env.get("CLAWGATE_STATE_DIR")
    return Path(raw).expanduser().resolve() if raw else Path.home() / ".clawgate"


def load(env: Mapping[str, str] | None = None, *, path: Path | None = None) -> Settings:
    """Load and validate the config named by the environment (or ``path``)."""
    env = os.environ if env is None else env
    root = state_dir(env)
    if path is None:
        raw = env.get("CLAWGATE_CONFIG")
        path = Path(raw).expanduser() if raw else root / "clawgate.toml"
    data: dict[str, Any] = {}
    if path.exists():
        import tomllib  # lazy: a zero-config gateway (no file) never parses TOML

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config: {exc}", file=str(path)) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
    config = parse(data, file=str(path))
    config = _apply_env(config, env)
    return Settings(config=config, state_dir=root, config_path=path)


def parse(data: Mapping[str, Any], *, file: str | None = None) -> Config:
    """Validate a config mapping; the error names the dotted path of the first bad key.

    Types are strict: ``"4"`` is not an integer and ``1`` is not a boolean (the mapping is
    validated as the JSON it would be, so TOML arrays still fill tuple fields).
    """
    agents = data.get("agents")
    if isinstance(agents, list | tuple):  # a bare string model is the primary (as OpenClaw)
        data = {**data, "agents": [
            {**a, "model": {"primary": a["model"]}}
            if isinstance(a, dict) and isinstance(a.get("model"), str) else a for a in agents]}
    try:
        raw = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise ConfigError(f"not a config value: {exc}", file=file) from None
    try:
        config = Config.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        dotted = ".".join(str(p) for p in first["loc"])
        message = ("unknown key" if first["type"] == "extra_forbidden"
                   else str(first["msg"]).removeprefix("Value error, "))
        raise ConfigError(message, path=dotted, file=file) from exc
    _check_agents(config, file)
    return config


def _check_agents(config: Config, file: str | None) -> None:
    seen: set[str] = set()
    for i, agent in enumerate(config.agents):
        if agent.id in seen:
            raise ConfigError(f"duplicate agent id {agent.id!r}", path=f"agents.{i}.id", file=file)
        seen.add(agent.id)
    if sum(a.default for a in config.agents) > 1:
        raise ConfigError("more than one agent has default = true", path="agents", file=file)


def _apply_env(config: Config, env: Mapping[str, str]) -> Config:
    url = env.get("CLAWGATE_STORE_URL")
    if url:
        try:
            check_store_url(url)
        except ValueError as exc:
            raise ConfigError(f"CLAWGATE_STORE_URL {exc}", path="store.url") from None
        config = config.model_copy(update={"store": StoreConfig(url=url)})
    port = env.get("CLAWGATE_GATEWAY_PORT")
    if not port:
        return config
    try:
        value = int(port)
        if not 0 <= value <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"CLAWGATE_GATEWAY_PORT={port!r} is not a port number", path="gateway.port"
        ) from None
    gateway = config.gateway.model_copy(update={"port": value})
    return config.model_copy(update={"gateway": gateway})
