"""OpenClaw 2026.9.6's wire shapes, transcribed as JSON Schemas for conformance tests.

Where OpenClaw publishes a schema (``src/gateway/protocol/schema/*.ts``: ``HelloOkSchema``,
``ChatEventSchema``, ``CommandsListResultSchema``, ``SystemInfoResultSchema``,
``AgentIdentityResultSchema``, ``LogsTailResultSchema``, ``ConfigSchemaResponseSchema``,
``TasksListResultSchema``, ``QuestionListResultSchema``, ``UpdateStatusResultSchema``) the
transcription keeps its required fields, types and closedness (``additionalProperties: false``
where OpenClaw's object is closed), for the fields clawgate sends. Results OpenClaw builds
without a published schema (``chat.history``, ``sessions.usage``, ``usage.cost``,
``models.authStatus``, ``sessions.changed``, ``session.message``, ``diagnostics.lanes``) are
transcribed from the gateway code that builds them and are open, like the objects there.

Also here: the ``connect`` params OpenClaw's Control UI and TUI really sent (recorded from
their frames), with the secret and the device proof to be filled in by the test.
"""

from __future__ import annotations

from typing import Any

import jsonschema

STR = {"type": "string"}
NONEMPTY = {"type": "string", "minLength": 1}
INT = {"type": "integer", "minimum": 0}
BOOL = {"type": "boolean"}
NUM = {"type": "number"}
STRS = {"type": "array", "items": NONEMPTY}


def closed(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    props = {**required, **(optional or {})}
    return {"type": "object", "required": list(required), "properties": props,
            "additionalProperties": False}


def open_(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": list(required),
            "properties": {**required, **(optional or {})}}


def check(schema: dict[str, Any], value: Any) -> None:
    """Raise jsonschema.ValidationError naming the first mismatch."""
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)


# -- connect, as the clients sent it -------------------------------------------------------------

def control_ui_connect(token: str) -> dict[str, Any]:
    """The Control UI's connect params (2026.9.6, headless Chromium), device added by caller."""
    return {
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "openclaw-control-ui", "version": "2026.9.6",
                   "buildId": "2026.9.6-release-eb377ac59e6c-2026-09-23T16-33-12.144Z",
                   "platform": "Linux x86_64", "mode": "webchat",
                   "instanceId": "2ceb60e4-cdf3-4ff5-a8a1-ec404946622d", "timeZone": "UTC"},
        "role": "operator",
        "scopes": ["operator.admin", "operator.read", "operator.write", "operator.approvals",
                   "operator.questions", "operator.pairing"],
        "caps": ["agent-kind", "approvals", "task-suggestions", "terminal-offset-seq",
                 "terminal-session-metadata", "terminal-upload-path-style", "tool-events",
                 "inline-widgets", "model-selection-policy", "ui-commands", "usage-refreshing"],
        "auth": {"token": token, "password": token},
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "HeadlessChrome/156.0.0.0 Safari/537.36",
        "locale": "en-US",
        # sent by the UI when the challenge advertises model-catalog-snapshot (OpenClaw's does)
        "modelCatalog": {"sessionKey": "main"},
    }


def tui_connect(token: str) -> dict[str, Any]:
    """``openclaw tui``'s connect params (2026.9.6), device added by caller."""
    return {
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "openclaw-tui", "displayName": "openclaw-tui", "version": "2026.9.6",
                   "platform": "linux", "deviceFamily": "Linux", "mode": "ui",
                   "instanceId": "9d299d39-bd2e-4a8a-82c9-f52146c5c6fe"},
        "caps": ["agent-kind", "plugin-approvals", "task-suggestions", "tool-events"],
        "auth": {"token": token}, "role": "operator",
        "scopes": ["operator.admin", "operator.read", "operator.write", "operator.approvals"],
    }


# -- published schemas -----------------------------------------------------------------------

PRESENCE_ENTRY = closed({"ts": INT}, {
    "host": NONEMPTY, "clientId": NONEMPTY, "ip": NONEMPTY, "version": NONEMPTY,
    "platform": NONEMPTY, "deviceFamily": NONEMPTY, "modelIdentifier": NONEMPTY,
    "timeZone": NONEMPTY, "mode": NONEMPTY, "reason": NONEMPTY, "text": STR,
    "roles": STRS, "scopes": STRS, "instanceId": NONEMPTY, "deviceId": NONEMPTY})

SESSIONS_BLOCK = closed({"path": STR, "count": INT, "recent": {"type": "array", "items": closed(
    {"key": STR, "updatedAt": {"type": ["integer", "null"]},
     "age": {"type": ["integer", "null"]}})}})

HEALTH = closed({}, {
    "ok": {"const": True}, "ts": INT, "durationMs": INT, "heartbeatSeconds": INT,
    "defaultAgentId": STR, "channels": {"type": "object"}, "channelOrder": {"type": "array"},
    "channelLabels": {"type": "object"}, "sessions": SESSIONS_BLOCK,
    "agents": {"type": "array", "items": closed(
        {"agentId": STR, "isDefault": BOOL,
         "heartbeat": closed({"enabled": BOOL, "every": STR,
                              "everyMs": {"type": ["integer", "null"]}, "prompt": STR,
                              "target": STR, "ackMaxChars": INT}, {"model": STR, "session": STR}),
         "sessions": SESSIONS_BLOCK}, {"name": STR})},
})

HELLO_OK = closed({
    "type": {"const": "hello-ok"}, "protocol": {"type": "integer", "minimum": 1},
    "server": closed({"version": NONEMPTY, "connId": NONEMPTY},
                     {"buildId": NONEMPTY, "bootId": NONEMPTY}),
    "features": closed({"methods": STRS, "events": STRS}, {"capabilities": STRS}),
    "snapshot": closed({
        "presence": {"type": "array", "items": PRESENCE_ENTRY}, "health": HEALTH,
        "stateVersion": closed({"presence": INT, "health": INT}), "uptimeMs": INT,
    }, {"configPath": NONEMPTY, "stateDir": NONEMPTY,
        "sessionDefaults": closed({"defaultAgentId": NONEMPTY, "mainKey": NONEMPTY,
                                   "mainSessionKey": NONEMPTY}, {"scope": NONEMPTY}),
        "authMode": {"enum": ["none", "token", "password", "trusted-proxy"]}}),
    "auth": closed({"role": NONEMPTY, "scopes": STRS}),
    "policy": closed({"maxPayload": {"type": "integer", "minimum": 1},
                      "maxBufferedBytes": {"type": "integer", "minimum": 1},
                      "tickIntervalMs": {"type": "integer", "minimum": 1}}),
})

_CHAT_BASE = {"runId": NONEMPTY, "sessionKey": NONEMPTY, "seq": INT}
_CHAT_OPT = {"agentId": NONEMPTY, "spawnedBy": NONEMPTY}
CHAT_EVENT = {"oneOf": [
    closed({**_CHAT_BASE, "state": {"const": "status"},
            "phase": {"enum": ["preparing_workspace", "naming_worktree", "creating_worktree",
                               "running_setup", "provisioning_environment",
                               "preparing_context", "memory_flushing", "starting_model"]}},
           _CHAT_OPT),
    closed({**_CHAT_BASE, "state": {"const": "delta"}, "deltaText": STR},
           {**_CHAT_OPT, "message": {}, "replace": BOOL, "usage": {}}),
    closed({**_CHAT_BASE, "state": {"const": "final"}},
           {**_CHAT_OPT, "message": {}, "usage": {}, "stopReason": STR}),
    closed({**_CHAT_BASE, "state": {"const": "aborted"}},
           {**_CHAT_OPT, "message": {}, "errorMessage": STR, "stopReason": STR}),
    closed({**_CHAT_BASE, "state": {"const": "error"}},
           {**_CHAT_OPT, "message": {}, "errorMessage": STR, "usage": {}, "stopReason": STR,
            "errorKind": {"enum": ["refusal", "timeout", "rate_limit", "context_length",
                                   "unknown"]}}),
]}

COMMANDS_LIST = closed({"commands": {"type": "array", "maxItems": 500, "items": closed(
    {"name": {"type": "string", "minLength": 1, "maxLength": 200},
     "description": {"type": "string", "maxLength": 2000},
     "source": {"enum": ["native", "skill", "plugin"]},
     "scope": {"enum": ["text", "native", "both"]}, "acceptsArgs": BOOL},
    {"nativeName": NONEMPTY, "textAliases": STRS,
     "category": {"enum": ["session", "options", "status", "management", "media", "tools"]}})}})

SYSTEM_INFO = closed({
    "machineName": STR, "hostname": STR, "platform": STR, "release": STR, "arch": STR,
    "osLabel": STR, "nodeVersion": STR, "pid": {"type": "integer"},
    "uptimeMs": {"type": "integer"}, "cpuCount": {"type": "integer"},
    "memoryTotalBytes": {"type": "integer"}, "memoryFreeBytes": {"type": "integer"},
}, {"lanAddress": STR, "port": {"type": "integer"}, "processInstanceId": NONEMPTY,
    "cpuModel": STR, "loadAverage": {"type": "array", "items": NUM, "minItems": 3,
                                     "maxItems": 3},
    "processMemory": closed({"rssBytes": INT, "heapUsedBytes": INT, "heapTotalBytes": INT},
                            {"externalBytes": INT, "arrayBuffersBytes": INT}),
    "diskTotalBytes": {"type": "integer"}, "diskAvailableBytes": {"type": "integer"},
    "diskPath": STR})

AGENT_IDENTITY = closed({"agentId": NONEMPTY}, {
    "name": NONEMPTY, "nameSource": {"enum": ["config", "agent", "workspace", "default"]},
    "avatar": NONEMPTY, "avatarSource": NONEMPTY,
    "avatarStatus": {"enum": ["none", "local", "remote", "data"]}, "avatarReason": NONEMPTY,
    "emoji": NONEMPTY})

LOGS_TAIL = closed({"file": NONEMPTY, "cursor": INT, "size": INT,
                    "lines": {"type": "array", "items": STR}},
                   {"truncated": BOOL, "reset": BOOL, "skippedBytes": INT})

CONFIG_SCHEMA = closed({"schema": {"type": "object"}, "uiHints": {"type": "object"},
                        "version": NONEMPTY, "generatedAt": NONEMPTY})

TASKS_LIST = closed({"tasks": {"type": "array"}}, {"nextCursor": STR})
QUESTION_LIST = closed({"questions": {"type": "array"}})
UPDATE_STATUS = closed({"sentinel": {}, "updateAvailable": {"type": ["object", "null"]}},
                       {"activeRun": {"type": "object"}, "lastRun": {"type": "object"}})

# -- shapes from OpenClaw's gateway code ------------------------------------------------------

TOTALS = open_({k: NUM for k in ("input", "output", "cacheRead", "cacheWrite", "totalTokens",
                                  "totalCost", "inputCost", "outputCost", "cacheReadCost",
                                  "cacheWriteCost", "missingCostEntries")})

USAGE_COST = open_({"updatedAt": INT, "days": INT, "totals": TOTALS,
                    "daily": {"type": "array", "items": {"allOf": [TOTALS, open_(
                        {"date": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}})]}}})

SESSIONS_USAGE = open_({
    "updatedAt": INT, "startDate": STR, "endDate": STR, "totals": TOTALS,
    "sessions": {"type": "array", "items": open_({"key": STR, "usage": {"allOf": [
        TOTALS, open_({"firstActivity": INT, "lastActivity": INT, "durationMs": INT,
                       "activityDates": {"type": "array", "items": STR},
                       "messageCounts": open_({k: INT for k in (
                           "total", "user", "assistant", "toolCalls", "toolResults",
                           "errors")}),
                       "modelUsage": {"type": "array", "items": open_(
                           {"provider": {}, "model": {}, "count": INT, "totals": TOTALS})},
                       "dailyBreakdown": {"type": "array", "items": open_(
                           {"date": STR, "tokens": INT, "cost": NUM})}})]}})},
    "aggregates": open_({"sessionCount": INT, "messages": {"type": "object"},
                         "tools": open_({"totalCalls": INT, "uniqueTools": INT,
                                         "tools": {"type": "array"}}),
                         "byModel": {"type": "array", "items": open_(
                             {"provider": {}, "model": {}, "count": INT, "totals": TOTALS})},
                         "byProvider": {"type": "array"}, "byAgent": {"type": "array"},
                         "byChannel": {"type": "array"}, "byCreator": {"type": "array"},
                         "costDaily": {"type": "array"}, "dailyLatency": {"type": "array"},
                         "modelDaily": {"type": "array"},
                         "daily": {"type": "array", "items": open_(
                             {"date": STR, "tokens": INT, "cost": NUM})}}),
})

AUTH_STATUS = open_({"ts": INT, "providers": {"type": "array", "items": open_(
    {"provider": STR, "displayName": STR,
     "status": {"enum": ["ok", "static", "missing", "expired", "expiring"]},
     "profiles": {"type": "array"}})}})

SESSION_ROW = open_({"key": NONEMPTY, "kind": STR})

CHAT_HISTORY = open_({
    "sessionKey": NONEMPTY, "sessionId": {"type": ["string", "null"]},
    "messages": {"type": "array", "items": open_({"role": STR, "content": {}})},
    "pendingInputs": open_({"items": {"type": "array"}, "total": INT}),
    "defaults": open_({"modelProvider": STR, "model": STR}),
    "sessionInfo": {"anyOf": [SESSION_ROW, {"type": "null"}]},
    "hasMore": BOOL,
})

SESSIONS_CHANGED = open_({"sessionKey": NONEMPTY, "ts": INT},
                         {"reason": STR, "phase": STR, "runId": STR, "agentId": STR})

SESSION_MESSAGE = open_({"sessionKey": NONEMPTY, "messageId": STR, "messageSeq": INT,
                         "message": open_({"role": STR, "content": {}, "timestamp": INT,
                                           "__openclaw": open_({"id": STR, "seq": INT})})})

LANES = open_({"ts": INT, "lanes": {"type": "array", "items": open_(
    {"lane": STR, "queuedCount": INT, "activeCount": INT, "maxConcurrent": INT,
     "draining": BOOL})}, "dynamic": {"type": ["object", "null"]}})
