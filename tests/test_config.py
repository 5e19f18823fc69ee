"""Typed config: defaults, unknown keys with their dotted path, types, TOML, env overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clawgate import config
from clawgate.config import Config, ConfigError


def load(tmp_path: Path, text: str | None = None, **env: str) -> config.Settings:
    if text is not None:
        (tmp_path / "clawgate.toml").write_text(text, encoding="utf-8")
    return config.load({"CLAWGATE_STATE_DIR": str(tmp_path), **env})


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.config == Config()
    assert settings.state_dir == tmp_path.resolve()
    assert settings.config_path == tmp_path.resolve() / "clawgate.toml"
    assert settings.config.gateway.port == 18789
    assert settings.config.plugins.enabled is True
    assert [a.id for a in settings.agents()] == ["main"]
    assert settings.workspaces() == (tmp_path.resolve() / "workspace",)


def test_state_dir_defaults_to_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.state_dir({}) == tmp_path / ".clawgate"


def test_full_file_parses(tmp_path: Path) -> None:
    settings = load(tmp_path, """
[gateway]
port = 8080
bind = "0.0.0.0"
auth = { mode = "none" }

[engine]
max_concurrent = 2
queue_mode = "collect"

[plugins]
allow = [" a ", "a", "b", ""]
deny = ["c"]
load_paths = ["extra"]
slots = { memory = "none" }

[plugins.entries.a]
enabled = true
config = { nested = { x = 1 } }

[[agents]]
id = "main"
model = "openai/gpt-5"
default = true

[[agents]]
id = "helper"
workspace = "ws-helper"
model = { primary = "echo/echo", fallbacks = ["openai/gpt-5"] }
""")
    cfg = settings.config
    assert cfg.gateway.port == 8080 and cfg.gateway.auth.mode == "none"
    assert cfg.engine.queue_mode == "collect"
    assert cfg.plugins.allow == ("a", "b")
    assert cfg.plugins.slots.memory == "none"
    assert cfg.plugins.entry("a").config == {"nested": {"x": 1}}
    assert cfg.plugins.entry("missing").enabled is None
    assert cfg.agents[0].model.primary == "openai/gpt-5"
    assert cfg.agents[1].model.fallbacks == ("openai/gpt-5",)
    assert settings.workspaces() == (tmp_path.resolve() / "workspace",
                                     (tmp_path / "ws-helper").resolve())


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"gateway": {"prot": 1}}, "gateway.prot"),
        ({"plugins": {"entries": {"x": {"bogus": 1}}}}, "plugins.entries.x.bogus"),
        ({"plugins": {"slots": {"memroy": "a"}}}, "plugins.slots.memroy"),
        ({"agents": [{"id": "a", "modle": "x"}]}, "agents.0.modle"),
        ({"nope": {}}, "nope"),
        ({"gateway": {"auth": {"tokne": "x"}}}, "gateway.auth.tokne"),
    ],
)
def test_unknown_key_names_its_dotted_path(data: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(data, file="/etc/clawgate.toml")
    assert caught.value.path == path
    assert caught.value.file == "/etc/clawgate.toml"
    assert str(caught.value) == f"/etc/clawgate.toml: {path}: unknown key"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"gateway": {"port": "eighty"}}, "gateway.port"),
        ({"gateway": {"port": 70000}}, "gateway.port"),
        ({"engine": {"max_concurrent": 0}}, "engine.max_concurrent"),
        ({"engine": {"queue_mode": "yolo"}}, "engine.queue_mode"),
        ({"plugins": {"enabled": "sometimes"}}, "plugins.enabled"),
        ({"plugins": {"allow": "a"}}, "plugins.allow"),
        ({"plugins": {"entries": {"x": {"config": []}}}}, "plugins.entries.x.config"),
        ({"agents": [{"name": "no id"}]}, "agents.0.id"),
        ({"agents": {"id": "a"}}, "agents"),
    ],
)
def test_wrong_types_are_refused_with_their_path(data: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse(data)
    assert caught.value.path == path
    assert path in str(caught.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load(tmp_path, "[gateway\nport = 1\n")
    assert caught.value.file == str(tmp_path.resolve() / "clawgate.toml")


def test_unknown_key_in_file_names_file_and_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "[gateway]\nprot = 1\n")
    assert caught.value.path == "gateway.prot"
    assert str(tmp_path.resolve() / "clawgate.toml") in str(caught.value)


def test_duplicate_agent_ids_are_refused() -> None:
    with pytest.raises(ConfigError, match="duplicate agent id 'a'") as caught:
        config.parse({"agents": [{"id": "a"}, {"id": "b"}, {"id": "a"}]})
    assert caught.value.path == "agents.2.id"


def test_more_than_one_default_agent_is_refused() -> None:
    with pytest.raises(ConfigError, match="default") as caught:
        config.parse({"agents": [{"id": "a", "default": True}, {"id": "b", "default": True}]})
    assert caught.value.path == "agents"


def test_config_is_immutable() -> None:
    cfg = config.parse({})
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        cfg.gateway.port = 1  # type: ignore[misc]


def test_clawgate_config_env_names_another_file(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text("[gateway]\nport = 1234\n")
    (tmp_path / "clawgate.toml").write_text("[gateway]\nport = 4321\n")
    settings = load(tmp_path, CLAWGATE_CONFIG=str(other))
    assert settings.config_path == other
    assert settings.config.gateway.port == 1234
    missing = load(tmp_path, CLAWGATE_CONFIG=str(tmp_path / "missing.toml"))
    assert missing.config == Config()


def test_state_dir_env_is_resolved(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    settings = config.load({"CLAWGATE_STATE_DIR": str(tmp_path / "a" / ".." / "a")})
    assert settings.state_dir == (tmp_path / "a").resolve()


def test_gateway_port_env_override(tmp_path: Path) -> None:
    settings = load(tmp_path, "[gateway]\nport = 1\n", CLAWGATE_GATEWAY_PORT="8081")
    assert settings.config.gateway.port == 8081
    assert load(tmp_path, CLAWGATE_GATEWAY_PORT="").config.gateway.port == 1


@pytest.mark.parametrize("bad", ["http", "-1", "65536", "80.5", "0x50"])
def test_gateway_port_env_bad_value_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, CLAWGATE_GATEWAY_PORT=bad)
    assert caught.value.path == "gateway.port"
    assert "CLAWGATE_GATEWAY_PORT" in str(caught.value)


def test_plugins_digest_ignores_other_sections_and_spelling() -> None:
    base = config.parse({"plugins": {"allow": ["a"]}})
    same = config.parse({"plugins": {"allow": [" a", "a "]}, "gateway": {"port": 1},
                         "engine": {"max_concurrent": 3}})
    assert base.plugins_digest() == same.plugins_digest()
    assert config.parse({"plugins": {"allow": ["b"]}}).plugins_digest() != base.plugins_digest()


def test_digest_is_key_order_independent() -> None:
    assert config.digest({"a": 1, "b": [1, {"c": 2, "d": 3}]}) == config.digest(
        {"b": [1, {"d": 3, "c": 2}], "a": 1})
    assert config.digest([1, 2]) != config.digest([2, 1])


def test_store_url_selects_the_backend_and_bad_ones_are_refused(tmp_path: Path) -> None:
    state = tmp_path  # load() makes tmp_path the state directory
    assert load(tmp_path).store_location() == state / "clawgate.db"
    other = load(tmp_path, '[store]\nurl = "sqlite:other/s.db"\n')
    assert other.store_location() == state / "other" / "s.db"
    url = "postgresql://u:pw@db:5432/claw"
    env = load(tmp_path, '[store]\nurl = "sqlite:other/s.db"\n', CLAWGATE_STORE_URL=url)
    assert env.store_location() == url  # the environment beats the file
    with pytest.raises(ConfigError, match="store.url") as info:
        config.parse({"store": {"url": "mysql://u:pw@db/claw"}})
    assert "postgresql://" in str(info.value)
    with pytest.raises(ConfigError, match="CLAWGATE_STORE_URL") as info:
        load(tmp_path, CLAWGATE_STORE_URL="db.example")
    assert info.value.path == "store.url"
