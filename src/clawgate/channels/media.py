"""Files a reply carries: ``MEDIA:<url-or-path>`` tokens in the agent's text (OpenClaw's
convention), split out of the text and loaded for the platform.

A token is ``MEDIA:`` followed by an ``http(s)://`` URL or an absolute (or ``./``) path, without
whitespace, outside fenced code. Local paths must resolve inside an allowed root — the agents'
workspaces and ``[delivery] media_roots`` — so a prompt-injected model cannot post
``/etc/passwd`` to a chat. URLs are downloaded with a size cap (``[delivery] media_max_mb``); a
platform that takes URLs itself still gets the bytes and the URL.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from clawgate.chat import ChannelSendError, MediaKind, OutboundMedia

TOKEN = re.compile(r"\bMEDIA:\s*`?([^\s`]+)`?", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)")
MAX_SOURCE = 1024
MAX_PER_REPLY = 10
FETCH_TIMEOUT_S = 30.0


def _valid(source: str) -> bool:
    if len(source) > MAX_SOURCE:
        return False
    return (source.lower().startswith(("http://", "https://"))
            or source.startswith(("/", "./", "file://")))


def split_media(text: str) -> tuple[str, tuple[str, ...]]:
    """The reply's text without its media tokens, and the sources in order (deduplicated, at
    most ``MAX_PER_REPLY``). Tokens inside fenced code are text."""
    if "MEDIA:" not in text.upper():
        return text, ()
    kept: list[str] = []
    sources: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
        if fenced or "MEDIA:" not in line.upper():
            kept.append(line)
            continue
        rest = line
        for match in TOKEN.finditer(line):
            source = match.group(1).rstrip(".,;:)]}'\"")
            if not _valid(source):
                continue
            if source not in sources and len(sources) < MAX_PER_REPLY:
                sources.append(source)
            rest = rest.replace(match.group(0), "", 1)
        if rest.strip() or rest == line:
            kept.append(re.sub(r"[ \t]{2,}", " ", rest).rstrip())
    cleaned = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return cleaned, tuple(sources)


def kind_of(mime_type: str) -> MediaKind:
    """The attachment kind platforms care about, from a MIME type."""
    major = mime_type.split("/", 1)[0]
    if major in ("image", "audio", "video"):
        return major  # type: ignore[return-value]
    return "file"


def display_name(source: str) -> str:
    """The file name a source is shown with."""
    path = urlsplit(source).path if "://" in source else source
    return PurePosixPath(path).name or "attachment"


class MediaLoader:
    """Loads the media of replies: local files under ``roots``, URLs through an HTTP client
    created on first use and closed by :meth:`close`."""

    def __init__(self, roots: Sequence[Path], *, max_bytes: int) -> None:
        self._roots = tuple(root.resolve() for root in roots)
        self._max_bytes = max_bytes
        self._http: object | None = None  # an httpx.AsyncClient once a URL was fetched

    async def load(self, source: str) -> OutboundMedia:
        """The bytes, name and type of ``source``. A refused or missing file, or one over the
        cap, raises a non-retryable ``ChannelSendError``; a network failure a retryable one."""
        name = display_name(source)
        if source.lower().startswith(("http://", "https://")):
            data, mime = await self._download(source)
            url: str | None = source
        else:
            data = await asyncio.to_thread(self._read, source)
            mime, url = "", None
        mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return OutboundMedia(kind_of(mime), name, mime, data, url)

    def _read(self, source: str) -> bytes:
        raw = source.removeprefix("file://")
        path = Path(raw)
        if not path.is_absolute():
            if not self._roots:
                raise ChannelSendError(f"media {source!r}: no media root", retryable=False)
            path = self._roots[0] / path
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self._roots):
            raise ChannelSendError(
                f"media {source!r} is outside the agents' workspaces and delivery.media_roots",
                retryable=False)
        try:
            size = resolved.stat().st_size
            if size > self._max_bytes:
                raise ChannelSendError(f"media {source!r} is {size} bytes, over "
                                       f"delivery.media_max_mb", retryable=False)
            return resolved.read_bytes()
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise ChannelSendError(f"media {source!r}: {exc.strerror or exc}",
                                   retryable=False) from exc

    async def _download(self, url: str) -> tuple[bytes, str]:
        import httpx  # only a reply that carries a URL pays for the import

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=True)
        client = self._http
        assert isinstance(client, httpx.AsyncClient)
        try:
            async with client.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise ChannelSendError(f"media {url!r}: HTTP {response.status_code}",
                                           retryable=response.status_code >= 500)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise ChannelSendError(f"media {url!r} is over delivery.media_max_mb",
                                               retryable=False)
                    chunks.append(chunk)
                mime = response.headers.get("content-type", "").split(";", 1)[0].strip()
                return b"".join(chunks), mime
        except httpx.HTTPError as exc:
            raise ChannelSendError(f"media {url!r}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        client, self._http = self._http, None
        if client is not None:
            await client.aclose()  # type: ignore[attr-defined]
