"""The OpenAI provider: chat completions or the Responses API, streamed over HTTP.

Works with OpenAI and the many servers that copy its chat API (vLLM, llama.cpp, Ollama,
LiteLLM, OpenRouter, ...). Each model is called through the provider's ``api`` (``chat`` by
default) unless its catalogue entry names another (``api = "responses"`` for models that exist
only there). Retries, auth profiles and error kinds are in :mod:`.http`; every failure surfaces
as a :class:`~clawgate.errors.ProviderError` whose ``kind`` tells the failover layer whether
another model is worth trying.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

import orjson

from clawgate import (
    AuthProfiles,
    Credential,
    ModelEvent,
    ModelInfo,
    ModelRequest,
    ProfileStatus,
)

from . import chat, responses
from .http import Http, classify, http_error

Api = Literal["chat", "responses"]
APIS: tuple[Api, ...] = ("chat", "responses")

__all__ = ["APIS", "Api", "OpenAIProvider", "classify", "http_error"]


class OpenAIProvider:
    """A provider speaking OpenAI's chat-completions and Responses APIs."""

    def __init__(
        self,
        id: str = "openai",
        *,
        base_url: str,
        api_key: str | None = None,
        profiles: Sequence[Credential] | None = None,
        api: Api = "chat",
        connect_timeout: float = 10,
        read_timeout: float = 120,
        max_retries: int = 2,
        backoff_base: float = 0.5,
        cooldowns: Sequence[float] = (30.0, 60.0, 300.0),
        models: list[ModelInfo] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the provider; no connection is made until the first call. ``profiles``
        (several credentials) replaces ``api_key`` (one)."""
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}, not {api!r}")
        self.id = id
        self.base_url = base_url.rstrip("/")
        self.api: Api = api
        self._models = list(models or [])
        self._by_id = {m.id: m for m in self._models}
        creds = list(profiles or [Credential(f"{id}:default", api_key or None, "config")])
        self.profiles = AuthProfiles(id, creds, schedule=cooldowns, clock=clock)
        self._http = Http(id, self.base_url, self.profiles, connect_timeout=connect_timeout,
                          read_timeout=read_timeout, max_retries=max_retries,
                          backoff_base=backoff_base)

    def models(self) -> list[ModelInfo]:
        """The models configured for this provider."""
        return list(self._models)

    def auth_status(self) -> list[ProfileStatus]:
        """The auth profiles' state (no secrets)."""
        return self.profiles.status()

    def reset_auth(self, profile_id: str | None = None) -> list[str]:
        """Clear the cooldown of one profile, or of all."""
        return self.profiles.reset(profile_id)

    async def aclose(self) -> None:
        """Close the HTTP client and its pooled connections."""
        await self._http.aclose()

    async def list_models(self) -> list[ModelInfo]:
        """Ask the server which models it serves (``GET /models``); no retries."""
        content = await self._http.get("/models")
        try:
            data = orjson.loads(content).get("data") or []
        except (orjson.JSONDecodeError, AttributeError) as exc:
            raise self._http.error("GET /models returned no model list") from exc
        return [ModelInfo(str(m["id"])) for m in data if isinstance(m, dict) and "id" in m]

    def api_for(self, model: str) -> Api:
        """The API ``model`` is called through: its catalogue entry's, else the provider's."""
        info = self._by_id.get(model)
        return info.api if info is not None and info.api in APIS else self.api  # type: ignore[return-value]

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream one call as ``TextDelta``/``ToolCall`` events and a ``Finish``."""
        info = self._by_id.get(request.model)
        if self.api_for(request.model) == "responses":
            body = responses.payload(request, info)
            path, parse = responses.PATH, responses.events
        else:
            body = chat.payload(request, reasoning=info is not None and info.reasoning)
            path, parse = chat.PATH, chat.events
        async for event in self._http.stream(path, body, lambda r: parse(self.id, r),
                                             request.session_key):
            yield event
