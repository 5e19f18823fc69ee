"""The OpenAI provider plugin. API keys are read from the environment variables the config
names (``api_key_env``, or one per entry of ``profiles``), so secrets never sit in the config
file."""

from __future__ import annotations

from clawgate import PluginApi, parse_models, profile_credentials

from .provider import OpenAIProvider


def register(api: PluginApi) -> None:
    config = api.config
    api.register_provider(
        OpenAIProvider(
            "openai",
            base_url=str(config["base_url"]).rstrip("/"),
            profiles=profile_credentials(config, "openai"),
            api=config["api"],
            connect_timeout=float(config["connect_timeout_s"]),
            read_timeout=float(config["read_timeout_s"]),
            max_retries=int(config["max_retries"]),
            cooldowns=tuple(float(s) for s in config["cooldowns_s"]),
            models=parse_models(config["models"], provider="openai"),
        )
    )
