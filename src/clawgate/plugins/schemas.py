"""JSON Schema work for plugins, done once per content: checking a manifest's ``configSchema``
against its dialect's meta-schema, and validating a plugin's config against that schema.

jsonschema (with referencing, attrs and jsonschema_specifications) is the largest import of a
gateway's start-up, yet a restart with unchanged manifests and config asks it nothing new. So a
:class:`SchemaCache` remembers which checks *passed*, by a digest of what decides the result
(the manifest's bytes; the schema and the config value with its defaults filled in), and with a
state directory it keeps them in ``<state>/plugin-schemas.json``. A remembered pass is a set
lookup and jsonschema is imported only when something must really be checked. Failures are
never remembered: a broken manifest or config is checked again on every scan and refused with
the same message. The file is stamped with the default dialect and the installed jsonschema
(its package file's path, size and modification time: looking its version up in the
distributions' metadata would cost ~3 ms of every start) and ignored when either differs. It
holds at most :data:`MAX_PASSES` digests (oldest dropped) and is only a cache: unreadable or
damaged, it costs one full check.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from clawgate.config import digest, write_state_file

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

log = logging.getLogger("clawgate.plugins")

CACHE_FILE = "plugin-schemas.json"
MAX_PASSES = 2048


DIALECT = "draft-07"  # of a configSchema without "$schema" (see _default_dialect)


def _jsonschema_stamp() -> str:
    """Which jsonschema is installed, without importing it: an upgrade or reinstall rewrites
    its package file."""
    spec = importlib.util.find_spec("jsonschema")
    if spec is None or spec.origin is None:
        return "missing"
    try:
        info = os.stat(spec.origin)
    except OSError:
        return "unreadable"
    return f"{spec.origin}:{info.st_size}:{info.st_mtime_ns}"


class SchemaCache:
    """Compiled validators (one per schema digest) and the digests of checks that passed.

    ``state_dir`` set: the passes are loaded from and saved to ``<state_dir>/plugin-schemas.json``
    (:meth:`save`). ``checked`` counts the checks that ran jsonschema, ``remembered`` those
    answered from the passes. Safe to use from the discovery thread and the event loop.
    """

    def __init__(self, state_dir: Path | None = None) -> None:
        self.path = None if state_dir is None else state_dir / CACHE_FILE
        self.checked = 0
        self.remembered = 0
        self._validators: dict[str, Validator] = {}
        self._passes: OrderedDict[str, None] | None = None  # loaded on first use
        self._dirty = False
        self._stamp: list[str] | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._validators)

    # -- the two checks --------------------------------------------------------------------

    def check_schema(self, schema: Mapping[str, Any], manifest_digest: str) -> str | None:
        """Why ``schema`` (the ``configSchema`` of the manifest whose bytes have
        ``manifest_digest``) is not a valid JSON Schema, as ``"at '<path>': <message>"``, or
        None when it is."""
        key = f"manifest:{manifest_digest}"
        if self._known(key):
            return None
        # Lazy: jsonschema is needed only for a manifest this state dir has not seen pass.
        from jsonschema.exceptions import best_match
        from jsonschema.validators import validator_for

        cls = validator_for(schema, default=_default_dialect())
        error = best_match(_meta_validator(cls).iter_errors(schema))
        self.checked += 1
        if error is not None:
            where = "/".join(str(p) for p in error.path)
            return f"at '{where}': {error.message}"
        self._remember(key)
        return None

    def validate(self, schema: Mapping[str, Any], value: Mapping[str, Any]) -> str | None:
        """The first error of ``value`` under ``schema`` as ``"invalid config at $.path:
        message"``, or None when it is valid."""
        key = f"config:{digest([schema, value])}"
        if self._known(key):
            return None
        errors = self.validator(schema).iter_errors(value)
        error = next(iter(sorted(errors, key=str)), None)
        self.checked += 1
        if error is None:
            self._remember(key)
            return None
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                             for p in error.absolute_path)
        return f"invalid config at {path}: {error.message}"

    def validator(self, schema: Mapping[str, Any]) -> Validator:
        """The compiled validator of ``schema`` (compiling is the slow part)."""
        key = digest(schema)
        found = self._validators.get(key)
        if found is None:
            # Lazy: see check_schema.
            from jsonschema import validators

            cls = validators.validator_for(schema, default=_default_dialect())
            found = cls(schema)
            self._validators[key] = found
        return found

    # -- the remembered passes -------------------------------------------------------------

    def save(self) -> None:
        """Write the passes to the state dir if new ones were added (blocking I/O: call it off
        the event loop). A failure only loses the cache."""
        if self.path is None:
            return
        with self._lock:
            if not self._dirty or self._passes is None:
                return
            body = orjson.dumps({"version": 1, "stamp": self._versions(),
                                 "passes": list(self._passes)})
            self._dirty = False
        try:
            write_state_file(self.path, body)
        except OSError as exc:
            log.warning("cannot save plugin schema checks to %s: %s", self.path, exc)

    def _known(self, key: str) -> bool:
        with self._lock:
            passes = self._loaded()
            if key not in passes:
                return False
            passes.move_to_end(key)
        self.remembered += 1
        return True

    def _remember(self, key: str) -> None:
        with self._lock:
            passes = self._loaded()
            passes[key] = None
            passes.move_to_end(key)
            while len(passes) > MAX_PASSES:
                passes.popitem(last=False)
            self._dirty = True

    def _loaded(self) -> OrderedDict[str, None]:
        if self._passes is None:
            self._passes = OrderedDict()
            if self.path is not None:
                self._passes.update(dict.fromkeys(self._read()))
        return self._passes

    def _read(self) -> list[str]:
        assert self.path is not None
        try:
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return []
        if not isinstance(data, dict) or data.get("stamp") != self._versions():
            return []  # another clawgate or jsonschema may judge differently: check again
        passes = data.get("passes")
        if not isinstance(passes, list):
            return []
        return [p for p in passes[-MAX_PASSES:] if isinstance(p, str)]

    def _versions(self) -> list[str]:
        if self._stamp is None:
            self._stamp = [DIALECT, _jsonschema_stamp()]
        return self._stamp


def _default_dialect() -> type[Validator]:
    # Config schemas without "$schema" are Draft 7, as in OpenClaw (ajv's default dialect);
    # checking a schema against the Draft 7 meta-schema is also ~6x cheaper than 2020-12's.
    from jsonschema.validators import Draft7Validator  # lazy: see SchemaCache.check_schema

    return Draft7Validator


@functools.cache
def _meta_validator(cls: type[Validator]) -> Validator:
    # A pure memo (one compiled meta-schema per JSON Schema dialect, never invalidated):
    # compiling the meta-schema anew for every manifest was 80% of a metadata scan.
    return cls(cls.META_SCHEMA)
