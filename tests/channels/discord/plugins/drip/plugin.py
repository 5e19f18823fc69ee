"""A test provider that echoes the last user message in small chunks with a pause between them,
so a turn lasts long enough for channel previews to be sent and edited. It takes images (and
says how many came with the message)."""

from __future__ import annotations

import asyncio

from clawgate import Finish, ModelInfo, TextDelta, Usage, text_of


class Drip:
    id = "drip"

    def __init__(self, chunk_chars: int, interval_s: float) -> None:
        self._chunk = chunk_chars
        self._interval = interval_s

    def models(self):
        return [ModelInfo("drip", "Drip (test)", input=("text", "image"))]

    async def stream(self, request):
        users = [m for m in request.messages if m.get("role") == "user"]
        reply = text_of(users[-1]) if users else ""
        content = users[-1].get("content") if users else None
        if isinstance(content, list):  # images came along: say how many and how big
            sizes = [len(part["image_url"]["url"]) for part in content
                     if part.get("type") == "image_url"]
            reply += f" [{len(sizes)} image(s)]"
        for start in range(0, len(reply), self._chunk):
            if start:
                await asyncio.sleep(self._interval)
            yield TextDelta(reply[start:start + self._chunk])
        yield Finish("stop", Usage(input=1, output=1))

    async def aclose(self):
        pass


def register(api):
    config = api.config or {}
    api.register_provider(Drip(int(config.get("chunk_chars", 6)),
                               float(config.get("interval_ms", 150)) / 1000))
