"""How worker processes come to life: a small strategy base class and a name map.

``SpawnLauncher`` starts a fresh interpreter per instance (``python -I -u -c BOOTSTRAP ...``). A
``ForkLauncher`` (issue 6: a pre-warmed zygote per function env that forks instances) plugs in by
subclassing ``Launcher`` and returning a ``WorkerProcess``; the supervisor needs nothing else.

The bootstrap loads ``fnserve/runtime/`` under the private package name ``_fnserve_runtime`` with
``importlib.util.spec_from_file_location`` so nothing of fnserve — nor its dependencies — is on the
function's ``sys.path``; ``-I`` (isolated mode) also drops ``PYTHONPATH``, user site-packages and
the current directory from ``sys.path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .reaper import REAPER
from .target import WorkerTarget, python_options

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
PRIVATE_NAME = "_fnserve_runtime"

def pid_alive(pid: int) -> bool:
    """True when a process ``pid`` exists (ours or another user's: ``kill(pid, 0)``); the sweeps of
    stale sockets, cgroup folders and snapshots use it to leave a live fnserve's files alone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


BOOTSTRAP = (
    "import importlib.util as u,sys\n"
    "d=sys.argv[1];n=%r\n"
    "s=u.spec_from_file_location(n,d+'/__init__.py',submodule_search_locations=[d])\n"
    "m=u.module_from_spec(s);sys.modules[n]=m;s.loader.exec_module(m)\n"
    "del u,s,m\n"
    "from _fnserve_runtime.worker import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
) % PRIVATE_NAME


class WorkerProcess:
    """A started worker process, whatever started it: ``pid`` (int; it leads its own process group,
    so its pgid is its pid); ``output_fds``: the read ends of its stdout and stderr pipes (the
    supervisor's ``OutputPump`` reads and closes them), or None; ``stdout`` / ``stderr``: else
    ``asyncio.StreamReader`` of its output (or None); ``returncode``: None while it runs;
    ``await wait() -> int`` the exit status (negative: killed by that signal); ``signal(signum)``
    sends a signal to its process group (to the process alone while it has none yet), ignoring a
    process that is already gone.

    Its exit is watched by ``reaper.REAPER`` (pidfd): with ``reap`` (we are its parent) its
    process group is SIGKILLed before it is reaped, so nothing the function started outlives it.
    ``popen``: the ``subprocess.Popen`` that started it (told its status, so it never waits itself).
    """

    def __init__(self, pid: int, output_fds: tuple[int, int] | None = None, *, reap: bool = True,
                 popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.output_fds = output_fds
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self.returncode: int | None = None
        self._popen = popen
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.watch = REAPER.watch(pid, self._set_exit, reap=reap)

    def _set_exit(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
            if self._popen is not None:
                self._popen.returncode = status  # reaped by us: Popen must never waitpid this pid again
            if not self._exited.done():
                self._exited.set_result(status)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def signal(self, signum: int) -> None:
        if self.returncode is not None:
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:  # not yet in its own group (just forked): the process itself
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signum)
        except PermissionError:
            pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)


class Launcher:
    """Strategy: start one worker instance for a ``WorkerTarget``.

    ``await launch(target, options) -> WorkerProcess``; ``options`` is the worker options dict
    (``socket``, ``token``, ``heartbeat``, ``stop_timeout``, ``uvloop``; see
    ``fnserve.runtime.worker``). Raises ``OSError`` when the interpreter cannot be started.
    ``await close()`` releases whatever the launcher holds (a zygote, for instance);
    ``await prepare(target, options)`` may get ready ahead of the first launch (warm a zygote;
    ``options``: the same keys as for ``launch``, ``socket`` and ``uvloop`` matter).
    """

    name = "base"

    async def prepare(self, target: WorkerTarget, options: Mapping[str, Any] | None = None) -> None:
        return None

    def retain(self, targets: list[WorkerTarget], use_uvloop: bool = True) -> None:
        """Only ``targets`` remain: release what serves none of them (once its instances ended)."""
        return None

    async def launch(self, target: WorkerTarget, options: Mapping[str, Any]) -> WorkerProcess:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class SpawnLauncher(Launcher):
    """A fresh ``target.python -I -u -X pycache_prefix=... -c BOOTSTRAP`` per instance, in its own session (so a terminal's
    Ctrl-C reaches only the front server, which then stops workers gracefully, and its process
    group is the instance's), with ``target.env`` as its whole environment, ``target.cwd`` as
    working directory and stdout/stderr on pipes whose read ends the supervisor's output thread
    reads. Started with ``subprocess.Popen`` rather than asyncio's subprocess: the supervisor
    (``reaper``), not asyncio's child watcher, reaps it, after killing its process group."""

    name = "spawn"

    async def launch(self, target: WorkerTarget, options: Mapping[str, Any]) -> WorkerProcess:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            popen = self._exec(target, options, out_w, err_w)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return WorkerProcess(popen.pid, (out_r, err_r), popen=popen)

    @staticmethod
    def _exec(target: WorkerTarget, options: Mapping[str, Any], out: int, err: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(target.python),
             *python_options(target),  # -I -u -X pycache_prefix=<project>/.fnserve/pycache
             "-c",
             BOOTSTRAP,
             str(RUNTIME_DIR),
             json.dumps(dict(target.spec), separators=(",", ":")),
             json.dumps(dict(options), separators=(",", ":"))],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(target.env),
            cwd=str(target.cwd) if target.cwd else None,
            start_new_session=True,
        )


LAUNCHERS: dict[str, type[Launcher]] = {"spawn": SpawnLauncher}
