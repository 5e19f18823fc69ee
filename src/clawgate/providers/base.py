"""What a model provider is: a streaming call from chat messages to text, tool calls and usage.

Messages and tool definitions use the OpenAI chat-completions shapes (``{"role": ..., "content":
...}`` and ``{"type": "function", "function": {...}}``), the lingua franca of model APIs, so the
OpenAI-compatible provider forwards them unchanged and other providers translate once.

Token counts follow the OpenAI convention: ``Usage.input`` counts every prompt token, and
``cache_read`` / ``cache_write`` say how many of them were read from or written to the
provider's prompt cache (a provider whose API reports them separately, like Anthropic's, adds
them up). Prices are USD per million tokens (:class:`ModelCost`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, get_args, runtime_checkable

Message = dict[str, Any]
ToolSpec = dict[str, Any]
# OpenClaw's /think levels; each provider maps them onto its API (budget, effort, or nothing).
ThinkingLevel = Literal["off", "minimal", "low", "medium", "high", "xhigh"]
THINKING_LEVELS: tuple[ThinkingLevel, ...] = get_args(ThinkingLevel)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the provider (zeros when it reports none)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input + other.input, self.output + other.output,
                     self.cache_read + other.cache_read, self.cache_write + other.cache_write)


@dataclass(frozen=True, slots=True)
class Cost:
    """What one call (or a sum of calls) cost, in USD, split by token kind."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0

    @property
    def total(self) -> float:
        return self.input + self.output + self.cache_read + self.cache_write

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.input + other.input, self.output + other.output,
                    self.cache_read + other.cache_read, self.cache_write + other.cache_write)

    def as_dict(self) -> dict[str, float]:
        """``{"input", "output", "cache_read", "cache_write", "total"}``, rounded to 1e-9 USD."""
        return {"input": _usd(self.input), "output": _usd(self.output),
                "cache_read": _usd(self.cache_read), "cache_write": _usd(self.cache_write),
                "total": _usd(self.total)}


def _usd(value: float) -> float:
    return round(value, 9)


@dataclass(frozen=True, slots=True)
class ModelCost:
    """A model's prices in USD per million tokens."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0

    def of(self, usage: Usage) -> Cost:
        """The cost of ``usage``: uncached input at the input price, cache reads and writes at
        theirs (``usage.input`` includes them), output at the output price."""
        cached = usage.cache_read + usage.cache_write
        fresh = max(0, usage.input - cached)
        scale = 1e-6
        return Cost(fresh * self.input * scale, usage.output * self.output * scale,
                    usage.cache_read * self.cache_read * scale,
                    usage.cache_write * self.cache_write * scale)


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model call.

    ``session_key`` lets a provider keep a session on one credential (auth-profile stickiness,
    warm prompt caches); ``thinking`` is the session's thinking level (None: the provider's
    default, usually off).
    """

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    session_key: str | None = None
    thinking: ThinkingLevel | None = None


def text_of(message: Message) -> str:
    """The text of a message: its content string, or its text parts concatenated."""
    content: Any = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text")
        )
    return ""


SAMPLING_EXTRAS = ("top_p", "frequency_penalty", "presence_penalty", "seed", "stop")


def sampling_request(model: str, messages: tuple[Message, ...], tools: tuple[ToolSpec, ...],
                     sampling: dict[str, Any]) -> ModelRequest:
    """A request carrying a client's sampling options: temperature and max_tokens as fields,
    the other OpenAI options (top_p, penalties, seed, stop) in ``extra``."""
    temperature = sampling.get("temperature")
    max_tokens = sampling.get("max_tokens")
    return ModelRequest(
        model, messages, tools,
        temperature=None if temperature is None else float(temperature),
        max_tokens=None if max_tokens is None else int(max_tokens),
        extra={k: sampling[k] for k in SAMPLING_EXTRAS if sampling.get(k) is not None},
    )


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of assistant text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call requested by the model (arguments as a JSON string)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of one model call.

    ``extra`` holds fields the engine keeps on the stored assistant message and sends back with
    the history (e.g. Anthropic's signed ``thinking_blocks``, OpenAI's ``reasoning_content``);
    a provider that does not know a field leaves it out of its request.
    """

    reason: str = "stop"
    usage: Usage = Usage()
    extra: Mapping[str, Any] = field(default_factory=dict)


ModelEvent = TextDelta | ToolCall | Finish


InputKind = Literal["text", "image", "document"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model a provider offers, with its limits and prices when configured.

    ``aliases`` are short names (``opus``) that resolve to this model; ``api`` names the wire
    API for providers that speak several (the ``openai`` plugin: ``chat`` or ``responses``).
    """

    id: str
    name: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    input: tuple[InputKind, ...] = ("text",)
    reasoning: bool = False
    cost: ModelCost | None = None
    aliases: tuple[str, ...] = ()
    api: str | None = None


class ProfileStatus(TypedDict):
    """One auth profile on the wire (``models.authStatus``); never carries the secret."""

    id: str
    provider: str
    source: str
    hasKey: bool
    state: Literal["ok", "cooldown"]
    errorCount: int
    cooldownUntil: int | None
    cooldownRemainingMs: int
    lastError: str | None
    lastUsed: int | None
    sessions: int


@runtime_checkable
class Provider(Protocol):
    """A model provider, registered by a plugin with ``api.register_provider``."""

    id: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Stream the events of one call; raise ``ProviderError`` on failure."""
        ...

    def models(self) -> list[ModelInfo]:
        """The models this provider offers (may be empty when unknown)."""
        ...

    async def aclose(self) -> None:
        """Release connections; called when the plugin generation retires."""
        ...


@runtime_checkable
class AuthAware(Protocol):
    """A provider with auth profiles (several credentials, rotation, cooldowns)."""

    def auth_status(self) -> list[ProfileStatus]:
        """Every profile's state, without secrets."""
        ...

    def reset_auth(self, profile_id: str | None = None) -> list[str]:
        """Clear the cooldown and error count of one profile (or all); the ids reset."""
        ...
