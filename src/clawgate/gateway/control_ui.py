"""The Control UI's HTTP side: the static files of ``gateway/ui/`` served at
``gateway.control_ui.base_path``.

The files are read once, before the gateway serves (no file I/O on the request path), and
answered from memory with a strict Content-Security-Policy (no inline script, nothing from
another origin; the WebSocket only to the page's own host), an ``ETag`` and
``Cache-Control: no-cache`` (the browser revalidates and gets ``304`` while nothing changed).
The static files need no credentials: the page asks for the token and presents it in the
WebSocket ``connect``. The page is ``<base>``; its files are under ``<base>ui/``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from clawgate.config import ControlUiConfig
from clawgate.errors import NotFound
from clawgate.gateway.http import error_response

UI_DIR = Path(__file__).with_name("ui")
INDEX = "index.html"
MEDIA = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
# A Host header that can go into the policy verbatim; anything else gets only 'self'.
HOST = re.compile(r"[A-Za-z0-9.-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
          "font-src 'self'; connect-src 'self'{ws}; manifest-src 'self'; base-uri 'none'; "
          "form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file, in memory."""

    body: bytes
    media: str
    etag: str


def load(root: Path = UI_DIR) -> Mapping[str, Asset]:
    """Every servable file under ``root``, by its path relative to it (``js/app.js``)."""
    assets: dict[str, Asset] = {}
    for path in sorted(root.rglob("*")):
        media = MEDIA.get(path.suffix)
        if media is None or not path.is_file():
            continue
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:20]
        assets[path.relative_to(root).as_posix()] = Asset(body, media, f'"{digest}"')
    return MappingProxyType(assets)


def policy(request: Request) -> str:
    """The Content-Security-Policy of a page served for ``request``: scripts, styles and
    connections only to the page's own origin (``ws://`` and ``wss://`` of its host)."""
    host = request.headers.get("host", "")
    ws = f" ws://{host} wss://{host}" if HOST.fullmatch(host) else ""
    return POLICY.format(ws=ws)


class ControlUi:
    """The Control UI's routes for one gateway."""

    def __init__(self, config: ControlUiConfig, assets: Mapping[str, Asset] | None = None) -> None:
        self.config = config
        self.base = config.base_path
        self.assets = load() if assets is None else assets

    @property
    def prefix(self) -> str:
        """Where the page's files are served: ``<base>ui/``."""
        return self.base + "ui/"

    def reserved(self) -> tuple[str, ...]:
        """Paths no plugin route may take while the UI is on."""
        if not self.config.enabled:
            return ()
        return (self.base, self.prefix) if self.base != "/" else (self.prefix,)

    def routes(self) -> list[BaseRoute]:
        """The page and its files (nothing when the UI is off)."""
        if not self.config.enabled:
            return []
        routes: list[BaseRoute] = [
            Route(self.base, self.index, methods=["GET", "HEAD"]),
            Route(self.prefix + "{path:path}", self.file, methods=["GET", "HEAD"]),
        ]
        if self.base != "/":
            routes.append(Route(self.base.rstrip("/"), self.redirect, methods=["GET", "HEAD"]))
        return routes

    async def index(self, request: Request) -> Response:
        return self._send(request, self.assets.get(INDEX))

    async def file(self, request: Request) -> Response:
        return self._send(request, self.assets.get(str(request.path_params["path"])))

    async def redirect(self, request: Request) -> Response:
        return RedirectResponse(self.base, status_code=308)

    def _send(self, request: Request, asset: Asset | None) -> Response:
        headers = {
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        if asset is None:
            return error_response(NotFound(f"no route {request.url.path}"))
        headers["ETag"] = asset.etag
        if asset.media.startswith("text/html"):
            headers["Content-Security-Policy"] = policy(request)
        if asset.etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        return Response(asset.body, headers=headers, media_type=asset.media)


def _etags(header: str) -> set[str]:
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}
