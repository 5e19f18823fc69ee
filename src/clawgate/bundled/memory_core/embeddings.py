"""Embeddings from any OpenAI-compatible ``POST /v1/embeddings`` endpoint.

Config (``embeddings`` in the plugin config)::

    base_url = "http://127.0.0.1:8080/v1"   # the endpoint is <base_url>/embeddings
    model = "text-embedding-3-small"
    api_key_env = "OPENAI_API_KEY"          # optional: a local server may need no key
    dimensions = 512                         # optional: sent to models that can shorten
    batch_size = 64
    timeout_s = 30

Vectors come back L2-normalised, so a dot product is their cosine. The *identity* of an
embedder (endpoint, model, dimensions) is written into the index with the vectors: an index
built with another identity is stale until it is rebuilt (``clawgate memory index --force``).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clawgate import ClawgateError

if TYPE_CHECKING:  # imported when an embedder is made: ~5 MB a keyword-only gateway never pays
    import httpx

DEFAULT_BATCH = 64
DEFAULT_TIMEOUT_S = 30.0
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class EmbeddingError(ClawgateError):
    """The embedding endpoint failed or answered something unusable."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class EmbeddingSettings:
    base_url: str
    model: str
    api_key_env: str | None = None
    dimensions: int | None = None
    batch_size: int = DEFAULT_BATCH
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> EmbeddingSettings | None:
        """The settings of the plugin config's ``embeddings`` table, or None (lexical only)."""
        if not raw:
            return None
        dims = raw.get("dimensions")
        return cls(
            base_url=str(raw["base_url"]).rstrip("/"),
            model=str(raw["model"]),
            api_key_env=str(raw["api_key_env"]) if raw.get("api_key_env") else None,
            dimensions=int(dims) if dims else None,
            batch_size=int(raw.get("batch_size") or DEFAULT_BATCH),
            timeout_s=float(raw.get("timeout_s") or DEFAULT_TIMEOUT_S),
        )

    @property
    def identity(self) -> str:
        """What the vectors of an index depend on: endpoint, model and dimensions."""
        return f"{self.base_url}|{self.model}|{self.dimensions or ''}"


class Embedder:
    """An async client for one embedding endpoint. ``aclose()`` releases its connections."""

    def __init__(self, settings: EmbeddingSettings,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        import httpx

        self._httpx = httpx
        self.settings = settings
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(settings.timeout_s), transport=transport,
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
        )
        self.requests_total = 0
        self.errors_total = 0

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def identity(self) -> str:
        return self.settings.identity

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One normalised vector per text, in order (batched by ``batch_size``)."""
        vectors: list[list[float]] = []
        size = max(1, self.settings.batch_size)
        for start in range(0, len(texts), size):
            vectors.extend(await self._batch(list(texts[start:start + size])))
        return vectors

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _batch(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"model": self.settings.model, "input": texts,
                                "encoding_format": "float"}
        if self.settings.dimensions:
            body["dimensions"] = self.settings.dimensions
        url = f"{self.settings.base_url}/embeddings"
        for attempt in range(2):
            self.requests_total += 1
            try:
                response = await self._client.post(url, json=body)
            except self._httpx.HTTPError as exc:
                self.errors_total += 1
                if attempt == 0 and not isinstance(exc, self._httpx.TimeoutException):
                    continue
                raise EmbeddingError(f"embedding request to {url} failed: {exc!r}") from exc
            if response.status_code in _RETRY_STATUSES and attempt == 0:
                self.errors_total += 1
                await asyncio.sleep(_retry_after(response))
                continue
            if response.status_code != 200:
                self.errors_total += 1
                raise EmbeddingError(
                    f"embedding endpoint {url} answered {response.status_code}: "
                    f"{response.text[:200]}", status=response.status_code)
            return _parse(response, len(texts))
        raise EmbeddingError(f"embedding endpoint {url} kept failing")


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(2.0, max(0.0, float(response.headers.get("retry-after", "0.2"))))
    except ValueError:
        return 0.2


def _parse(response: httpx.Response, count: int) -> list[list[float]]:
    try:
        data = response.json()["data"]
        rows = sorted(data, key=lambda row: int(row.get("index", 0)))
        vectors = [[float(x) for x in row["embedding"]] for row in rows]
    except (ValueError, KeyError, TypeError) as exc:
        raise EmbeddingError(f"unusable embeddings response: {exc!r}") from None
    if len(vectors) != count or any(not v for v in vectors):
        raise EmbeddingError(f"asked for {count} embeddings, got {len(vectors)}")
    dims = len(vectors[0])
    if any(len(v) != dims for v in vectors):
        raise EmbeddingError("embeddings of one response have different dimensions")
    return [normalize(v) for v in vectors]


def normalize(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to unit length (a zero vector stays zero)."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else list(vector)
