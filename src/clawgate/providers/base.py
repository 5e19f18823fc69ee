"""What a model provider is: a streaming call from chat messages to text, tool calls and usage.

Messages and tool definitions use the OpenAI chat-completions shapes (``{"role": ..., "content":
...}`` and ``{"type": "function", "function": {...}}``), the lingua franca of model APIs, so the
OpenAI-compatible provider forwards them unchanged and other providers translate once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Message = dict[str, Any]
ToolSpec = dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model call."""

    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


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
    """The end of one model call."""

    reason: str = "stop"
    usage: Usage = Usage()


ModelEvent = TextDelta | ToolCall | Finish


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model a provider offers."""

    id: str
    name: str | None = None
    context_window: int | None = None


# What a provider needs to call its models: an API key it has ("api-key"), one it lacks
# ("missing"), or nothing ("none": offline or a local endpoint). A provider may set a
# ``credentials`` attribute; one that does not is taken to need none.
Credentials = Literal["api-key", "missing", "none"]
CREDENTIALS: tuple[Credentials, ...] = ("api-key", "missing", "none")


def credentials_of(provider: object) -> Credentials:
    """The provider's ``credentials`` attribute, or ``"none"`` when it has none (or an odd one)."""
    value = getattr(provider, "credentials", "none")
    return value if value in CREDENTIALS else "none"


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
