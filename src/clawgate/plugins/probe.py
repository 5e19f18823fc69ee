"""The probe: new or changed plugin code from outside the package is imported and registered
first in a short-lived child process, so a plugin that exits the process (``os._exit``),
crashes the interpreter or never returns from ``register()`` costs a child, not the gateway.

Parent side: :class:`Prober` starts a child (forked from a fork server that has the plugin API
imported, so a probe costs a fork rather than an interpreter start) with the plugins to try,
reads one JSON verdict per plugin from a pipe, and gives each plugin
``plugins.probe_timeout_s``. A child that dies or overruns is killed; its plugin gets its
verdict (``exited``, ``timed out``) and a fresh child carries on with the rest. Verdicts are
remembered in ``<state>/plugin-probes.json`` by a digest of everything that decides what
loading does (clawgate version, plugin id, origin, root, manifest, code and config digests), so
an unchanged plugin is never probed again and start-up stays fast. Bundled plugins are part of
the package and are not probed.

Child side (``_child_main``): the same loader rules as the gateway (``loader.import_entry``
under a private module name) and a real :class:`~clawgate.plugins.api.PluginApi`. Plugin
output on stdout is sent to stderr.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import multiprocessing.context
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

from clawgate import __version__
from clawgate.config import digest
from clawgate.plugins.metadata import PluginMeta
from clawgate.plugins.plan import PlanEntry

log = logging.getLogger("clawgate.plugins")

CACHE_FILE = "plugin-probes.json"
MAX_VERDICTS = 512
CHILD_START_S = 30.0  # the child's own start (interpreter and imports), before any plugin


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one plugin's probe ended: ``ok``, or why not."""

    ok: bool
    reason: str = ""


def probe_key(entry: PlanEntry) -> str:
    """The digest a verdict is remembered by."""
    return digest([__version__, entry.id, entry.origin, entry.root, entry.manifest_digest,
                   entry.entry_file, entry.code_digest, entry.config_digest])


class Prober:
    """Probes plugins in child processes and remembers the verdicts (one per state dir)."""

    def __init__(self, state_dir: Path, *, timeout_s: float = 10.0) -> None:
        self.path = state_dir / CACHE_FILE
        self.timeout_s = timeout_s
        self.probed = 0  # plugins probed in a child by this prober (not from the cache)

    async def check(self, entries: Sequence[PlanEntry], metas: Mapping[str, PluginMeta], *,
                    root_config: Mapping[str, Any],
                    starting: Callable[[int], None] | None = None) -> dict[str, Verdict]:
        """The verdict for each of ``entries`` (from the cache, else from a child)."""
        cache = await asyncio.to_thread(self._load)
        verdicts: dict[str, Verdict] = {}
        todo: list[tuple[PlanEntry, str]] = []
        for entry in entries:
            key = probe_key(entry)
            known = cache.get(key)
            if known is not None:
                verdicts[entry.id] = Verdict(bool(known.get("ok")), str(known.get("reason", "")))
            else:
                todo.append((entry, key))
        if not todo:
            return verdicts
        if starting is not None:
            starting(len(todo))
        found = await self._run([e for e, _ in todo], metas, root_config)
        for entry, key in todo:
            verdict = found[entry.id]
            verdicts[entry.id] = verdict
            cache[key] = {"plugin": entry.id, "ok": verdict.ok, "reason": verdict.reason,
                          "at": int(time.time())}
            cache.move_to_end(key)
        while len(cache) > MAX_VERDICTS:
            cache.popitem(last=False)
        await asyncio.to_thread(self._save, cache)
        return verdicts

    async def _run(self, entries: list[PlanEntry], metas: Mapping[str, PluginMeta],
                   root_config: Mapping[str, Any]) -> dict[str, Verdict]:
        found: dict[str, Verdict] = {}
        pending = list(entries)
        while pending:
            done = await self._child(pending, metas, root_config, found)
            pending = pending[done:]
        self.probed += len(entries)
        return found

    async def _child(self, entries: list[PlanEntry], metas: Mapping[str, PluginMeta],
                     root_config: Mapping[str, Any], found: dict[str, Verdict]) -> int:
        """One child for ``entries``: how many of them got a verdict (at least one)."""
        request = {"state_dir": str(self.path.parent), "root_config": root_config,
                   "plugins": [_item(metas[e.id]) for e in entries]}
        context = _context()
        ours, theirs = context.Pipe(duplex=False)
        proc = context.Process(target=_child_main, args=(theirs, orjson.dumps(request)),
                               name="clawgate-plugin-probe", daemon=True)
        done = 0
        try:
            await asyncio.to_thread(proc.start)
            theirs.close()
            started = await _receive(ours, CHILD_START_S)
            if started is None or started.get("ready") is not True:
                # The probe itself could not start: nothing is known of these plugins.
                for entry in entries:
                    found[entry.id] = Verdict(False, "probe: the probe process did not start")
                return len(entries)
            for entry in entries:
                try:
                    answer = await _receive(ours, self.timeout_s)
                except TimeoutError:
                    found[entry.id] = Verdict(False, (
                        f"probe: import and register() did not finish within "
                        f"{self.timeout_s:g} s (plugins.probe_timeout_s); the plugin was not "
                        "loaded"))
                    return done + 1
                if answer is None:
                    await asyncio.to_thread(proc.join, 5)
                    code = proc.exitcode or 0
                    how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                    found[entry.id] = Verdict(False, (
                        f"probe: the plugin ended the process ({how}) during import or "
                        "register(); the plugin was not loaded"))
                    return done + 1
                found[entry.id] = Verdict(bool(answer.get("ok")), str(answer.get("reason", "")))
                done += 1
            return done
        finally:
            ours.close()
            if proc.pid is not None:
                if proc.is_alive():
                    proc.kill()
                proc.join(5)  # just killed (or already ended): returns at once
                proc.close()

    def _load(self) -> OrderedDict[str, dict[str, Any]]:
        try:
            data = orjson.loads(self.path.read_bytes())
            verdicts = data.get("verdicts") if isinstance(data, dict) else None
            if isinstance(verdicts, dict):
                return OrderedDict((k, v) for k, v in verdicts.items() if isinstance(v, dict))
        except (OSError, orjson.JSONDecodeError):
            pass
        return OrderedDict()

    def _save(self, cache: OrderedDict[str, dict[str, Any]]) -> None:
        body = orjson.dumps({"version": 1, "verdicts": cache})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".probes-")
            with os.fdopen(fd, "wb") as f:
                f.write(body)
            os.replace(tmp, self.path)
        except OSError as exc:  # only the cache is lost: the next start probes again
            log.warning("cannot save plugin probe verdicts to %s: %s", self.path, exc)


def _item(meta: PluginMeta) -> dict[str, Any]:
    assert meta.manifest is not None
    return {"id": meta.id, "manifest": str(meta.manifest.path), "config": dict(meta.config)}


def _context() -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    """Probe children come from a fork server (started once per process, with the plugin API
    already imported), so a probe costs a fork, not an interpreter start. Where fork servers
    do not exist, a fresh interpreter per child."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["clawgate.plugins.probe", "clawgate.plugins.loader",
                                        "clawgate.plugins.api"])
        return context
    return multiprocessing.get_context("spawn")


async def _receive(conn: Connection, within: float) -> dict[str, Any] | None:
    """The next message from the child, or None when it ended; TimeoutError after ``within``
    seconds."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()

    def ready() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        await asyncio.wait_for(readable, within)
    finally:
        loop.remove_reader(conn.fileno())
    try:
        value = orjson.loads(conn.recv_bytes())
    except (EOFError, OSError):
        return None
    return value if isinstance(value, dict) else {}


# -- the child ------------------------------------------------------------------------------------

def _child_main(conn: Connection, raw: bytes) -> None:
    """The child: probe the plugins of the request; one JSON verdict per message."""
    os.dup2(2, 1)  # what plugins print goes to stderr
    request = orjson.loads(raw)
    from clawgate.config import parse
    from clawgate.plugins import loader
    from clawgate.plugins.api import PluginApi
    from clawgate.plugins.manifest import read_manifest

    root_config = parse(request["root_config"])
    state_dir = Path(request["state_dir"])
    conn.send_bytes(orjson.dumps({"ready": True}))
    order = itertools.count()
    for n, item in enumerate(request["plugins"]):
        verdict: dict[str, Any]
        try:
            manifest = read_manifest(Path(item["manifest"]))
            register = loader.import_entry(f"_clawgate_probe{n}", manifest.root,
                                           manifest.entry_module(), manifest.entry_function())
            api = PluginApi(manifest, config=item["config"], root_config=root_config,
                            state_dir=state_dir, hook_counter=lambda: next(order))
            try:
                outcome = register(api)
                if asyncio.iscoroutine(outcome):
                    outcome.close()
            finally:
                api.close()
            verdict = {"ok": True}
        except (Exception, SystemExit) as exc:  # the gateway's loader reports these itself
            verdict = {"ok": True, "note": loader.describe(exc)}
        conn.send_bytes(orjson.dumps({"id": item["id"], **verdict}))
    conn.close()
