"""The OpenAI-compatible HTTP API: routes, and what every endpoint shares on the way in and out.

``routes(gateway, prefix=...)`` serves, under the gateway's bearer auth:

- ``POST {prefix}/chat/completions`` (:mod:`clawgate.gateway.openai_chat`),
- ``POST {prefix}/responses`` (:mod:`clawgate.gateway.openai_responses`),
- ``GET {prefix}/models`` and ``GET {prefix}/models/{id}``: the agents as models.

``build_app`` mounts them at ``/v1`` and at ``/openclaw/v1`` (the agency-swarm proxy's path,
reference "Also seen in benches"). A wrong method gets an OpenAI-shaped 405 rather than
Starlette's plain-text one; every request is counted in ``http_requests_total`` and timed in
``http_request_seconds`` (until its response starts), labelled by route.

Both endpoints share the rest of this module: request helpers, OpenClaw's agent targeting by
``model`` and session mapping (§3.2), admission, and following a run's events for SSE.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from clawgate.agents.bus import RunEvent, Subscription
from clawgate.agents.lanes import Run, RunResult
from clawgate.agents.roster import Agent
from clawgate.errors import ClawgateError, InvalidRequest, SessionError, SessionNotFound
from clawgate.gateway.http import authorize, error_response, from_exception, read_json
from clawgate.sessions import keys
from clawgate.sessions.keys import normalize_agent_id

if TYPE_CHECKING:
    from clawgate.gateway.app import Gateway
    from clawgate.gateway.openai_chat import Turn

log = logging.getLogger("clawgate.gateway.openai")

Handler = Callable[["Gateway", Request], Awaitable[Response]]
Kind = Literal["openai", "openresponses"]
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
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


class ApiError(ClawgateError):
    """A request the OpenAI API refuses, with its HTTP status and OpenAI error code."""

    def __init__(self, message: str, *, status: int = 400, code: str | None = None) -> None:
        self.status = status
        self.code = code
        super().__init__(message)


def routes(gateway: Gateway, *, prefix: str) -> list[BaseRoute]:
    """The OpenAI-compatible routes under ``prefix`` (``/v1`` or ``/openclaw/v1``)."""
    # The endpoint modules build on this one, so they are imported when the app is built.
    from clawgate.gateway.openai_chat import completions
    from clawgate.gateway.openai_responses import responses

    table: list[tuple[str, tuple[str, ...], Handler]] = [
        ("/chat/completions", ("POST",), completions),
        ("/responses", ("POST",), responses),
        ("/models", ("GET", "HEAD"), models),
        ("/models/{model_id:path}", ("GET", "HEAD"), model),
    ]
    return [Route(prefix + path, _endpoint(gateway, prefix + path, methods, handler),
                  methods=ANY_METHOD)
            for path, methods, handler in table]


def _endpoint(gateway: Gateway, route: str, methods: tuple[str, ...],
              handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        started = time.perf_counter()
        response = await _answer(gateway, request, methods, handler)
        gateway.metrics.inc("http_requests_total", route=route,
                            status=str(response.status_code))
        gateway.metrics.observe("http_request_seconds", time.perf_counter() - started,
                                route=route)
        return response

    return serve


async def _answer(gateway: Gateway, request: Request, methods: tuple[str, ...],
                  handler: Handler) -> Response:
    if request.method not in methods:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}; "
                              f"use {' or '.join(m for m in methods if m != 'HEAD')}",
                              code="method_not_allowed", headers={"Allow": ", ".join(methods)})
    denied = authorize(gateway, request)
    if denied is not None:
        return denied
    try:
        return await handler(gateway, request)
    except ApiError as exc:
        return error_response(exc.status, str(exc), code=exc.code)
    except ClawgateError as exc:
        return from_exception(exc)
    except Exception:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal error")


# -- requests ---------------------------------------------------------------------------------


def optional_str(body: Mapping[str, Any], name: str, where: str = "") -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(f"`{where + '.' if where else ''}{name}` must be a string")
    return value


def require_str(body: Mapping[str, Any], name: str, where: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise ApiError(f"`{where}.{name}` must be a string")
    return value


def flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is not None and not isinstance(value, bool):
        raise ApiError(f"`{name}` must be a boolean")
    return bool(value)


async def read_body(gateway: Gateway, request: Request) -> dict[str, Any]:
    """The JSON object body, within the gateway's body limit."""
    body = await read_json(request, gateway.settings.config.gateway.max_body_bytes)
    if not isinstance(body, dict):
        raise ApiError(f"request body must be a JSON object, not {type(body).__name__}")
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


def resolve_agent(gateway: Gateway, model: str,
                  headers: Mapping[str, str]) -> tuple[Agent, bool]:
    """(agent, chosen explicitly) from the agent header, else ``model``, else the default."""
    roster = gateway.engine.roster
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
        raise ApiError(f"The {what} does not exist (agents: {known})", status=404,
                       code="model_not_found") from None


def resolve_target(gateway: Gateway, request: Request, *, model: str, user: str | None,
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
            raise ApiError(f"`{source}` {given!r} is in a reserved namespace "
                           f"({', '.join(RESERVED_PREFIXES)})")
        try:
            agent, key = gateway.engine.session_key(given, agent.id if explicit else None)
        except (InvalidRequest, SessionError) as exc:
            raise ApiError(f"invalid `{source}`: {exc}") from None
        return Target(agent, key, channel, generated=False)
    if user is not None and user.strip():
        make = keys.openai_user_key if kind == "openai" else keys.openresponses_user_key
        try:
            return Target(agent, make(agent.id, user), channel, generated=False)
        except SessionError as exc:
            raise ApiError(f"invalid `user`: {exc}") from None
    return Target(agent, f"agent:{agent.id}:{kind}:{uuid.uuid4()}", channel, generated=True)


async def has_transcript(gateway: Gateway, key: str) -> bool:
    """True when the session already holds (or is about to hold) messages."""
    engine = gateway.engine
    if engine.lanes.active(key) is not None or engine.lanes.queued(key):
        return True
    try:
        return bool(await engine.store.transcript(key, limit=1))
    except SessionNotFound:
        return False


# -- runs -------------------------------------------------------------------------------------


async def submit(gateway: Gateway, target: Target, turn: Turn,
                 tools: tuple[dict[str, Any], ...], *, stream: bool,
                 sampling: dict[str, Any] | None = None) -> tuple[Run, Subscription | None]:
    """Admit the turn; with ``stream``, subscribe to its events before anything can be missed."""
    if gateway.draining:
        raise ApiError("the gateway is shutting down", status=503, code="unavailable")
    run = await gateway.engine.submit(
        turn.content, session_key=target.session_key, agent_id=target.agent.id,
        channel=target.channel, client_tools=tools, extra_system_prompt=turn.system,
        tool_results=turn.tool_results, sampling=sampling,
    )
    if not stream:
        return run, None
    # No await between submit returning and this line: the run cannot have published yet.
    sub = gateway.engine.bus.subscribe(run_id=run.run_id)
    # A client that went away never reads to the end; the run's end still closes its mailbox.
    run.done.add_done_callback(lambda _done: sub.close())
    return run, sub


async def follow(run: Run, sub: Subscription) -> AsyncIterator[str | RunResult]:
    """The run's text deltas as they are published, then its result.

    It ends on the run's result rather than on a lifecycle event: a run merged into another
    (collect, steer) or cancelled in the queue publishes nothing under its own id, and an
    overflowed subscription stops receiving. The result is awaited shielded, since cancelling
    a waiter of the shared future would cancel the run's outcome for everyone.
    """
    try:
        while not run.done.done():
            event = sub.get_nowait() or await _next(sub, run)
            if event is None:
                break
            if event.stream == "assistant" and event.data.get("delta"):
                yield str(event.data["delta"])
            elif event.stream == "lifecycle" and event.data.get("phase") in ("end", "error"):
                break
        while (event := sub.get_nowait()) is not None:
            if event.stream == "assistant" and event.data.get("delta"):
                yield str(event.data["delta"])
        yield await asyncio.shield(run.done)
    finally:
        sub.close()


async def _next(sub: Subscription, run: Run) -> RunEvent | None:
    getter = asyncio.ensure_future(sub.get())
    try:
        await asyncio.wait((getter, run.done), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()  # an item it was woken for stays queued for the drain
    return getter.result() if getter.done() and not getter.cancelled() else None


def remainder(result: RunResult, sent: str) -> str:
    """Text of ``result`` the stream has not delivered (when deltas were missed)."""
    return result.text[len(sent):] if result.text.startswith(sent) else ""


def failure(result: RunResult) -> str | None:
    """The message of a failed run (error or timeout), else None."""
    return (result.error or "internal error") if result.status in FAILED else None


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


# -- GET /v1/models -----------------------------------------------------------------------------


def model_ids(gateway: Gateway) -> list[str]:
    """``clawgate``, ``clawgate/default``, ``clawgate/<agent>``... and the ``openclaw`` aliases."""
    agents = [agent.id for agent in gateway.engine.roster]
    return [brand + suffix for brand in BRANDS
            for suffix in ("", "/default", *(f"/{a}" for a in agents))]


def _row(gateway: Gateway, model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": int(gateway.started_at),
            "owned_by": "clawgate"}


async def models(gateway: Gateway, _request: Request) -> Response:
    """``GET {prefix}/models``."""
    return JSONResponse({"object": "list",
                         "data": [_row(gateway, m) for m in model_ids(gateway)]})


async def model(gateway: Gateway, request: Request) -> Response:
    """``GET {prefix}/models/{id}``: any id that names an agent (``openclaw:ops`` too)."""
    model_id = str(request.path_params["model_id"])
    wanted = agent_id_of(model_id)
    known = {agent.id for agent in gateway.engine.roster}
    if wanted == "" or (wanted is not None and normalize_agent_id(wanted) in known):
        return JSONResponse(_row(gateway, model_id))
    return error_response(404, f"The model `{model_id}` does not exist", code="model_not_found")
