"""Sessions: the session-key grammar and the SQLite store of sessions, transcripts and runs.

``keys`` parses, formats and builds OpenClaw session keys; :class:`SessionStore` keeps session
entries, OpenAI-shaped transcripts and runs in ``<state>/clawgate.db`` without ever running
SQLite on the event loop.
"""

from __future__ import annotations

from clawgate.sessions.keys import (
    SessionKey,
    agent_of,
    canonical,
    dm_key,
    group_key,
    main_key,
    normalize_agent_id,
    openai_user_key,
    openresponses_user_key,
    parse,
    qualify,
    row_kind,
)
from clawgate.sessions.listing import ListQuery, ListResult, SessionRow
from clawgate.sessions.schema import SCHEMA_VERSION, Run, SchemaTooNew, SessionEntry
from clawgate.sessions.store import SessionStore
from clawgate.sessions.transcript import StoredMessage

__all__ = [
    "SCHEMA_VERSION",
    "ListQuery",
    "ListResult",
    "Run",
    "SchemaTooNew",
    "SessionEntry",
    "SessionKey",
    "SessionRow",
    "SessionStore",
    "StoredMessage",
    "agent_of",
    "canonical",
    "dm_key",
    "group_key",
    "main_key",
    "normalize_agent_id",
    "openai_user_key",
    "openresponses_user_key",
    "parse",
    "qualify",
    "row_kind",
]
