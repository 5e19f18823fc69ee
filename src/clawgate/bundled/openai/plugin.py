"""The OpenAI-compatible provider plugin. The API key is read from the environment variable the
config names, so secrets never sit in the config file."""

from __future__ import annotations

import os

from clawgate import ModelInfo, PluginApi

from .provider import OpenAIProvider


def register(api: PluginApi) -> None:
    config = api.config
    api.register_provider(
        OpenAIProvider(
            "openai",
            base_url=str(config["base_url"]).rstrip("/"),
            api_key=os.environ.get(str(config["api_key_env"])) or None,
            connect_timeout=float(config["connect_timeout_s"]),
            read_timeout=float(config["read_timeout_s"]),
            max_retries=int(config["max_retries"]),
            models=[ModelInfo(m) for m in config["models"]],
        )
    )
