"""A loopback fake of OpenAI's Responses API (``POST /v1/responses``), from its documentation.

- Bearer authentication; errors are ``{"error": {"message", "type", "param", "code"}}`` with
  the documented statuses (401 ``invalid_api_key``, 429 ``rate_limit_exceeded`` with
  ``retry-after``, 400 ``invalid_request_error``, 500 ``server_error``);
- the stream (``stream: true``) follows the documented order: ``response.created``,
  ``response.in_progress``, then per output item ``response.output_item.added``, its content
  events (``response.content_part.added``, ``response.output_text.delta``...,
  ``response.output_text.done``, ``response.content_part.done``, or
  ``response.function_call_arguments.delta``... and ``.done``) and
  ``response.output_item.done``, then ``response.completed``; every event has a
  ``sequence_number`` and there is no ``[DONE]``; an ``error`` event may end a stream;
- stateless input is checked: a ``function_call_output`` must answer a ``function_call`` of the
  same input, and a reasoning item sent back must carry the ``encrypted_content`` it was given.

Steps: :class:`Reply` (text, optional reasoning summary), :class:`Call` (function calls),
:class:`Fail` (HTTP error) and :class:`StreamError`. With nothing planned it echoes the last
user text.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.loopback import LoopbackServer, Streamed, factory_fixture, split, sse, tokens

__all__ = ["Call", "Fail", "MockResponses", "Reply", "StreamError", "mock_responses_factory"]


@dataclass(frozen=True, slots=True)
class Reply:
    text: str = ""
    chunks: int = 1
    reasoning: str | None = None  # a reasoning item with this summary comes first
    cached_tokens: int = 0
    incomplete: str | None = None  # "max_output_tokens" or "content_filter"
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Call:
    calls: tuple[tuple[str, str], ...]  # (name, json arguments)
    fragments: int = 2
    reasoning: str | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    status: int
    message: str = "mock failure"
    code: str | None = None
    type: str = "invalid_request_error"
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class StreamError:
    code: str = "server_error"
    message: str = "The server had an error processing your request."


Step = Reply | Call | Fail | StreamError


def encrypted(summary: str) -> str:
    """The encrypted_content the fake gives a reasoning item (and expects back)."""
    return base64.b64encode(b"enc:" + summary.encode()).decode()


class MockResponses(LoopbackServer[Step]):
    """The fake; ``api_key`` set: requests without that Bearer token get a 401."""

    name = "responses"

    def __init__(self, *, api_key: str | None = None, latency: float = 0.0) -> None:
        super().__init__()
        self.api_key = api_key
        self.latency = latency
        self._ids = 0

    @property
    def url(self) -> str:
        """The base URL for the provider (``.../v1``)."""
        return f"{self.origin}/v1"

    def routes(self) -> list[Route]:
        return [Route("/v1/responses", self._responses, methods=["POST"])]

    def _id(self, prefix: str) -> str:
        with self._lock:
            self._ids += 1
            return f"{prefix}_mock_{self._ids:04d}"

    async def _responses(self, request: Request) -> Response | Streamed:
        raw = await request.body()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.record(request, raw.decode("utf-8", "replace"))
            return _error(400, "We could not parse the JSON body of your request.")
        self.record(request, body)
        if self.api_key is not None and (
                request.headers.get("authorization") != f"Bearer {self.api_key}"):
            return _error(401, "Incorrect API key provided.", code="invalid_api_key",
                          type="invalid_request_error")
        invalid = _validate(body)
        if invalid is not None:
            return _error(400, invalid, param="input")
        step = self.next_step() or Reply(_last_user_text(body))
        await self.pause(self.latency + (step.delay if isinstance(step, Reply) else 0))
        if isinstance(step, Fail):
            return _error(step.status, step.message, code=step.code, type=step.type,
                          retry_after=step.retry_after)
        if not body.get("stream"):
            return _error(400, "the fake serves stream=true only")
        return Streamed(self, lambda: self._events(step, body))

    async def _events(self, step: Reply | Call | StreamError,
                      body: dict[str, Any]) -> AsyncIterator[bytes | None]:
        seq = 0

        def event(kind: str, **data: Any) -> bytes:
            nonlocal seq
            seq += 1
            return sse(kind, {"type": kind, "sequence_number": seq - 1, **data})

        response: dict[str, Any] = {"id": self._id("resp"), "object": "response",
                                    "created_at": 0, "status": "in_progress",
                                    "model": body.get("model"), "output": [], "usage": None}
        yield event("response.created", response=response)
        yield event("response.in_progress", response=response)
        if isinstance(step, StreamError):
            yield event("error", code=step.code, message=step.message, param=None)
            return
        output: list[dict[str, Any]] = []
        if step.reasoning is not None:
            item = {"id": self._id("rs"), "type": "reasoning", "summary": []}
            yield event("response.output_item.added", output_index=len(output), item=item)
            done = {**item, "summary": [{"type": "summary_text", "text": step.reasoning}],
                    "encrypted_content": encrypted(step.reasoning)}
            yield event("response.output_item.done", output_index=len(output), item=done)
            output.append(done)
        if isinstance(step, Reply):
            for chunk in self._message(step, output, event):
                yield chunk
        else:
            for name, arguments in step.calls:
                index = len(output)
                item = {"id": self._id("fc"), "type": "function_call", "status": "in_progress",
                        "call_id": self._id("call"), "name": name, "arguments": ""}
                yield event("response.output_item.added", output_index=index, item=item)
                for piece in split(arguments, step.fragments):
                    yield event("response.function_call_arguments.delta", item_id=item["id"],
                                output_index=index, delta=piece)
                yield event("response.function_call_arguments.done", item_id=item["id"],
                            output_index=index, arguments=arguments)
                done = {**item, "status": "completed", "arguments": arguments}
                yield event("response.output_item.done", output_index=index, item=done)
                output.append(done)
        produced = tokens(output)
        cached = step.cached_tokens if isinstance(step, Reply) else 0
        prompt = tokens(body.get("input")) + cached
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                 "output_tokens": produced, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": prompt + produced}
        incomplete = step.incomplete if isinstance(step, Reply) else None
        final = {**response, "status": "incomplete" if incomplete else "completed",
                 "output": output, "usage": usage,
                 "incomplete_details": {"reason": incomplete} if incomplete else None}
        yield event("response.incomplete" if incomplete else "response.completed",
                    response=final)

    def _message(self, step: Reply, output: list[dict[str, Any]], event: Any) -> list[bytes]:
        index = len(output)
        item = {"id": self._id("msg"), "type": "message", "status": "in_progress",
                "role": "assistant", "content": []}
        out = [event("response.output_item.added", output_index=index, item=item)]
        part = {"type": "output_text", "text": "", "annotations": []}
        out.append(event("response.content_part.added", item_id=item["id"],
                         output_index=index, content_index=0, part=part))
        for piece in split(step.text, step.chunks):
            out.append(event("response.output_text.delta", item_id=item["id"],
                             output_index=index, content_index=0, delta=piece))
        out.append(event("response.output_text.done", item_id=item["id"], output_index=index,
                         content_index=0, text=step.text))
        part = {**part, "text": step.text}
        out.append(event("response.content_part.done", item_id=item["id"],
                         output_index=index, content_index=0, part=part))
        done = {**item, "status": "completed", "content": [part]}
        out.append(event("response.output_item.done", output_index=index, item=done))
        output.append(done)
        return out


def _error(status: int, message: str, *, code: str | None = None,
           type: str = "invalid_request_error", param: str | None = None,
           retry_after: float | None = None) -> Response:
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict) or not body.get("model"):
        return "Missing required parameter: 'model'."
    items = body.get("input")
    if not isinstance(items, Sequence) or isinstance(items, str):
        return "Invalid type for 'input': expected an array."
    calls: set[str] = set()
    for i, item in enumerate(items):
        kind = item.get("type", "message")
        if kind == "function_call":
            calls.add(str(item.get("call_id")))
        elif kind == "function_call_output" and str(item.get("call_id")) not in calls:
            call_id = item.get("call_id")
            return f"No tool call found for function call output with call_id {call_id}."
        elif kind == "reasoning":
            summary = "".join(p.get("text", "") for p in item.get("summary") or ())
            if item.get("encrypted_content") != encrypted(summary):
                return (f"input[{i}]: the encrypted content of a reasoning item could not be "
                        "verified.")
        elif kind == "message" and item.get("role") not in ("user", "assistant", "system",
                                                              "developer"):
            return f"Invalid value for 'input[{i}].role'."
    for i, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") == "function" and not tool.get("name"):
            return f"Missing required parameter: 'tools[{i}].name'."
    return None


def _last_user_text(body: dict[str, Any]) -> str:
    for item in reversed(body.get("input") or []):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content or () if isinstance(p, dict))
    return ""


mock_responses_factory = factory_fixture(MockResponses)
