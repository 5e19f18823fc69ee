"""The clock tool plugin: ``current_time`` in an IANA time zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clawgate import PluginApi

PARAMETERS = {
    "type": "object",
    "properties": {
        "timezone": {"type": "string", "description": "IANA time zone, e.g. Europe/Paris"},
    },
    "additionalProperties": False,
}


def register(api: PluginApi) -> None:
    default_zone = str(api.config["default_timezone"])

    def current_time(arguments: dict[str, Any]) -> dict[str, str]:
        """The current date and time (ISO 8601) in the given time zone."""
        name = str(arguments.get("timezone") or default_zone)
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r}") from None
        now = datetime.now(zone)
        return {"timezone": name, "iso": now.isoformat(timespec="seconds"),
                "weekday": now.strftime("%A")}

    api.register_tool(current_time, parameters=PARAMETERS)
