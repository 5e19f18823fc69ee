"""OpenAI Chat Completions over the engine (reference §3.2), and the conversation model the
Responses API translates onto: entries, prompt assembly, content parts, function tools.

History. OpenClaw renders a client's whole ``messages`` array into one agent message, because a
stateless client replays its history on every call. clawgate also keeps every session's
transcript in its store, so replaying it would show the model each turn twice. The rule:

* a *fresh* session (nothing stored, nothing queued) gets OpenClaw's rendering: the messages
  before the active turn become a ``[Chat messages since your last reply - for context]`` block
  of ``User:`` / ``Assistant:`` / ``Tool:<name>:`` lines, then ``[Current message - respond to
  this]`` and the active turn (the last user or tool message), all in ONE user message;
* a session that already has a transcript gets only what is new to it: the messages after the
  client's last ``assistant`` message. ``tool`` messages there answer the client tool calls that
  the previous run handed back and are stored as real tool results; the user messages there
  (joined by blank lines) are the turn's user message. The store holds everything earlier.

``system`` and ``developer`` messages are joined by blank lines into the run's extra system
prompt, every turn.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from clawgate.agents.lanes import RunResult
from clawgate.agents.turn import Turn
from clawgate.errors import InvalidRequest
from clawgate.gateway.http import JSON
from clawgate.gateway.openai_api import (
    DONE,
    PAUSE,
    EventStream,
    Prompt,
    Target,
    failure,
    flag,
    has_transcript,
    optional_str,
    read_body,
    remainder,
    require_str,
    resolve_target,
    run_error,
    sse,
    submit,
)
from clawgate.gateway.rpc import Services

CHAT_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
TEXT_PARTS = ("text", "input_text", "output_text")
MAX_IMAGES = 8
HISTORY_MARKER = "[Chat messages since your last reply - for context]"
CURRENT_MARKER = "[Current message - respond to this]"
MISSING_USER = "Missing user message in `messages`."
SAMPLING = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "frequency_penalty": (-2.0, 2.0),
            "presence_penalty": (-2.0, 2.0)}


# -- the request's conversation ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One user, assistant or tool message of a request."""

    role: Literal["user", "assistant", "tool"]
    text: str
    images: tuple[dict[str, Any], ...] = ()
    name: str | None = None  # a tool result's tool name
    call_id: str | None = None  # a tool result's tool_call_id

    def line(self) -> str:
        """The entry as a labelled line of a history block."""
        if self.role == "tool":
            label = f"Tool:{self.name}" if self.name else "Tool"
        else:
            label = "User" if self.role == "user" else "Assistant"
        return f"{label}: {self.text}"


@dataclass(frozen=True, slots=True)
class Conversation:
    """A request's messages: system texts and the conversation entries, in order."""

    system: tuple[str, ...]
    entries: tuple[Entry, ...]

    @property
    def tail(self) -> tuple[Entry, ...]:
        """The entries after the last assistant message: what a stored session lacks."""
        for i in range(len(self.entries) - 1, -1, -1):
            if self.entries[i].role == "assistant":
                return self.entries[i + 1:]
        return self.entries

    @property
    def plain(self) -> bool:
        """True when the request is one user message (stored or not, the turn is the same)."""
        return len(self.entries) == 1 and self.entries[0].role == "user"


def assemble(conversation: Conversation, *, stored: bool, field: str = "messages") -> Prompt:
    """The turn to submit (see the module docstring for the two renderings)."""
    missing = MISSING_USER.replace("`messages`", f"`{field}`")
    system = "\n\n".join(t for t in conversation.system if t.strip()) or None
    results: list[dict[str, Any]] = []
    if stored:
        new = conversation.tail
        lines: list[str] = []
        for e in new:
            if e.role == "tool" and e.call_id:
                result = {"role": "tool", "tool_call_id": e.call_id, "content": e.text}
                results.append({**result, "name": e.name} if e.name else result)
            elif e.role == "tool":  # a legacy function result has no call to answer
                lines.append(e.line())
            elif e.text:
                lines.append(e.text)
        text = "\n\n".join(lines)
        images = [i for e in new if e.role == "user" for i in e.images]
    else:
        entries = conversation.entries
        at = next((i for i in range(len(entries) - 1, -1, -1)
                   if entries[i].role in ("user", "tool")), None)
        if at is None:
            raise InvalidRequest(missing)
        current = entries[at]
        history = [e.line() for e in entries[:at] if e.text]
        text = "\n".join([HISTORY_MARKER, *history, "", CURRENT_MARKER, current.line()]) \
            if history else current.text
        images = list(current.images)
    if not text.strip() and not images and not results:
        raise InvalidRequest(missing)
    content: str | list[dict[str, Any]] | None = text or None
    if images:
        content = [*([{"type": "text", "text": text}] if text else []), *images]
    return Prompt(content, tuple(results), system)


def parse_messages(raw: Any) -> Conversation:
    """Validate Chat Completions ``messages``; errors name the field (``messages[2].role``)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("`messages` must be a non-empty array of message objects")
    system: list[str] = []
    entries: list[Entry] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, from the assistant's calls
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise InvalidRequest(f"`{where}` must be an object")
        role = m.get("role")
        if role not in CHAT_ROLES:
            raise InvalidRequest(f"`{where}.role` must be one of {', '.join(CHAT_ROLES)}, "
                                 f"not {role!r}")
        text, images = content_of(m.get("content"), f"{where}.content")
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            entries.append(Entry("user", text, images))
        elif role == "assistant":
            for call in tool_calls_of(m.get("tool_calls"), f"{where}.tool_calls"):
                names[call["id"]] = call["function"]["name"]
            entries.append(Entry("assistant", text))
        else:
            call_id = optional_str(m, "tool_call_id", where)
            name = optional_str(m, "name", where)
            entries.append(Entry("tool", text, name=name or names.get(call_id or ""),
                                 call_id=call_id))
    return Conversation(tuple(system), tuple(entries))


def content_of(value: Any, where: str) -> tuple[str, tuple[dict[str, Any], ...]]:
    """(text, image parts) of a message content: a string, null, or an array of parts."""
    if value is None:
        return "", ()
    if isinstance(value, str):
        return value, ()
    if not isinstance(value, list):
        raise InvalidRequest(f"`{where}` must be a string or an array of content parts")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    for j, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in TEXT_PARTS:
            texts.append(require_str(part, "text", f"{where}[{j}]"))
        elif kind in ("image_url", "input_image"):
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str) or not url:
                raise InvalidRequest(f"`{where}[{j}].image_url` must name an image URL")
            images.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise InvalidRequest(f"`{where}[{j}].type` must be one of text, input_text, "
                                 f"output_text, image_url, input_image; not {kind!r}")
    if len(images) > MAX_IMAGES:
        raise InvalidRequest(f"`{where}` has {len(images)} images; the limit is {MAX_IMAGES}")
    return "\n".join(texts), tuple(images)


def tool_calls_of(value: Any, where: str) -> list[dict[str, Any]]:
    """An assistant message's ``tool_calls``, validated."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest(f"`{where}` must be an array")
    for j, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(call.get("id"), str) \
                or not isinstance(fn.get("name"), str):
            raise InvalidRequest(f"`{where}[{j}]` must be {{id, type: \"function\", "
                                 "function: {name, arguments}}")
    return value


def client_tools(raw: Any, where: str = "tools") -> tuple[dict[str, Any], ...]:
    """Function tools for the engine (chat shape), from the chat or the flat Responses shape."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest(f"`{where}` must be an array of function tools")
    specs: list[dict[str, Any]] = []
    for j, tool in enumerate(raw):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise InvalidRequest(f"`{where}[{j}].type` must be \"function\" (only function "
                                 "tools are supported)")
        fn = tool.get("function", tool)
        if not isinstance(fn, dict):
            raise InvalidRequest(f"`{where}[{j}].function` must be an object")
        name = fn.get("name")
        if not isinstance(name, str) or not name or len(name) > 64 or not all(
                c.isascii() and (c.isalnum() or c in "_-") for c in name):
            raise InvalidRequest(f"`{where}[{j}].name` must be 1-64 letters, digits, '_' or '-'")
        parameters = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise InvalidRequest(f"`{where}[{j}].parameters` must be a JSON Schema object")
        spec: dict[str, Any] = {"name": name, "parameters": parameters}
        if isinstance(fn.get("description"), str):
            spec["description"] = fn["description"]
        specs.append({"type": "function", "function": spec})
    return tuple(specs)


def sampling(body: Mapping[str, Any], max_tokens: tuple[str, ...] = (
        "max_completion_tokens", "max_tokens")) -> dict[str, Any]:
    """The (checked) sampling options of a request, as the engine passes them to providers."""
    chosen: dict[str, Any] = {name: body[name] for name in SAMPLING if body.get(name) is not None}
    limit = next((body[n] for n in max_tokens if body.get(n) is not None), None)
    if limit is not None:
        chosen["max_tokens"] = limit
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, float) and seed.is_integer() and abs(seed) >= 2 ** 63:
            # JSON has no size limit on integers; the parser hands bigger ones over as floats.
            raise InvalidRequest("`seed` is out of range: it must be an integer from -2^63 to "
                                 "2^63 - 1")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidRequest("`seed` must be an integer")
        if not -2 ** 63 <= seed < 2 ** 63:
            raise InvalidRequest("`seed` is out of range: it must be an integer from -2^63 to "
                                 "2^63 - 1")
        chosen["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if (not isinstance(stop, list) or not 1 <= len(stop) <= 4
                or not all(isinstance(s, str) and s for s in stop)):
            raise InvalidRequest("`stop` must be a string or a list of 1 to 4 strings")
        chosen["stop"] = stop
    return chosen


def check_options(body: Mapping[str, Any], ints: tuple[str, ...]) -> None:
    """Refuse out-of-range sampling options and non-positive token limits (OpenAI's ranges)."""
    for name, (low, high) in SAMPLING.items():
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not low <= value <= high):
            raise InvalidRequest(f"`{name}` must be a number from {low:g} to {high:g}")
    for name in ints:
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise InvalidRequest(f"`{name}` must be a positive integer")
    if body.get("tool_choice") not in (None, "auto", "none", "required") \
            and not isinstance(body.get("tool_choice"), dict):
        raise InvalidRequest("`tool_choice` must be auto, none, required or a tool object")


async def prepare(gateway: Services, target: Target, conversation: Conversation,
                  field: str = "messages") -> Prompt:
    """The turn for ``target``: the store is read only when the answer changes the turn."""
    stored = not target.generated and not conversation.plain \
        and await has_transcript(gateway, target.session_key)
    return assemble(conversation, stored=stored, field=field)


def finish_reason(result: RunResult) -> str:
    if result.stop_reason == "tool_calls":
        return "tool_calls"
    return "length" if result.stop_reason in ("length", "max_tokens", "max_iterations") else "stop"


# -- POST /v1/chat/completions ------------------------------------------------------------------


async def completions(gateway: Services, request: Request) -> Response:
    """``POST {prefix}/chat/completions``."""
    body = await read_body(gateway, request)
    model = optional_str(body, "model") or "clawgate"
    conversation = parse_messages(body.get("messages"))
    stream = flag(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("`stream_options` must be an object")
    tools = client_tools(body.get("tools"))
    check_options(body, ("max_tokens", "max_completion_tokens"))
    if body.get("n") not in (None, 1):
        raise InvalidRequest("`n` must be 1: one choice per completion")
    target = resolve_target(gateway, request, model=model, kind="openai",
                            user=optional_str(body, "user"))
    prompt = await prepare(gateway, target, conversation)
    turn = await submit(gateway, target, prompt, () if body.get("tool_choice") == "none"
                        else tools, stream=stream, sampling=sampling(body))
    if not stream:
        result = await turn.result()
        error = run_error(gateway, result)
        if error is not None:
            raise error
        return JSON(completion(result, model))
    chunks = _chunks(turn, model, usage=bool(options.get("include_usage")))
    return EventStream(chunks)


def completion(result: RunResult, model: str) -> dict[str, Any]:
    """The non-stream ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant",
                               "content": result.text or "No response from clawgate."}
    if result.tool_calls:
        message = {"role": "assistant", "content": result.text or None,
                   "tool_calls": list(result.tool_calls)}
    return {"id": f"chatcmpl_{result.run_id}", "object": "chat.completion",
            "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason(result)}],
            "usage": _usage(result)}


def _usage(result: RunResult) -> dict[str, int]:
    prompt, output = result.usage.get("input", 0), result.usage.get("output", 0)
    return {"prompt_tokens": prompt, "completion_tokens": output,
            "total_tokens": result.usage.get("total", prompt + output)}


async def _chunks(turn: Turn, model: str, *, usage: bool) -> AsyncIterator[bytes]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        return sse({"id": f"chatcmpl_{turn.run_id}", "object": "chat.completion.chunk",
                    "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]})

    sent = ""
    yield chunk({"role": "assistant"})
    async for item in turn.text_paused():
        if item is None:
            yield PAUSE  # nothing more is ready: what was made goes out now
            continue
        if isinstance(item, str):
            sent += item
            yield chunk({"content": item})
            continue
        message = failure(item)
        if message is not None:
            yield chunk({"content": f"Error: {message}"})
            yield chunk({}, "stop")
        else:
            if rest := remainder(item, sent):
                yield chunk({"content": rest})
            if item.tool_calls:
                yield chunk({"tool_calls": [{"index": i, **call}
                                            for i, call in enumerate(item.tool_calls)]})
            yield chunk({}, finish_reason(item))
        if usage:
            yield sse({"id": f"chatcmpl_{turn.run_id}", "object": "chat.completion.chunk",
                       "created": created, "model": model, "choices": [],
                       "usage": _usage(item)})
    yield DONE
