"""A loopback OpenAI-compatible embeddings server with a deterministic hash embedder.

``POST /v1/embeddings`` answers ``{"data": [{"embedding": [...], "index": i}], "model": ...}``
in the shape the OpenAI API documents (``input`` a string or a list of strings, optional
``dimensions``). Each word (and each CJK character bigram) adds +-1 to one of ``dims``
buckets chosen by its sha256, after mapping it through ``synonyms`` — so texts that share
words, or words the table declares synonyms, get close vectors, and a test can show a match
that only the vector path finds. ``delay_s`` slows every answer; ``fail_status`` makes every
answer fail. ``inputs`` counts the texts embedded so far. Runs uvicorn on its own thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import socket
import threading
from collections.abc import Mapping
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")


def hash_embed(text: str, dims: int, synonyms: Mapping[str, str] | None = None) -> list[float]:
    """The deterministic embedding of ``text`` (unit length, or zero for no words)."""
    table = synonyms or {}
    vector = [0.0] * dims
    tokens = [w.lower() for w in _WORD.findall(_CJK.sub(" ", text))]
    for run in _CJK.findall(text):
        tokens.extend(run[i:i + 2] for i in range(max(1, len(run) - 1)))
    for token in tokens:
        token = table.get(token, token)
        digest = hashlib.sha256(token.encode()).digest()
        bucket = int.from_bytes(digest[:4], "little") % dims
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class FakeEmbeddings:
    """The server; ``with FakeEmbeddings() as server`` (or ``async with``), then
    ``server.base_url`` is the ``base_url`` for the plugin config."""

    def __init__(self, *, dims: int = 64, synonyms: Mapping[str, str] | None = None,
                 api_key: str | None = None) -> None:
        self.dims = dims
        self.synonyms = dict(synonyms or {})
        self.api_key = api_key
        self.delay_s = 0.0
        # While set to an unset Event, batch requests (indexing; a query is one string) wait
        # for it: a test holds a rebuild open for as long as it needs.
        self.hold_batches: threading.Event | None = None
        self.fail_status: int | None = None
        self.requests = 0
        self.inputs = 0
        self.models: list[str] = []
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._sock is not None, "the server is not started"
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        config = uvicorn.Config(self._app(), log_config=None, log_level=None, access_log=False,
                                lifespan="off", ws="none", timeout_graceful_shutdown=1)
        self._server = _Server(config)
        self._thread = threading.Thread(target=self._run, name="fake-embeddings", daemon=True)
        self._thread.start()
        if not self._server.ready.wait(10) or not self._server.started:
            raise RuntimeError("the fake embeddings server did not start")

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = None

    def __enter__(self) -> FakeEmbeddings:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeEmbeddings:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        finally:
            self._server.ready.set()

    def _app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/embeddings", self._embeddings, methods=["POST"])])

    async def _embeddings(self, request: Request) -> Response:
        if self.api_key is not None and (
                request.headers.get("authorization") != f"Bearer {self.api_key}"):
            return JSONResponse({"error": {"message": "Incorrect API key provided",
                                           "type": "invalid_request_error"}}, status_code=401)
        try:
            body: Any = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return JSONResponse({"error": {"message": "body is not JSON"}}, status_code=400)
        raw = body.get("input") if isinstance(body, dict) else None
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return JSONResponse({"error": {"message": "input must be a string or a list of "
                                           "strings"}}, status_code=400)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        held = self.hold_batches
        if held is not None and len(texts) > 1:
            await asyncio.to_thread(held.wait, 30)
        if self.fail_status is not None:
            return JSONResponse({"error": {"message": "scripted failure"}},
                                status_code=self.fail_status)
        dims = int(body.get("dimensions") or self.dims)
        model = str(body.get("model", ""))
        with self._lock:
            self.requests += 1
            self.inputs += len(texts)
            self.models.append(model)
        data = [{"object": "embedding", "index": i,
                 "embedding": hash_embed(t, dims, self.synonyms)} for i, t in enumerate(texts)]
        return JSONResponse({"object": "list", "data": data, "model": model,
                             "usage": {"prompt_tokens": sum(len(t) // 4 for t in texts),
                                       "total_tokens": sum(len(t) // 4 for t in texts)}})
