"""What the OpenAI-compatible endpoints share: request helpers, OpenClaw's agent targeting by
``model`` and session mapping (reference §3.2), admission through the turn API, SSE framing,
and the ``/v1/models`` endpoints.

The endpoints themselves are ``openai_chat.completions`` and ``openai_responses.responses``;
``app.py`` mounts all of them at ``/v1`` and ``/openclaw/v1`` (the agency-swarm proxy's path).
Errors are clawgate errors (``InvalidRequest``, ``NotFound``...) that the HTTP layer maps
through the one error table to OpenAI-shaped bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from clawgate.agents.lanes import RunResult
from clawgate.agents.roster import Agent
from clawgate.agents.turn import Submission, Turn
from clawgate.errors import (
    ClawgateError,
    InvalidRequest,
    NotFound,
    SessionError,
    SessionNotFound,
    Unavailable,
)
from clawgate.gateway.http import read_json
from clawgate.gateway.rpc import Services
from clawgate.ids import new_id
from clawgate.sessions import keys
from clawgate.sessions.keys import normalize_agent_id

Kind = Literal["openai", "openresponses"]
BRANDS = ("clawgate", "openclaw")
AGENT_HEADERS = ("x-clawgate-agent-id", "x-openclaw-agent-id", "x-openclaw-agent")
SESSION_HEADERS = ("x-clawgate-session-key", "x-openclaw-session-key")
CHANNEL_HEADERS = ("x-clawgate-message-channel", "x-openclaw-message-channel")
DEFAULT_MODELS = ("clawgate", "clawgate/default", "openclaw", "openclaw/default")
AGENT_PREFIXES = ("clawgate/", "clawgate:", "openclaw/", "openclaw:", "agent:")
RESERVED_PREFIXES = ("subagent:", "cron:", "acp:")
FAILED = ("error", "timeout")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class Prompt:
    """What one request submits to the engine."""

    content: str | list[dict[str, Any]] | None
    tool_results: tuple[dict[str, Any], ...]
    system: str | None


# -- requests ---------------------------------------------------------------------------------


def optional_str(body: Mapping[str, Any], name: str, where: str = "") -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"`{where + '.' if where else ''}{name}` must be a string")
    return value


def require_str(body: Mapping[str, Any], name: str, where: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"`{where}.{name}` must be a string")
    return value


def flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"`{name}` must be a boolean")
    return bool(value)


async def read_body(gateway: Services, request: Request) -> dict[str, Any]:
    """The JSON object body, within the gateway's body limit."""
    limits = gateway.settings.config.gateway
    body = await read_json(request, limits.max_body_bytes, limits.body_timeout_s)
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {type(body).__name__}")
    return body


# -- agent and session -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request's turn goes."""

    agent: Agent
    session_key: str
    channel: str
    generated: bool  # a fresh random key: nothing can be stored under it yet


def agent_id_of(model: str) -> str | None:
    """The agent a ``model`` names: its id, ``""`` for the default agent, or None when the model
    is no agent target (a provider model name, which the default agent answers)."""
    low = model.strip().lower()
    if low in DEFAULT_MODELS:
        return ""
    for prefix in AGENT_PREFIXES:
        if low.startswith(prefix):
            rest = model.strip()[len(prefix):].strip()
            return "" if rest.lower() == "default" else rest
    return None


def resolve_agent(gateway: Services, model: str,
                  headers: Mapping[str, str]) -> tuple[Agent, bool]:
    """(agent, chosen explicitly) from the agent header, else ``model``, else the default."""
    roster = gateway.runtime.engine.roster
    header = next((headers[h].strip() for h in AGENT_HEADERS if headers.get(h, "").strip()),
                  None)
    wanted = header if header is not None else agent_id_of(model)
    if not wanted:
        return roster.default, False
    try:
        return roster.get(wanted), True
    except InvalidRequest:
        known = ", ".join(sorted(a.id for a in roster))
        what = f"agent {header!r}" if header is not None else f"model `{model}`"
        raise NotFound(f"The {what} does not exist (agents: {known})",
                       reason="model_not_found") from None


def resolve_target(gateway: Services, request: Request, *, model: str, user: str | None,
                   kind: Kind, previous: str | None = None) -> Target:
    """Agent and session per OpenClaw: session header, else ``previous`` (the session of an
    earlier response), else ``user``, else a fresh key."""
    agent, explicit = resolve_agent(gateway, model, request.headers)
    channel = next((request.headers[h] for h in CHANNEL_HEADERS if request.headers.get(h)),
                   "webchat")
    named = next((h for h in SESSION_HEADERS if request.headers.get(h, "").strip()), None)
    source, given = (named, request.headers[named].strip()) if named is not None \
        else ("previous_response_id", previous)
    if given is not None:
        segments = given.lower().split(":", 2)
        rest = segments[2] if segments[0] == "agent" and len(segments) == 3 else given.lower()
        if rest.startswith(RESERVED_PREFIXES):
            raise InvalidRequest(f"`{source}` {given!r} is in a reserved namespace "
                                 f"({', '.join(RESERVED_PREFIXES)})")
        try:
            agent, key = gateway.runtime.engine.session_key(given, agent.id if explicit else None)
        except (InvalidRequest, SessionError) as exc:
            raise InvalidRequest(f"invalid `{source}`: {exc}") from None
        return Target(agent, key, channel, generated=False)
    if user is not None and user.strip():
        make = keys.openai_user_key if kind == "openai" else keys.openresponses_user_key
        try:
            return Target(agent, make(agent.id, user), channel, generated=False)
        except SessionError as exc:
            raise InvalidRequest(f"invalid `user`: {exc}") from None
    return Target(agent, f"agent:{agent.id}:{kind}:{new_id()}", channel, generated=True)


async def has_transcript(gateway: Services, key: str) -> bool:
    """True when the session already holds (or is about to hold) messages."""
    engine = gateway.runtime.engine
    if engine.lanes.active(key) is not None or engine.lanes.queued(key):
        return True
    try:
        return bool(await engine.store.transcript(key, limit=1))
    except SessionNotFound:
        return False


# -- runs -------------------------------------------------------------------------------------


async def submit(gateway: Services, target: Target, prompt: Prompt,
                 tools: tuple[dict[str, Any], ...], *, stream: bool,
                 sampling: dict[str, Any] | None = None) -> Turn:
    """Admit the request's turn; with ``stream`` the turn is followed from admission on. A
    request that is one slash command (``/status``) is answered by the command, as on every
    surface."""
    if gateway.draining:
        raise Unavailable("the gateway is shutting down", reason="unavailable")
    return await gateway.runtime.engine.submit(Submission(
        prompt.content, session_key=target.session_key, agent_id=target.agent.id,
        channel=target.channel, client_tools=tools, extra_system_prompt=prompt.system,
        tool_results=prompt.tool_results, sampling=sampling or {},
        store_with_reply=target.generated and not stream,
    ), follow=stream)


def remainder(result: RunResult, sent: str) -> str:
    """Text of ``result`` the stream has not delivered (when deltas were missed)."""
    return result.text[len(sent):] if result.text.startswith(sent) else ""


def failure(result: RunResult) -> str | None:
    """The message of a failed run (error or timeout), else None."""
    return (result.error or "internal error") if result.status in FAILED else None


def run_error(gateway: Services, result: RunResult) -> ClawgateError | None:
    """The error a failed run answers with: 503 ``store_unavailable`` while the store cannot
    write (the run failed because its messages could not be stored), else the run's error."""
    message = failure(result)
    if message is None:
        return None
    if gateway.runtime.store.failure:
        return Unavailable(message, reason="store_unavailable")
    return ClawgateError(message)


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


PAUSE = b""  # from a stream's chunk generator: nothing more is ready, send what was made


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response of ``chunks``, sent as they are made and stopped when
    the client leaves.

    Chunks are joined into one body write between two pauses (an empty chunk, :data:`PAUSE`:
    a generator yields one where its turn is about to wait, :meth:`Turn.text_paused`): a burst
    of deltas (a fast provider, or a loop busy with other turns) costs one send instead of one
    each, and nothing made is held back while the turn waits. The last batch carries the end of
    the body. The bytes are the same either way.

    Starlette's ``StreamingResponse`` watches for the disconnect (ASGI before 2.4, which
    uvicorn speaks) in an AnyIO task group whose start and cancellation cost ~10% of a 20-chunk
    stream's event-loop time; here the watch is one plain task and the body is sent by the
    request's own task. The turn is not the stream's: a client that leaves stops only its
    copy of the deltas."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        super().__init__(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
        self.chunks = chunks

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        batch: list[bytes] = []
        async for chunk in self.chunks:
            if chunk:
                batch.append(chunk)
            elif batch:
                await send({"type": "http.response.body", "body": b"".join(batch),
                            "more_body": True})
                batch.clear()
        await send({"type": "http.response.body", "body": b"".join(batch), "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sending = asyncio.current_task()
        assert sending is not None
        left = False

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            sending.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not left or sending.cancelling() > 1:
                raise  # cancelled from outside, not (only) by the client leaving
            sending.uncancel()
        finally:
            watcher.cancel()


# -- GET /v1/models -----------------------------------------------------------------------------


def model_ids(gateway: Services) -> list[str]:
    """``clawgate``, ``clawgate/default``, ``clawgate/<agent>``... and the ``openclaw`` aliases."""
    agents = [agent.id for agent in gateway.runtime.engine.roster]
    return [brand + suffix for brand in BRANDS
            for suffix in ("", "/default", *(f"/{a}" for a in agents))]


def _row(gateway: Services, model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": gateway.started_at // 1000,
            "owned_by": "clawgate"}


async def models(gateway: Services, _request: Request) -> Response:
    """``GET {prefix}/models``."""
    return JSONResponse({"object": "list",
                         "data": [_row(gateway, m) for m in model_ids(gateway)]})


async def model(gateway: Services, request: Request) -> Response:
    """``GET {prefix}/models/{id}``: any id that names an agent (``openclaw:ops`` too)."""
    model_id = str(request.path_params["model_id"])
    wanted = agent_id_of(model_id)
    known = {agent.id for agent in gateway.runtime.engine.roster}
    if wanted == "" or (wanted is not None and normalize_agent_id(wanted) in known):
        return JSONResponse(_row(gateway, model_id))
    raise NotFound(f"The model `{model_id}` does not exist", reason="model_not_found")
