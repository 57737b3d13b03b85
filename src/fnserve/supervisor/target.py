"""What a worker runs: the function spec, the interpreter and the environment of one function."""

from __future__ import annotations

import fnmatch
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..project.types import Function

INTERNAL_ENV_PREFIX = "FNSERVE_"
DEFAULT_BODY_LIMIT = 4_718_592  # 4.5 MB (SPEC §5)
PYCACHE = Path(".fnserve") / "pycache"  # bytecode of a project's workers, relative to its root

# The host variables a function gets in ``fnserve start`` (issue 10 item 8), on top of the
# project's own (.env*, vercel.json env); ``env_passthrough`` adds names or globs. ``fnserve dev``
# passes the whole environment (minus FNSERVE_*), as ``vercel dev`` does: it is the user's shell.
DEFAULT_ENV_PASSTHROUGH = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_*", "TZ", "TZDIR",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "LD_LIBRARY_PATH", "VIRTUAL_ENV",
)
# Where a confined instance may write besides its own TMPDIR (Vercel: /tmp only; /dev: null, shm, tty).
DEFAULT_WRITABLE = ("/tmp", "/dev")


def python_options(target: WorkerTarget) -> list[str]:
    """Interpreter options every worker and zygote of ``target`` starts with: ``-I`` (isolated: no
    ``PYTHONPATH``/``PYTHON*`` from the environment, no user site, no cwd on ``sys.path``), ``-u``
    (unbuffered output: it reaches the log at once and survives ``os._exit``) and ``-X
    pycache_prefix`` (bytecode under ``.fnserve/``, never beside the user's files)."""
    options = ["-I", "-u"]
    if target.pycache is not None:
        options += ["-X", f"pycache_prefix={target.pycache}"]
    return options


def bytecode_dirs(source: Path) -> list[Path]:
    """The folders that may hold bytecode of ``source`` (a ``.py`` path): its ``__pycache__`` and,
    under the nearest ancestor with a ``.fnserve/pycache`` (``-X pycache_prefix``), the mirror of
    its folder there. ``fnserve dev`` deletes a saved module's ``.pyc`` in both."""
    source = Path(source).resolve()
    found = [source.parent / "__pycache__"]
    for parent in source.parents:
        if (parent / PYCACHE).is_dir():
            found.append(parent / PYCACHE / str(source.parent).lstrip(os.sep))
            break
    return found


def compile_bytecode(python: Path, pycache: Path, folder: Path, *, timeout: float = 120.0) -> bool:
    """Compile every ``.py`` file under ``folder`` (a snapshot of the project) with ``python``
    into ``pycache`` (``-X pycache_prefix``, where its workers look), so confined instances,
    which cannot write bytecode, do not compile the project at every cold start. Runs no user
    code (``compileall``). Returns True when every file compiled (a file with a syntax error is
    skipped; its function fails to load as it would anyway)."""
    import subprocess

    command = [str(python), "-I", "-X", f"pycache_prefix={pycache}", "-m", "compileall", "-q", str(folder)]
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def function_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None,
                 passthrough: Sequence[str] | None = None) -> dict[str, str]:
    """The environment of a function process: ``base`` (default ``os.environ``) minus fnserve's
    own ``FNSERVE_*`` settings, then ``extra`` on top (the function env from config: ``.env``,
    ``.env.local``, vercel.json ``env``). ``passthrough``: None keeps every variable of ``base``
    (``fnserve dev``); else only those named by :data:`DEFAULT_ENV_PASSTHROUGH` or by one of
    ``passthrough`` (names or ``fnmatch`` globs, case-sensitive: ``AWS_*``) are kept
    (``fnserve start``). Never writes to ``os.environ``."""
    base = os.environ if base is None else base
    allowed = None if passthrough is None else (*DEFAULT_ENV_PASSTHROUGH, *passthrough)
    env = {k: v for k, v in base.items() if not k.startswith(INTERNAL_ENV_PREFIX)
           and (allowed is None or any(fnmatch.fnmatchcase(k, pattern) for pattern in allowed))}
    env.update(extra or {})
    return env


def resolve_user(name: str) -> dict[str, Any]:
    """``{"uid", "gid", "groups", "name", "home"}`` of the user ``name`` (a login name or a
    numeric uid) from the password database, for ``--user``. Raises ``KeyError`` when there is
    no such user."""
    import pwd

    entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    try:
        groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    except OSError:
        groups = [entry.pw_gid]
    return {"uid": entry.pw_uid, "gid": entry.pw_gid, "groups": sorted(set(groups)), "name": entry.pw_name,
            "home": entry.pw_dir}


def confinement(project: Path, *, read_only: bool = True, writable: Sequence[str] = (),
                user: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The confinement of a ``fnserve start`` instance (``WorkerTarget.confine``; applied in the
    instance by ``runtime.confine``): ``project``: the live project folder; ``read_only``:
    writes only beneath :data:`DEFAULT_WRITABLE`, ``writable`` (absolute folders) and the
    instance's TMPDIR (Landlock); ``user``: ``resolve_user``'s record to run instances as (the
    supervisor runs as root), or None. JSON-able."""
    return {"read_only": bool(read_only), "writable": [*DEFAULT_WRITABLE, *(str(Path(w)) for w in writable)],
            "project": str(project), "user": dict(user) if user else None, "mount_fallback": True}


def instance_confinement(target: WorkerTarget, folder: str | None) -> dict[str, Any] | None:
    """The ``"confine"`` worker option for one new instance of ``target``: its confinement with
    ``"tmpdir"``, a new private folder under ``folder`` (the supervisor's socket folder; owned by
    the instance's user), which the caller removes when the instance has exited. None when the
    target is not confined (``fnserve dev``). Raises ``OSError`` when the folder cannot be made."""
    if not target.confine:
        return None
    options = dict(target.confine)
    tmpdir = tempfile.mkdtemp(prefix="tmp-", dir=folder)
    user = options.get("user")
    if user:
        os.chown(tmpdir, int(user["uid"]), int(user["gid"]))
        if folder:
            os.chmod(folder, 0o711)  # the instance's user reaches its TMPDIR; it cannot list the folder
    options["tmpdir"] = tmpdir
    return options


def interpreter_env(env: dict[str, str], python: Path) -> dict[str, str]:
    """Point ``PATH``/``VIRTUAL_ENV`` of a function's environment at the environment of ``python``
    instead of fnserve's own virtualenv, so ``subprocess.run(["python", ...])`` or a console script
    inside the function finds the function's tools, never fnserve's. ``env`` is changed and
    returned. A ``python`` that is fnserve's own interpreter leaves ``env`` as it is."""
    if Path(python) == Path(sys.executable):
        return env
    own_bin = str(Path(sys.prefix) / "bin") if sys.prefix != sys.base_prefix else None
    parts = [d for d in env.get("PATH", "").split(os.pathsep) if d and d != own_bin]
    if env.get("VIRTUAL_ENV") == sys.prefix:
        del env["VIRTUAL_ENV"]
    root = Path(python).parent.parent
    if (root / "pyvenv.cfg").exists():  # a virtualenv / uv env: activate it
        env["VIRTUAL_ENV"] = str(root)
        bin_dir = str(Path(python).parent)
        parts = [bin_dir] + [d for d in parts if d != bin_dir]
    env["PATH"] = os.pathsep.join(parts)
    return env


def function_spec(
    function: Function,
    project_root: Path,
    *,
    body_limit: int = DEFAULT_BODY_LIMIT,
    concurrency: int | None = None,
    handler_log: str = "show",
) -> dict[str, Any]:
    """The JSON-able function spec of docs/ARCHITECTURE.md ("runtime") for ``function``:
    ``{"id", "path", "module", "attr", "kind", "layout", "import_roots", "project_root",
    "body_limit", "concurrency", "handler_log"}``. ``body_limit``: bytes; ``concurrency``: None =
    the kind's default; ``handler_log``: ``"show"`` or ``"hide"`` (the setting: a handler class's
    per-request line, ``runtime.handler``)."""
    entry = function.entry
    return {
        "id": function.id,
        "path": str(function.path),
        "module": function.module,
        "attr": entry.attr if entry else None,
        "kind": entry.kind.value if entry else None,
        "layout": function.layout.value,
        "import_roots": [str(p) for p in function.import_roots],
        "project_root": str(project_root),
        "body_limit": body_limit,
        "concurrency": concurrency,
        "handler_log": handler_log,
    }


@dataclass(frozen=True)
class WorkerTarget:
    """Everything needed to start instances of one function.

    ``id``: the function id (``api/users/[id].py``); ``spec``: the function spec (see
    ``function_spec``); ``python``: the interpreter of the function's environment (default: the
    one running fnserve); ``env``: the COMPLETE environment of the process (see ``function_env``);
    ``cwd``: the project root; ``limits``: the function's limits for scaling and enforcement
    (SPEC §5/§9): a ``fnserve.config.FunctionLimits``-like object or a callable
    ``kind -> FunctionLimits`` (see ``fnserve.supervisor.scaling``), None = no limits (dev);
    ``pycache``: the folder bytecode goes to (``-X pycache_prefix``; ``<project>/.fnserve/pycache``),
    never the user's source tree (``python -I`` ignores ``PYTHONDONTWRITEBYTECODE``), None: Python's default;
    ``confine``: ``confinement(...)`` for ``fnserve start`` (read-only code, another user), None: none (dev).
    Two targets that compare equal run the same worker, so ``Supervisor.update`` restarts a
    function only when its target changed (``limits`` is not compared: new limits apply at once).
    """

    id: str
    spec: Mapping[str, Any]
    python: Path = field(default_factory=lambda: Path(sys.executable))
    env: Mapping[str, str] = field(default_factory=function_env)
    cwd: Path | None = None
    limits: Any = field(default=None, compare=False)
    pycache: Path | None = field(default=None, compare=False)
    confine: Mapping[str, Any] | None = None

    def __hash__(self) -> int:
        return hash(self.id)

    @classmethod
    def from_function(
        cls,
        function: Function,
        project_root: Path,
        *,
        python: Path | None = None,
        env: Mapping[str, str] | None = None,
        body_limit: int = DEFAULT_BODY_LIMIT,
        concurrency: int | None = None,
        limits: Any = None,
        pycache: Path | None = None,
        passthrough: Sequence[str] | None = None,
        confine: Mapping[str, Any] | None = None,
        handler_log: str = "show",
    ) -> WorkerTarget:
        """A target for ``function`` of the project at ``project_root``. ``env``: the function env
        from config (added on top of ``os.environ`` minus ``FNSERVE_*``; with ``passthrough``
        only the allow-listed host variables, see ``function_env``); ``python``: default
        ``sys.executable`` (another interpreter also gets its own ``PATH``/``VIRTUAL_ENV``, see
        ``interpreter_env``); ``pycache``: default ``<project_root>/.fnserve/pycache``;
        ``handler_log``: see ``function_spec``."""
        python = Path(python) if python else Path(sys.executable)
        return cls(
            id=function.id,
            spec=function_spec(function, project_root, body_limit=body_limit, concurrency=concurrency,
                               handler_log=handler_log),
            python=python,
            env=interpreter_env(function_env(env, passthrough=passthrough), python),
            cwd=Path(project_root),
            limits=limits,
            pycache=Path(pycache) if pycache else Path(project_root) / PYCACHE,
            confine=confine,
        )


# the keys of a function spec that are its code (the rest are settings: body_limit, handler_log...)
_CODE_KEYS = ("path", "module", "attr", "kind", "layout", "import_roots", "project_root")


def restart_reason(old: WorkerTarget | None, new: WorkerTarget) -> str:
    """Why ``Supervisor.update`` restarted a function whose target went from ``old`` to ``new``
    (the reload lines of ``fnserve dev`` and of ``fnserve start``'s SIGHUP):
    ``"code"`` (its entry changed: kind, attribute, a file error appeared or went; or it is new),
    ``"python"`` (another interpreter: the project env was rebuilt), ``"environment"`` (its
    variables: ``.env``, ``vercel.json`` ``env``), else ``"settings"`` (body limit, handler log...)."""
    if old is None or any(old.spec.get(k) != new.spec.get(k) for k in _CODE_KEYS):
        return "code"
    if old.python != new.python:
        return "python"
    if old.env != new.env:
        return "environment"
    return "settings"
