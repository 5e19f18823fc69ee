"""OpenResponses ``POST /v1/responses`` over the engine (reference §3.3).

The request is translated onto the Chat Completions pieces of :mod:`openai_chat`: ``input``
items become conversation entries (``message`` items by role, ``function_call`` items mark where
the assistant handed calls back, ``function_call_output`` items are tool results), the
``instructions`` join the extra system prompt, flat function tools become chat-shaped ones. The
session prefix is ``openresponses``. ``previous_response_id`` continues the session of that
response's run (the store remembers every run's session).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from clawgate.agents.lanes import RunResult
from clawgate.agents.turn import Turn
from clawgate.errors import InvalidRequest, NotFound
from clawgate.gateway.http import JSON
from clawgate.gateway.openai_api import (
    DONE,
    PAUSE,
    EventStream,
    failure,
    flag,
    optional_str,
    read_body,
    remainder,
    require_str,
    resolve_target,
    run_error,
    sse,
    submit,
)
from clawgate.gateway.openai_chat import (
    Conversation,
    Entry,
    check_options,
    client_tools,
    content_of,
    prepare,
    sampling,
)
from clawgate.gateway.rpc import Services

MESSAGE_ROLES = ("system", "developer", "user", "assistant")
SKIPPED_ITEMS = ("reasoning", "item_reference")
END_EVENTS = {"completed": "response.completed", "failed": "response.failed",
              "incomplete": "response.incomplete"}


def parse_input(raw: Any, instructions: str | None) -> Conversation:
    """Validate ``input`` (a string or an item array); errors name the item (``input[1].role``)."""
    system = (instructions,) if instructions else ()
    if isinstance(raw, str):
        return Conversation(system, (Entry("user", raw),))
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("`input` must be a string or a non-empty array of input items")
    entries: list[Entry] = []
    names: dict[str, str] = {}  # call_id -> tool name, from function_call items
    extra: list[str] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"`{where}` must be an object")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in MESSAGE_ROLES:
                raise InvalidRequest(f"`{where}.role` must be one of {', '.join(MESSAGE_ROLES)}, "
                                     f"not {role!r}")
            text, images = content_of(item.get("content"), f"{where}.content")
            if role in ("system", "developer"):
                extra.append(text)
            else:
                entries.append(Entry("user" if role == "user" else "assistant", text, images))
        elif kind == "function_call":
            names[require_str(item, "call_id", where)] = require_str(item, "name", where)
            entries.append(Entry("assistant", ""))  # the assistant spoke: calls, no text
        elif kind == "function_call_output":
            call_id = require_str(item, "call_id", where)
            output = item.get("output")
            text, _ = content_of(output if output is not None else "", f"{where}.output")
            entries.append(Entry("tool", text, name=names.get(call_id), call_id=call_id))
        elif kind not in SKIPPED_ITEMS:
            raise InvalidRequest(f"`{where}.type` must be message, function_call, "
                                 f"function_call_output, reasoning or item_reference; not {kind!r}")
    return Conversation((*system, *extra), tuple(entries))


async def previous_session(gateway: Services, response_id: str | None) -> str | None:
    """The session key of an earlier response's run."""
    if response_id is None:
        return None
    record = await gateway.runtime.store.get_run(response_id.removeprefix("resp_"))
    if record is None:
        raise NotFound(f"no response {response_id!r} (`previous_response_id`)")
    return record.key


async def responses(gateway: Services, request: Request) -> Response:
    """``POST {prefix}/responses``."""
    body = await read_body(gateway, request)
    model = optional_str(body, "model") or "clawgate"
    instructions = optional_str(body, "instructions")
    conversation = parse_input(body.get("input"), instructions)
    stream = flag(body, "stream")
    tools = client_tools(body.get("tools"))
    check_options(body, ("max_output_tokens", "max_tool_calls"))
    previous = await previous_session(gateway, optional_str(body, "previous_response_id"))
    target = resolve_target(gateway, request, model=model, kind="openresponses",
                            user=optional_str(body, "user"), previous=previous)
    prompt = await prepare(gateway, target, conversation, field="input")
    turn = await submit(gateway, target, prompt, () if body.get("tool_choice") == "none"
                        else tools, stream=stream,
                        sampling=sampling(body, max_tokens=("max_output_tokens",)))
    base: dict[str, Any] = {
        "id": f"resp_{turn.run_id}", "object": "response", "created_at": int(time.time()),
        "status": "in_progress", "model": model, "output": [], "usage": None, "error": None,
        "incomplete_details": None, "instructions": instructions, "metadata": {},
        "parallel_tool_calls": True, "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "previous_response_id": body.get("previous_response_id"),
    }
    if not stream:
        result = await turn.result()
        error = run_error(gateway, result)
        if error is not None:
            raise error
        status = "completed" if _status(result) == "completed" else "incomplete"
        output = ([_message(turn.run_id, result.text, status)]
                  if result.text or not result.tool_calls else [])
        return JSON(_final(base, result, [*output, *map(_call, result.tool_calls)]))
    return EventStream(_events(turn, base))


def _message(run_id: str, text: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": f"msg_{run_id}", "status": status, "role": "assistant",
            "content": [_part(text)] if status != "in_progress" else []}


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {"type": "function_call", "id": f"fc_{call.get('id')}", "call_id": call.get("id"),
            "name": fn.get("name"), "arguments": fn.get("arguments") or "{}",
            "status": "completed"}


def _status(result: RunResult) -> str:
    if result.status in ("error", "timeout"):
        return "failed"
    return "completed" if result.status == "ok" and result.stop_reason != "max_iterations" \
        else "incomplete"


def _final(base: dict[str, Any], result: RunResult,
           output: list[dict[str, Any]]) -> dict[str, Any]:
    status = _status(result)
    used_in, used_out = result.usage.get("input", 0), result.usage.get("output", 0)
    final = {**base, "status": status, "output": output,
             "usage": {"input_tokens": used_in, "output_tokens": used_out,
                       "total_tokens": result.usage.get("total", used_in + used_out),
                       "input_tokens_details": {"cached_tokens": 0},
                       "output_tokens_details": {"reasoning_tokens": 0}}}
    if status == "failed":
        final["error"] = {"code": "server_error", "message": failure(result)}
    elif status == "incomplete":
        final["incomplete_details"] = {"reason": result.stop_reason or result.status}
    return final


async def _events(turn: Turn, base: dict[str, Any]) -> AsyncIterator[bytes]:
    numbers = itertools.count()
    item_id = f"msg_{turn.run_id}"
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}

    def emit(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(numbers), **fields}, event=kind)

    def opening() -> list[bytes]:
        return [emit("response.output_item.added", output_index=0,
                     item=_message(turn.run_id, "", "in_progress")),
                emit("response.content_part.added", **where, part=_part(""))]

    yield emit("response.created", response=base)
    yield emit("response.in_progress", response=base)
    text, opened = "", False
    async for item in turn.text_paused():
        if item is None:
            yield PAUSE  # nothing more is ready: what was made goes out now
            continue
        if isinstance(item, str):
            if not opened:
                for event in opening():
                    yield event
                opened = True
            text += item
            yield emit("response.output_text.delta", **where, delta=item, logprobs=[])
            continue
        status = _status(item)
        rest = remainder(item, text)
        if not opened and (rest or not item.tool_calls):
            for event in opening():
                yield event
            opened = True
        if rest:
            text += rest
            yield emit("response.output_text.delta", **where, delta=rest, logprobs=[])
        output: list[dict[str, Any]] = []
        if opened:
            message = _message(turn.run_id, text,
                               "completed" if status == "completed" else "incomplete")
            yield emit("response.output_text.done", **where, text=text, logprobs=[])
            yield emit("response.content_part.done", **where, part=_part(text))
            yield emit("response.output_item.done", output_index=0, item=message)
            output.append(message)
        for call in map(_call, item.tool_calls):
            yield emit("response.output_item.added", output_index=len(output), item=call)
            yield emit("response.output_item.done", output_index=len(output), item=call)
            output.append(call)
        yield emit(END_EVENTS[status], response=_final(base, item, output))
    yield DONE
