"""Heartbeat rules: HEARTBEAT_OK suppression, streaming previews, HEARTBEAT.md emptiness, active
hours, who gets a heartbeat and the gate order; the [heartbeat] and [cron] config."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clawgate import config
from clawgate.cron.heartbeat import (
    HEARTBEAT_PROMPT,
    HEARTBEAT_TOKEN,
    ActiveHours,
    Decision,
    gate,
    in_active_hours,
    is_effectively_empty,
    plan,
    preview,
    suppress,
)
from clawgate.cron.schedule import parse_at
from clawgate.errors import ConfigError

LONG = "x" * 301
EXACT = "y" * 300


@pytest.mark.parametrize(("reply", "deliver", "text"), [
    ("HEARTBEAT_OK", False, ""),
    ("  HEARTBEAT_OK \n", False, ""),
    ("HEARTBEAT_OK all quiet", False, ""),  # token at the start, short rest
    ("All quiet. HEARTBEAT_OK", False, ""),  # at the end
    ("All quiet. HEARTBEAT_OK.", False, ""),  # at the end with trailing punctuation
    ("HEARTBEAT_OK HEARTBEAT_OK", False, ""),
    ("**HEARTBEAT_OK**", False, ""),
    ("<b>HEARTBEAT_OK</b>", False, ""),
    (f"HEARTBEAT_OK {EXACT}", False, ""),  # exactly ack_max_chars left: still an ack
    (f"HEARTBEAT_OK {LONG}", True, LONG),  # over it: delivered without the token
    (f"{LONG} HEARTBEAT_OK", True, LONG),
    (f"Disk almost full:\n{LONG}\nHEARTBEAT_OK", True, f"Disk almost full:\n{LONG}"),
    ("I wrote HEARTBEAT_OK in the log for you", True,  # in the middle: no ack, but cut out
     "I wrote in the log for you"),
    ("Backup failed.\n**HEARTBEAT_OK** was wrong, sorry", True,
     "Backup failed.\nwas wrong, sorry"),
    ("The server is down!", True, "The server is down!"),
    ("", False, ""),
    (None, False, ""),
])
def test_suppression(reply: str | None, deliver: bool, text: str) -> None:
    decision = suppress(reply, 300)
    assert (decision.deliver, decision.text) == (deliver, text)


def test_ack_max_chars_is_the_limit() -> None:
    assert suppress("HEARTBEAT_OK short note", 5).deliver is True
    assert suppress("HEARTBEAT_OK short note", 10) == Decision(False, "", True)
    assert suppress("HEARTBEAT_OK note", 0) == Decision(True, "note", True)


def test_outside_a_heartbeat_only_the_token_is_removed() -> None:
    assert suppress("HEARTBEAT_OK done", mode="message") == Decision(True, "done", True)
    assert suppress("HEARTBEAT_OK", mode="message") == Decision(False, "", True)
    # Outside a heartbeat a token in the middle is the model's text.
    assert suppress("so HEARTBEAT_OK then", mode="message") == Decision(
        True, "so HEARTBEAT_OK then", False)


@pytest.mark.parametrize("reply", [
    "HEARTBEAT_OK", "HEARTBEAT_OK all good", EXACT, f"{LONG} HEARTBEAT_OK",
    f"{LONG} HEARTBEAT_OK!!", f"HEARTBEAT_OK {LONG}", f"**HEARTBEAT_OK** {LONG}",
    f"{LONG} and HEARTBEAT_OK in the middle", f"{EXACT} HEARTBEAT_OK",
])
def test_streamed_previews_never_show_the_token_or_an_ack(reply: str) -> None:
    final = suppress(reply, 300)
    for end in range(1, len(reply) + 1):  # the reply streaming in, one character at a time
        shown = preview(reply[:end], 300)
        assert HEARTBEAT_TOKEN not in shown
        assert final.text.startswith(shown) if final.deliver else shown == ""


def test_a_long_alert_previews_as_it_streams() -> None:
    assert preview(f"{LONG} more", 300) == f"{LONG} more"
    assert preview("short", 300) == ""


@pytest.mark.parametrize(("text", "empty"), [
    ("", True),
    ("\n  \n", True),
    ("# HEARTBEAT.md\n\n## Tasks\n", True),
    ("# Keep this file empty to skip heartbeat calls.\n# Add tasks below.\n", True),
    ("- [ ]\n* [x]\n+\n-", True),
    ("# Title\n<!-- add tasks below, e.g.\n- check mail -->\n", True),
    ("- Check email", False),
    ("# HEARTBEAT.md\nRemind me to call mom", False),
    ("#TODO call mom", False),  # not a heading: no space after #
    ("<!-- a --> check the logs", False),
    (None, False),  # a missing file is not empty: the heartbeat runs
])
def test_effectively_empty(text: str | None, empty: bool) -> None:
    assert is_effectively_empty(text) is empty


def hours(start: str, end: str, tz: str = "Europe/Berlin") -> ActiveHours:
    return ActiveHours.from_config(config.ActiveHoursConfig(start=start, end=end, tz=tz))


@pytest.mark.parametrize(("window", "at", "inside"), [
    (("08:00", "22:00"), "2026-01-05T07:00:00Z", True),  # 08:00 Berlin
    (("08:00", "22:00"), "2026-01-05T06:59:00Z", False),
    (("08:00", "22:00"), "2026-01-05T21:00:00Z", False),  # 22:00, end exclusive
    (("08:00", "24:00"), "2026-01-05T22:59:00Z", True),  # 23:59
    (("22:00", "06:00"), "2026-01-05T23:30:00Z", True),  # wraps past midnight
    (("22:00", "06:00"), "2026-01-05T04:59:00Z", True),
    (("22:00", "06:00"), "2026-01-05T05:00:00Z", False),
    (("09:00", "09:00"), "2026-01-05T08:00:00Z", False),  # empty window: never
    (("08:00", "22:00"), "2026-07-06T06:00:00Z", True),  # summer: 08:00 CEST
])
def test_active_hours(window: tuple[str, str], at: str, inside: bool) -> None:
    assert in_active_hours(parse_at(at), hours(*window)) is inside


def test_no_window_means_always() -> None:
    assert in_active_hours(0, None)


def settings(tmp_path: Path, data: dict[str, Any]) -> config.Settings:
    return config.Settings(config.parse(data), state_dir=tmp_path,
                           config_path=tmp_path / "clawgate.toml")


def test_only_the_default_agent_without_agent_tables(tmp_path: Path) -> None:
    beats = plan(settings(tmp_path, {"agents": [{"id": "a"}, {"id": "b", "default": True}]}))
    assert list(beats) == ["b"]
    beat = beats["b"]
    assert (beat.every_ms, beat.target, beat.to, beat.ack_max_chars) == (1_800_000, "last",
                                                                         None, 300)
    assert beat.prompt == HEARTBEAT_PROMPT and HEARTBEAT_TOKEN in beat.prompt
    assert list(plan(settings(tmp_path, {}))) == ["main"]


def test_agent_tables_choose_the_agents_and_override_the_defaults(tmp_path: Path) -> None:
    beats = plan(settings(tmp_path, {
        "heartbeat": {"every": "1h", "target": "telegram", "to": "42", "ack_max_chars": 100,
                      "active_hours": {"start": "08:00", "end": "20:00", "tz": "UTC"}},
        "agents": [{"id": "main"}, {"id": "ops", "heartbeat": {"every": "15m"}},
                   {"id": "quiet", "heartbeat": {"prompt": "  Check the queue.  "}}],
    }))
    assert list(beats) == ["ops", "quiet"]
    assert beats["ops"].every_ms == 900_000 and beats["ops"].target == "telegram"
    assert beats["ops"].ack_max_chars == 100 and beats["ops"].to == "42"
    assert beats["quiet"].every_ms == 3_600_000 and beats["quiet"].prompt == "Check the queue."
    assert beats["ops"].active_hours == ActiveHours(480, 1200, ZoneInfo("UTC"))


def test_a_disabled_heartbeat_is_not_planned(tmp_path: Path) -> None:
    assert plan(settings(tmp_path, {"heartbeat": {"every": "0m"}})) == {}
    beats = plan(settings(tmp_path, {"heartbeat": {"every": "0m"}, "agents": [
        {"id": "a", "heartbeat": {"every": "10m"}}, {"id": "b", "heartbeat": {}}]}))
    assert list(beats) == ["a"]


def test_gate_order(tmp_path: Path) -> None:
    beat = plan(settings(tmp_path, {"heartbeat": {"active_hours": {
        "start": "08:00", "end": "20:00", "tz": "UTC"}}}))["main"]
    day, night = parse_at("2026-01-05T12:00:00Z"), parse_at("2026-01-05T21:00:00Z")
    assert gate(beat, now_ms=night, heartbeat_md="- check", busy=True) == "outside-active-hours"
    assert gate(beat, now_ms=day, heartbeat_md="# nothing\n", busy=True) == "empty-heartbeat-file"
    assert gate(beat, now_ms=day, heartbeat_md="- check", busy=True) == "busy"
    assert gate(beat, now_ms=day, heartbeat_md=None, busy=False) is None
    assert gate(beat, now_ms=day, heartbeat_md="- check", busy=False) is None


@pytest.mark.parametrize(("data", "path"), [
    ({"heartbeat": {"every": "soon"}}, "heartbeat.every"),
    ({"heartbeat": {"every": 30}}, "heartbeat.every"),
    ({"heartbeat": {"active_hours": {"start": "8:00", "end": "20:00"}}},
     "heartbeat.active_hours.start"),
    ({"heartbeat": {"active_hours": {"start": "24:00", "end": "20:00"}}},
     "heartbeat.active_hours.start"),
    ({"heartbeat": {"active_hours": {"start": "08:00", "end": "20:00", "tz": "Mars/Base"}}},
     "heartbeat.active_hours.tz"),
    ({"heartbeat": {"ack_max_chars": -1}}, "heartbeat.ack_max_chars"),
    ({"heartbeat": {"interval": "5m"}}, "heartbeat.interval"),
    ({"agents": [{"id": "a", "heartbeat": {"every": "1 hour"}}]}, "agents.0.heartbeat.every"),
    ({"cron": {"max_concurrent_runs": 0}}, "cron.max_concurrent_runs"),
    ({"cron": {"failure_threshold": "5"}}, "cron.failure_threshold"),
    ({"cron": {"enabled": "yes"}}, "cron.enabled"),
    ({"cron": {"run_history": 0}}, "cron.run_history"),
])
def test_bad_config_names_the_key(data: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.parse(data)
    assert err.value.path == path


def test_config_defaults() -> None:
    parsed = config.parse({})
    assert parsed.cron == config.CronConfig(enabled=True, max_concurrent_runs=1,
                                            failure_threshold=5, run_history=200,
                                            max_jobs=10_000, run_timeout_s=3600.0)
    assert parsed.heartbeat.every == "30m" and parsed.heartbeat.ack_max_chars == 300
    assert config.parse({"heartbeat": {"every": " 1H30m "}}).heartbeat.every == "1h30m"
