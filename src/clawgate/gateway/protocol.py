"""The WebSocket control plane's wire vocabulary (OpenClaw gateway protocol 3 and 4).

Frames are JSON objects, one per text frame, told apart by ``type``: ``req``, ``res`` and
``event`` (reference §2.1). Request parameters are closed schemas — pydantic models with
``extra="forbid"`` — so an unknown field is an ``INVALID_REQUEST`` naming the field, as in
OpenClaw. ``connect`` is the exception: it accepts every field OpenClaw's clients send and
ignores fields it does not know (OpenClaw's clients add connect fields from release to release,
and a refused handshake locks a client out entirely), while the fields it knows keep their
types. Errors travel as :class:`ErrorShape`; :func:`error_shape` maps any exception to one.
This module also verifies the Ed25519 device identity a client may present in ``connect``.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Literal, NotRequired, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clawgate.errors import ClawgateError, RateLimited, RpcCode, RpcError, kind_of

PROTOCOL_VERSIONS = (3, 4)
DEVICE_SIGNATURE_SKEW_MS = 10 * 60_000

OPERATOR_SCOPES = ("operator.read", "operator.write", "operator.admin", "operator.approvals",
                   "operator.questions", "operator.pairing", "operator.talk",
                   "operator.talk.secrets")


class ErrorShape(TypedDict):
    code: str
    message: str
    details: NotRequired[dict[str, Any]]
    retryable: NotRequired[bool]
    retryAfterMs: NotRequired[int]


class ResponseFrame(TypedDict):
    type: Literal["res"]
    id: str
    ok: bool
    payload: NotRequired[Any]
    error: NotRequired[ErrorShape]


def invalid(message: str, **details: Any) -> RpcError:
    """An ``INVALID_REQUEST`` error (``details`` when given)."""
    return RpcError("INVALID_REQUEST", message, details=details or None)


def error_shape(exc: BaseException) -> ErrorShape:
    """The wire error for ``exc``: explicit for RpcError, the one error table for other
    clawgate errors, and an opaque ``UNAVAILABLE`` for bugs (their text stays in the log)."""
    if isinstance(exc, RpcError):
        out: ErrorShape = {"code": exc.rpc_code, "message": exc.message}
        if exc.details is not None:
            out["details"] = exc.details
        if exc.retryable is not None:
            out["retryable"] = exc.retryable
        if exc.retry_after_ms is not None:
            out["retryAfterMs"] = exc.retry_after_ms
        return out
    if isinstance(exc, ClawgateError):
        kind = kind_of(exc)
        shape: ErrorShape = {"code": kind.rpc, "message": str(exc)}
        if kind.rpc == "UNAVAILABLE":
            shape["retryable"] = True
        if isinstance(exc, RateLimited):
            shape["retryAfterMs"] = int(exc.retry_after_s * 1000) + 1
        return shape
    return {"code": "UNAVAILABLE", "message": "internal error"}


# -- params ----------------------------------------------------------------------------------

class Params(BaseModel):
    """Base of every closed params schema: unknown fields refused, JSON types taken strictly.
    Each validator is built on the method's first call, not at import (start-up time)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)


M = TypeVar("M", bound=BaseModel)


def parse_params(model: type[M], params: Any, method: str) -> M:
    """Validate ``params`` (absent means ``{}``); errors read ``invalid <method> params: ...``."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise invalid(f"invalid {method} params: must be an object")
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        why = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise invalid(f"invalid {method} params: {where}: {why}") from None


class NoParams(Params):
    """Params of a method that takes none (``{}`` or absent)."""


class Tolerant(BaseModel):
    """Base of the handshake's schemas: known fields checked strictly, unknown ones ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, defer_build=True)


class ClientInfo(Tolerant):
    id: str = Field(min_length=1, max_length=128)
    version: str = Field(max_length=128)
    platform: str = Field(max_length=128)
    mode: str = Field(min_length=1, max_length=64)
    displayName: str | None = Field(default=None, max_length=256)
    deviceFamily: str | None = Field(default=None, max_length=128)
    modelIdentifier: str | None = Field(default=None, max_length=128)
    instanceId: str | None = Field(default=None, max_length=256)
    buildId: str | None = Field(default=None, max_length=96)
    timeZone: str | None = Field(default=None, max_length=64)


class AuthParams(Tolerant):
    token: str | None = None
    password: str | None = None
    deviceToken: str | None = None
    bootstrapToken: str | None = None
    approvalRuntimeToken: str | None = None
    agentRuntimeIdentityToken: str | None = None


class DeviceParams(Tolerant):
    id: str = Field(min_length=1, max_length=256)
    publicKey: str = Field(min_length=1, max_length=4096)
    signature: str = Field(min_length=1, max_length=1024)
    signedAt: int
    nonce: str | None = Field(default=None, max_length=256)


class ModelCatalogRequest(Tolerant):
    """``connect.modelCatalog``: which catalogue a ``models.snapshot`` push would describe
    (accepted; clawgate does not push the snapshot, so it does not advertise the capability)."""

    agentId: str | None = None
    sessionKey: str | None = None
    shortId: str | None = None
    slugHint: str | None = None


class ConnectParams(Tolerant):
    minProtocol: int = Field(ge=1)
    maxProtocol: int = Field(ge=1)
    client: ClientInfo
    role: Literal["operator", "node"] = "operator"
    scopes: list[str] | None = Field(default=None, max_length=64)
    caps: list[str] = Field(default_factory=list, max_length=256)
    commands: list[str] = Field(default_factory=list, max_length=1024)
    permissions: dict[str, Any] = Field(default_factory=dict)
    auth: AuthParams | None = None
    device: DeviceParams | None = None
    locale: str | None = None
    userAgent: str | None = None
    pathEnv: str | None = None
    modelCatalog: ModelCatalogRequest | None = None
    computerUse: Any = None  # node claims (accepted, unused)
    workerRuns: dict[str, Any] | None = None


def negotiate(min_protocol: int, max_protocol: int) -> int | None:
    """The highest version in both [min, max] and ours, or None when they do not meet."""
    common = [v for v in PROTOCOL_VERSIONS if min_protocol <= v <= max_protocol]
    return max(common) if common else None


def has_scope(granted: frozenset[str], needed: str) -> bool:
    """``operator.admin`` implies every operator scope; ``operator.write`` implies read."""
    if needed in granted or "operator.admin" in granted:
        return True
    return needed == "operator.read" and "operator.write" in granted


# -- handshake outcomes ------------------------------------------------------------------------

class Refusal(RpcError):
    """A failed handshake: the error the ``connect`` request gets, then a close with
    ``close_code``."""

    def __init__(self, close_code: int, code: RpcCode, message: str, *,
                 close_reason: str | None = None, **options: Any) -> None:
        super().__init__(code, message, **options)
        self.close_code = close_code
        self.close_reason = close_reason or message


def close_reason(text: str) -> str:
    """``text`` cut to what a WebSocket close frame carries (123 bytes of UTF-8)."""
    data = text.encode()
    return text if len(data) <= 123 else data[:120].decode(errors="ignore") + "..."


def bad_connect(exc: RpcError, version: str) -> Refusal:
    """A refused ``connect`` whose error and close reason name the field and our version, so a
    client we cannot serve says why instead of "gateway unreachable"."""
    return Refusal(1008, exc.rpc_code,
                   f"{exc.message} (clawgate {version} speaks OpenClaw protocol "
                   f"{min(PROTOCOL_VERSIONS)}-{max(PROTOCOL_VERSIONS)})",
                   close_reason=close_reason(f"clawgate {version}: {exc.message}"),
                   details={"gatewayVersion": version})


def starting() -> Refusal:
    return Refusal(1013, "UNAVAILABLE", "gateway is starting",
                   details={"reason": "startup-sidecars"}, retryable=True, retry_after_ms=500)


def protocol_mismatch(params: ConnectParams, version: str = "") -> Refusal:
    offered = f"{params.minProtocol}-{params.maxProtocol}"
    return Refusal(1002, "INVALID_REQUEST", "protocol mismatch", close_reason=close_reason(
        f"clawgate {version}: protocol mismatch: client speaks {offered}, gateway "
        f"{min(PROTOCOL_VERSIONS)}-{max(PROTOCOL_VERSIONS)}"), details={
        "code": "PROTOCOL_MISMATCH", "reason": "protocol-unsupported",
        "expectedProtocol": max(PROTOCOL_VERSIONS), "supportedProtocols": list(PROTOCOL_VERSIONS),
        "minProtocol": params.minProtocol, "maxProtocol": params.maxProtocol})


def rate_limited(wait_s: float) -> Refusal:
    return Refusal(1008, "UNAVAILABLE", "too many failed authentication attempts",
                   details={"code": "AUTH_RATE_LIMITED", "reason": "rate_limited"},
                   retryable=True, retry_after_ms=int(wait_s * 1000) + 1)


def presented_secret(params: ConnectParams, mode: str) -> tuple[str, str | None]:
    """(kind, secret) a client presented; either field is accepted in either mode."""
    auth = params.auth or AuthParams()
    if mode == "password":
        return "password", auth.password or auth.token
    return "token", auth.token or auth.password


def unauthorized(kind: str, presented: str | None) -> Refusal:
    state = "missing" if not presented else "mismatch"
    return Refusal(1008, "INVALID_REQUEST", f"unauthorized: gateway {kind} {state}", details={
        "code": f"AUTH_{kind.upper()}_{state.upper()}", "reason": f"{kind}_{state}",
        "canRetryWithDeviceToken": False})


def device_invalid(reason: str) -> Refusal:
    return Refusal(1008, "INVALID_REQUEST", f"device identity invalid: {reason}",
                   details={"code": "DEVICE_AUTH_INVALID", "reason": reason})


def granted_scopes(params: ConnectParams) -> frozenset[str]:
    """Operators get the scopes they ask for (every operator scope when they name none: the
    shared secret is full trust); nodes get no operator scope."""
    if params.role != "operator":
        return frozenset()
    if params.scopes is None:
        return frozenset(OPERATOR_SCOPES)
    return frozenset(s for s in params.scopes if s in OPERATOR_SCOPES)


# -- device identity -------------------------------------------------------------------------

def b64url_decode(text: str) -> bytes:
    """Decode base64url (padding optional); ValueError when it is not."""
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def device_payloads(device: DeviceParams, params: ConnectParams, token: str) -> list[str]:
    """The strings a device may have signed: v2, and v3 (which adds platform and family)."""
    scopes = ",".join(params.scopes or ())
    v2 = "|".join(("v2", device.id, params.client.id, params.client.mode, params.role, scopes,
                   str(device.signedAt), token, device.nonce or ""))
    v3 = "|".join((v2.replace("v2|", "v3|", 1), params.client.platform.lower(),
                   (params.client.deviceFamily or "").lower()))
    return [v2, v3]


def verify_device(params: ConnectParams, *, nonce: str, now_ms: int) -> str | None:
    """Check ``params.device``; None when it is valid, otherwise the reason it is not."""
    device = params.device
    if device is None:
        return None
    try:
        raw = b64url_decode(device.publicKey)
        signature = b64url_decode(device.signature)
    except ValueError:
        return "device-key-encoding"
    if len(raw) != 32:
        return "device-public-key"
    if hashlib.sha256(raw).hexdigest() != device.id.lower():
        return "device-id-mismatch"
    if device.nonce != nonce:
        return "device-nonce-mismatch"
    if abs(now_ms - device.signedAt) > DEVICE_SIGNATURE_SKEW_MS:
        return "device-signature-stale"
    # Imported here: OpenSSL's bindings cost ~6 MB resident and only device clients need them.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    auth = params.auth or AuthParams()
    token = auth.token or auth.deviceToken or auth.bootstrapToken or ""
    key = Ed25519PublicKey.from_public_bytes(raw)
    for payload in device_payloads(device, params, token):
        try:
            key.verify(signature, payload.encode())
            return None
        except InvalidSignature:
            continue
    return "device-signature"
