"""The Anthropic provider plugin. API keys are read from the environment variables the config
names (``api_key_env``, or one per entry of ``profiles``), so secrets never sit in the config
file. The ``anthropic`` SDK is imported here, when the plugin loads, never by a gateway that
does not enable it."""

from __future__ import annotations

from clawgate import PluginApi, parse_models, profile_credentials

from .provider import AnthropicProvider


def register(api: PluginApi) -> None:
    config = api.config
    api.register_provider(
        AnthropicProvider(
            "anthropic",
            base_url=str(config["base_url"]).rstrip("/"),
            profiles=profile_credentials(config, "anthropic"),
            models=parse_models(config["models"], provider="anthropic"),
            max_tokens=int(config["max_tokens"]),
            thinking_budgets={k: int(v) for k, v in config["thinking_budgets"].items()},
            prompt_caching=bool(config["prompt_caching"]),
            connect_timeout=float(config["connect_timeout_s"]),
            read_timeout=float(config["read_timeout_s"]),
            max_retries=int(config["max_retries"]),
            cooldowns=tuple(float(s) for s in config["cooldowns_s"]),
        )
    )
