"""Zygote cold starts (SPEC §9): instances forked from a pre-warmed process.

``ZygoteLauncher`` (also exported as ``ForkLauncher``) keeps one zygote per (interpreter,
environment, working directory, uvloop): a process running ``fnserve/runtime/zygote.py`` that has
already imported the top-level imports of the functions it serves (``preload_modules``: an ``ast``
scan of the entry file, following project-local helper modules, keeping third-party and stdlib
names only). Functions sharing an environment share its zygote: a function needing modules the
zygote has not imported yet asks it to import them first (the union grows; one copy of FastAPI in
memory for all the functions of a project). A new instance is ``os.fork()``ed from it and then runs
the ordinary worker main (imports the user module, connects to the supervisor, sends READY), so a
cold start costs the fork and the user module's own code, not the import of FastAPI.

Decisions:
- control channel: a ``SOCK_SEQPACKET`` socket pair (no path on disk, nobody else can connect);
- output: the supervisor creates two pipes per instance and passes their write ends with
  ``SCM_RIGHTS``; the child puts them on fds 1/2. Output is attributable per instance exactly as for
  spawned workers (``Instance`` reads the read ends);
- ownership (issue 10 item 6): forked children are the zygote's; it reaps them (SIGKILLing each
  one's process group first: it runs ``setsid``, so its pgid is its pid) and reports
  ``{"op": "exit", "pid", "status"}``. The front is a child subreaper (``reaper``): if the zygote
  dies (a function killed it), its instances are reparented to the front, keep serving, and the
  front reaps them (pidfd); only its standby dies with it. The next launch starts a new zygote.
  A zygote sees EOF on its control socket without a prior ``{"op": "exit"}`` only when the front
  died: it then SIGKILLs its instances' groups (``PR_SET_PDEATHSIG`` on the front's behalf);
- sharing: one zygote serves every function of an interpreter/environment/working directory.
  Killing it harms no other function (above); it holds only third-party and stdlib modules, never
  a function's own code or data (docs/SECURITY.md);
- learning: an instance reports the non-project modules its load and first request imported
  (``imported`` in READY / its first HEARTBEAT; FastAPI imports ``pydantic.v1`` lazily when it
  analyses a route: ~20 ms); the zygote imports them too, so later cold starts skip them;
- standby (Android's USAP pool): the zygote keeps one pre-forked child, already cleaned, with its
  event loop created and connected to the supervisor's socket; a fork request is an assignment to
  it (spec, options, output pipes) and the next standby is forked 50 ms later, off the critical
  path. A standby made before new imports is replaced;
- framework warm-up (``runtime.zygote_child.warm_frameworks``): when FastAPI / Flask is preloaded,
  the zygote builds a throwaway app (typed routes, a pydantic body model) and serves it one
  request through the runtime's adapter, filling the framework's caches; each standby does it
  again before its assignment, so the copy-on-write page faults the user import would take on
  those code paths are taken off the critical path (FastAPI showcase: cold start 11 → ~6 ms,
  private memory 8.2 → 9.0 MB). Only async endpoints / direct WSGI calls: no thread starts;
- retirement: ``update`` retires zygotes no function uses any more (environment changed); each
  exits once its last instance has;
- generations (``renew``, ``fnserve dev``'s reloads): every current zygote is retired the same
  way and the next launch starts a fresh one, which imports what is on disk now; a zygote whose
  start was under way when ``renew`` ran is not used;
- fallback: no ``os.fork`` / ``socket.send_fds``, or a zygote that could not start or runs
  threads after its imports: ``SpawnLauncher`` for every function of that environment; a function
  one of whose (non-optional) imports fails in the zygote: ``SpawnLauncher`` for that function
  (it then reports its own load error as usual). One warning each.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from ..project.importscan import ImportScanner
from .launch import Launcher, SpawnLauncher
from .preloads import preload_modules
from .reaper import REAPER
from .target import WorkerTarget
from .zygote_process import ForkedProcess, ZygoteError, ZygoteProcess

log = logging.getLogger("fnserve.supervisor.zygote_launcher")

__all__ = ["ForkLauncher", "ForkedProcess", "ZygoteProcess", "ZygoteError", "ZygoteLauncher", "preload_modules"]


class ZygoteLauncher(Launcher):
    """Fork instances from a pre-warmed zygote (module docstring). ``preload``: callable
    ``target -> tuple of module names`` (default ``preload_modules``); ``zygote_timeout``: s for a
    zygote's imports; ``fallback``: the launcher used where forking is not possible
    (default ``SpawnLauncher()``). ``prepare(target)`` starts the zygote (and imports what the
    function needs) ahead of its first request; ``Supervisor.start``/``update`` call it."""

    name = "zygote"
    standby_cgroups = True  # the supervisor may pass "standby_cgroup" (a spare) in launch options

    def __init__(self, *, preload: Any = None, zygote_timeout: float = 60.0, fallback: Launcher | None = None,
                 standby: bool = True) -> None:
        # one stamp-cached scanner: a rescan after renew() parses only the files that changed
        self.preload = preload or functools.partial(preload_modules, scanner=ImportScanner())
        self.standby = standby
        self.zygote_timeout = zygote_timeout
        self.fallback = fallback or SpawnLauncher()
        self.zygotes: dict[tuple[Any, ...], ZygoteProcess] = {}
        self._failed: dict[tuple[Any, ...], str] = {}  # zygote key → why that environment spawns
        self._spawn_only: dict[tuple[Any, ...], str] = {}  # (function id, *required modules) → why it spawns
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}
        self._learned: dict[str, set[str]] = {}  # function id → modules its instances imported
        self._retired: list[ZygoteProcess] = []  # closing once their last instance ends
        self._scans: dict[tuple[Any, ...], tuple[str, ...]] = {}
        self.generation = 0  # bumped by renew(): zygotes started before it are not used
        self.supported = hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")

    @staticmethod
    def key(target: WorkerTarget, use_uvloop: bool = True) -> tuple[Any, ...]:
        """What must be equal for two instances to share a zygote."""
        return (str(target.python), tuple(sorted(target.env.items())), str(target.cwd), bool(use_uvloop))

    async def zygote_for(self, target: WorkerTarget, use_uvloop: bool = True, socket_path: str = "") -> ZygoteProcess | None:
        """The running zygote for ``target``, started and given the function's imports if needed,
        or None (spawn instead)."""
        if not self.supported or not REAPER.subreaper:
            return None  # not a subreaper: instances could not outlive their zygote
        key = self.key(target, use_uvloop)
        needed = self.needed(target)
        required = (target.id,) + tuple(n for n in needed if not n.endswith("?"))
        if key in self._failed or required in self._spawn_only:
            return None
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key in self._failed or required in self._spawn_only:
                return None  # decided while we waited for the lock
            zygote = self.zygotes.get(key)
            while zygote is None or not zygote.alive:
                generation = self.generation
                zygote = ZygoteProcess(target, needed, use_uvloop, socket_path, self.standby)
                try:
                    await zygote.start(self.zygote_timeout)
                except ZygoteError as exc:
                    self._give_up(key, target, str(exc))
                    return None
                if generation != self.generation:  # renew() ran while it imported: start another
                    await zygote.close(1.0)
                    zygote, needed = None, self.needed(target)
                    required = (target.id,) + tuple(n for n in needed if not n.endswith("?"))
                    continue
                self.zygotes[key] = zygote
                log.info("zygote %s ready for %s (preloaded %s in %.0f ms)", zygote.pid, target.id,
                         ", ".join(sorted(zygote.loaded)) or "nothing", float(zygote.info.get("import_ms", 0)))
                info = zygote.info
            else:
                missing = zygote.missing(needed)
                info = {}
                if missing:
                    try:
                        info = await zygote.load_more(missing, self.zygote_timeout)
                    except ZygoteError as exc:
                        await zygote.close(1.0)
                        self._give_up(key, target, str(exc))
                        return None
                    log.info("zygote %s: imported %s for %s", zygote.pid, ", ".join(missing), target.id)
            if int(info.get("threads", 1)) > 1:
                self._retire(key, zygote)  # its running instances keep running; no new forks
                self._give_up(key, target, f"{info['threads']} threads run after its imports (forking would be unsafe)")
                return None
            failed = {n: zygote.failed[n] for n in needed if not n.endswith("?") and n in zygote.failed}
            if failed:
                why = "its imports failed in the zygote: " + "; ".join(f"{k}: {v}" for k, v in failed.items())
                self._spawn_only[required] = why
                log.warning("%s: %s; its instances start as fresh interpreters", target.id, why)
                return None
            return zygote

    def needed(self, target: WorkerTarget) -> tuple[str, ...]:
        """What the zygote must have imported for ``target``: the preload scan (cached per entry
        file version) plus what its instances reported importing (optional: ``"name?"``)."""
        path = target.spec.get("path") or ""
        try:
            version = os.stat(path).st_mtime_ns
        except OSError:
            version = 0
        scan_key = (target.id, path, version, tuple(target.spec.get("import_roots") or ()))
        scanned = self._scans.get(scan_key)
        if scanned is None:
            scanned = self._scans[scan_key] = tuple(self.preload(target))
        learned = self._learned.get(target.id)
        return scanned + tuple(sorted(f"{m}?" for m in learned)) if learned else scanned

    def learn(self, target: WorkerTarget, modules: list[str]) -> bool:
        """Remember ``modules`` an instance of ``target`` imported while loading or serving its
        first request (``runtime.worker``: READY/HEARTBEAT ``imported``); True if any is new (the
        supervisor then calls ``prepare`` so the zygote imports them before the next cold start)."""
        known = self._learned.setdefault(target.id, set())
        new = set(modules) - known
        known.update(new)
        return bool(new) and self.supported

    def renew(self) -> int:
        """Start a new generation (``fnserve dev`` after every reload): every current zygote is
        retired (it exits once its last instance has; running instances are not touched), the
        preload scans and the functions sent to spawn for an import that failed in a zygote are
        forgotten, and the next launch or ``prepare`` starts a fresh zygote, which imports what is
        on disk now. Environments that could not fork at all stay on spawn. Returns the new
        generation number."""
        self.generation += 1
        self._retired = [z for z in self._retired if z.alive]  # the ones that exited are done with
        for key, zygote in list(self.zygotes.items()):
            self._retire(key, zygote)
        self._scans.clear()
        self._spawn_only.clear()
        return self.generation

    def _give_up(self, key: tuple[Any, ...], target: WorkerTarget, why: str) -> None:
        self._failed[key] = why
        self.zygotes.pop(key, None)
        log.warning("%s: no zygote: %s; instances of its environment start as fresh interpreters "
                    "(slower cold starts)", target.id, why)
        return None

    async def prepare(self, target: WorkerTarget, options: Mapping[str, Any] | None = None) -> None:
        options = options or {}
        await self.zygote_for(target, bool(options.get("uvloop", True)), str(options.get("socket") or ""))

    async def launch(self, target: WorkerTarget, options: Mapping[str, Any]) -> Any:
        use_uvloop = bool(options.get("uvloop", True))
        for _ in range(2):  # a zygote that died is replaced once
            zygote = await self.zygote_for(target, use_uvloop, str(options.get("socket") or ""))
            if zygote is None:
                break
            try:
                return await zygote.fork(target.spec, options)
            except ZygoteError as exc:
                log.warning("%s: zygote %s failed (%s); starting a new one", target.id, zygote.pid, exc)
                await zygote.close(1.0)
        return await self.fallback.launch(target, options)

    def retain(self, targets: list[WorkerTarget], use_uvloop: bool = True) -> None:
        """Retire the zygotes no target of ``targets`` uses (an environment changed): each closes
        when its last instance has exited."""
        keep = {self.key(t, use_uvloop) for t in targets}
        for key in [k for k in self.zygotes if k not in keep]:
            self._retire(key, self.zygotes[key])

    def _retire(self, key: tuple[Any, ...], zygote: ZygoteProcess) -> None:
        if self.zygotes.get(key) is zygote:
            del self.zygotes[key]
        zygote.retiring = True
        self._retired.append(zygote)
        if not zygote._children:
            zygote._tasks.append(asyncio.get_running_loop().create_task(zygote.close()))

    async def close(self) -> None:
        zygotes, self.zygotes = list(self.zygotes.values()) + self._retired, {}
        self._retired = []
        await asyncio.gather(*(z.close() for z in zygotes), return_exceptions=True)
        await self.fallback.close()


ForkLauncher = ZygoteLauncher
