"""The echo provider plugin: replies with the user's own words, offline."""

from __future__ import annotations

from clawgate import PluginApi

from .provider import EchoProvider


def register(api: PluginApi) -> None:
    api.register_provider(
        EchoProvider(
            delay_s=float(api.config["delay_ms"]) / 1000,
            chunk_chars=int(api.config["chunk_chars"]),
        )
    )
