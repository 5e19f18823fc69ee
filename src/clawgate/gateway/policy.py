"""The WebSocket side's knobs, declared once: a frozen :class:`WsPolicy` built from
``[gateway.ws]`` (and OpenClaw's handshake-timeout variable), read by the hub and every
connection. Tests lower the knobs through the config like a user would."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from clawgate.config import WsConfig

PROTOCOL_MAX_PAYLOAD = 26_214_400  # policy.maxPayload: largest frame after hello (25 MiB)
PRECONNECT_MAX_BYTES = 65_536  # frames before hello-ok
TOTAL_BUFFER_CAP = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WsPolicy:
    """Bounds of the control plane (I12), per connection and in total."""

    tick_interval_s: float = 15.0
    handshake_timeout_s: float = 15.0
    max_payload: int = PROTOCOL_MAX_PAYLOAD
    connection_buffer: int = 512 * 1024  # queued outbound bytes one connection may hold
    total_buffer: int = 64 * 1024 * 1024  # queued outbound bytes of all connections together
    max_connections: int = 10_000
    max_queued_frames: int = 10_000
    max_in_flight: int = 64  # requests one connection has served at once
    health_every_ticks: int = 4  # a `health` event every fourth tick

    @classmethod
    def from_config(cls, ws: WsConfig, env: Mapping[str, str]) -> WsPolicy:
        handshake = ws.handshake_timeout_ms
        raw = env.get("CLAWGATE_HANDSHAKE_TIMEOUT_MS") or env.get("OPENCLAW_HANDSHAKE_TIMEOUT_MS")
        if handshake is None and raw and raw.strip().isdigit() and int(raw) > 0:
            handshake = int(raw)
        return cls(
            tick_interval_s=ws.tick_interval_ms / 1000,
            handshake_timeout_s=(handshake or 15_000) / 1000,
            max_payload=ws.max_payload_bytes,
            connection_buffer=ws.max_connection_buffered_bytes,
            total_buffer=ws.max_buffered_bytes or machine_buffer_budget(),
            max_connections=ws.max_connections,
        )


def machine_buffer_budget() -> int:
    """The default total outbound budget: a sixteenth of physical memory, at most 256 MiB."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64 * 1024 * 1024
    return max(16 * 1024 * 1024, min(TOTAL_BUFFER_CAP, physical // 16))
