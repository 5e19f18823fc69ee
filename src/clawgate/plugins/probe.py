"""The probe: new or changed plugin code from outside the package is imported and registered
first in a short-lived child process, so a plugin that exits the process (``os._exit``),
crashes the interpreter or never returns from ``register()`` costs a child, not the gateway.

Parent side: :class:`Prober` has a child forked (by :class:`ForkServer`, a helper process that
has the plugin API imported, so a probe costs a fork rather than an interpreter start) for the
plugins to try, reads one JSON verdict per plugin, and gives each plugin
``plugins.probe_timeout_s``. A child that dies or overruns is killed; its plugin gets its
verdict (``exited``, ``timed out``) and a fresh child carries on with the rest. Verdicts are
remembered in ``<state>/plugin-probes.json`` by a digest of everything that decides what
loading does (clawgate version, plugin id, origin, root, manifest, code and config digests), so
an unchanged plugin is never probed again and start-up stays fast. Bundled plugins are part of
the package and are not probed.

Child side (``_child_main``, forked by ``serve``): the same loader rules as the gateway
(``loader.import_entry`` under a private module name) and a real
:class:`~clawgate.plugins.api.PluginApi`. Plugin output on stdout is sent to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import itertools
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from clawgate.config import digest, write_state_file
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
    return digest([_version(), entry.id, entry.origin, entry.root, entry.manifest_digest,
                   entry.entry_file, entry.code_digest, entry.config_digest])


@functools.cache
def _version() -> str:
    # The installed version (read from the distribution, not the root package: that one is the
    # plugin author's API and sits above the layers). On first use, not at import: a lookup in
    # the distributions' metadata costs ~1.5 ms of a start-up that may probe nothing.
    try:
        return importlib.metadata.version("clawgate")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0"


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
        attempt = _Attempt(len(entries), self.timeout_s)
        try:
            await asyncio.to_thread(FORK_SERVER.run, orjson.dumps(request), attempt)
        except BaseException:
            attempt.cancelled = True  # cancelled (a signal during start-up): the child goes too
            attempt.kill()
            raise
        for entry, answer in zip(entries, attempt.answers, strict=False):
            found[entry.id] = Verdict(bool(answer.get("ok")), str(answer.get("reason", "")))
        done = len(attempt.answers)
        if done == len(entries):
            return done
        entry = entries[done]
        if attempt.outcome == "timeout":
            found[entry.id] = Verdict(False, (
                f"probe: import and register() did not finish within {self.timeout_s:g} s "
                "(plugins.probe_timeout_s); the plugin was not loaded"))
        elif attempt.outcome == "no-start":
            for rest in entries[done:]:  # nothing is known of these plugins
                found[rest.id] = Verdict(False, f"probe: the probe process did not start "
                                                f"({attempt.detail})")
            return len(entries)
        else:
            code = attempt.exit_code
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            found[entry.id] = Verdict(False, (
                f"probe: the plugin ended the process ({how}) during import or register(); "
                "the plugin was not loaded"))
        return done + 1

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
            write_state_file(self.path, body)
        except OSError as exc:  # only the cache is lost: the next start probes again
            log.warning("cannot save plugin probe verdicts to %s: %s", self.path, exc)


def _item(meta: PluginMeta) -> dict[str, Any]:
    assert meta.manifest is not None
    return {"id": meta.id, "manifest": str(meta.manifest.path), "config": dict(meta.config)}


# -- the child ------------------------------------------------------------------------------------

class _Attempt:
    """One child's progress, shared between the reading thread and the event loop."""

    def __init__(self, expected: int, timeout_s: float) -> None:
        self.expected = expected
        self.timeout_s = timeout_s
        self.answers: list[dict[str, Any]] = []
        self.outcome: Literal["done", "timeout", "exited", "no-start"] = "done"
        self.exit_code = 0
        self.detail = ""
        self.child: int | None = None
        self.cancelled = False  # set from the event loop: the thread kills the child

    def kill(self) -> None:
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.child, signal.SIGKILL)


class ForkServer:
    """A helper process (``python -m clawgate.plugins.probe --serve``) with the plugin API
    imported, which forks one child per probe request, so a probe costs a fork, not an
    interpreter start. One per process, like multiprocessing's fork server (and, unlike that
    one, it never re-imports the caller's ``__main__``); it holds no gateway state, serves one
    request at a time and ends when this process does (its stdin closes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def run(self, request: bytes, attempt: _Attempt) -> None:
        """Probe in a fresh child; blocking (run it in a thread)."""
        with self._lock:
            try:
                proc = self._started()
                assert proc.stdin is not None
                proc.stdin.write(request.replace(b"\n", b" ") + b"\n")
                proc.stdin.flush()
            except OSError as exc:
                self._stop()
                attempt.outcome, attempt.detail = "no-start", str(exc)
                return
            ready = killed = False
            deadline = time.monotonic() + CHILD_START_S
            while True:
                # Until the child is killed, a cancellation interrupts the wait.
                message = self._message(proc, deadline, None if killed else attempt)
                if attempt.cancelled and not killed:
                    attempt.kill()
                    killed = True
                    deadline = time.monotonic() + CHILD_START_S
                if message is None:  # the helper itself died
                    attempt.kill()
                    self._stop()
                    if attempt.outcome == "done":
                        attempt.outcome = "exited" if ready else "no-start"
                        attempt.exit_code, attempt.detail = -signal.SIGKILL, "no answer"
                    return
                if "child" in message:
                    attempt.child = int(message["child"])
                    if killed or attempt.cancelled:
                        attempt.kill()
                elif "end" in message:
                    attempt.child = None
                    if len(attempt.answers) < attempt.expected and attempt.outcome == "done":
                        attempt.outcome = "exited" if ready else "no-start"
                        attempt.exit_code = int(message["end"])
                        attempt.detail = f"exit status {attempt.exit_code}"
                    return
                elif message.get("ready"):
                    ready = True
                    deadline = time.monotonic() + attempt.timeout_s
                elif "id" in message:
                    attempt.answers.append(message)
                    deadline = time.monotonic() + attempt.timeout_s
                elif time.monotonic() >= deadline:  # nothing in time
                    if killed:  # not even the end of a killed child: give up on the helper
                        self._stop()
                        return
                    attempt.outcome = "timeout" if ready else "no-start"
                    attempt.detail = "no answer"
                    attempt.kill()  # the helper reports the end next
                    killed = True
                    deadline = time.monotonic() + CHILD_START_S

    def _message(self, proc: subprocess.Popen[bytes], deadline: float,
                 attempt: _Attempt | None) -> dict[str, Any] | None:
        """The helper's next line; {} at ``deadline`` or on cancellation; None when the
        helper is gone."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or (attempt is not None and attempt.cancelled):
                return {}
            readable, _, _ = select.select([fd], [], [], min(left, 0.1))
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def _started(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._buffer = b""
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "clawgate.plugins.probe", "--serve"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                close_fds=True)
        return self._proc

    def _stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
            self._proc = None


FORK_SERVER = ForkServer()


# -- the helper and its children ------------------------------------------------------------------

def serve() -> int:
    """The helper: one JSON request per stdin line, each probed in a forked child."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # it ends when its parent does (stdin EOF)
    from clawgate.config import parse  # noqa: F401  (imported once, here, for every child)
    from clawgate.plugins import api, loader, manifest  # noqa: F401

    out = sys.stdout.buffer
    inbox = sys.stdin.buffer
    for line in inbox:
        out.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _child_main(line)
            finally:
                os._exit(0)
        out.write(orjson.dumps({"child": pid}) + b"\n")
        out.flush()
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            # The parent sends nothing while a child runs: readable stdin means it is gone
            # (EOF), and then so is the child, whatever it was doing.
            readable, _, _ = select.select([inbox], [], [], 0.1)
            if readable:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return 0
        out.write(orjson.dumps({"end": os.waitstatus_to_exitcode(status)}) + b"\n")
        out.flush()
    return 0


def _child_main(raw: bytes) -> None:
    """A child: probe the plugins of the request; one JSON verdict per line."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # what plugins print goes to stderr, never into the verdicts
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    def send(value: dict[str, Any]) -> None:
        out.write(orjson.dumps(value) + b"\n")

    request = orjson.loads(raw)
    from clawgate.config import parse
    from clawgate.plugins import loader
    from clawgate.plugins.api import PluginApi
    from clawgate.plugins.manifest import read_manifest

    root_config = parse(request["root_config"])
    state_dir = Path(request["state_dir"])
    send({"ready": True})
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
        send({"id": item["id"], **verdict})


if __name__ == "__main__":
    raise SystemExit(serve() if sys.argv[1:] == ["--serve"] else 2)
