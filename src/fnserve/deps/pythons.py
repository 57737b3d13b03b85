"""Python interpreter discovery and selection (SPEC §7 "Python version", issue 5 item 3).

Candidates, in this order: the interpreter fnserve runs on; ``python3``/``python3.N`` on ``PATH``
(pyenv's ``shims`` folders skipped: they are shell scripts that fail outside a pyenv shell);
``$PYENV_ROOT/versions/*``; uv-managed Pythons (``$UV_PYTHON_INSTALL_DIR`` or
``~/.local/share/uv/python``). Each is probed once (its version, marker environment and
``sys.stdlib_module_names`` — computed from its stdlib folder on Pythons older than 3.10) and the
result cached in ``.fnserve/pythons.json`` keyed by path, mtime and size. When nothing found on disk
matches, ``uv python find`` is asked (downloads disabled), then — when the caller gives ``uv_fetch``
(an install is wanted) — ``uv python install`` fetches one into uv's own store (a failed fetch,
such as offline, is remembered for ``FETCH_RETRY`` seconds in ``pythons.json``). Versions below
3.9 are listed but never chosen (the function runtime supports 3.9–3.13).

Selection: no request → fnserve's own interpreter. Otherwise the intersection of all requests;
fnserve's interpreter if it satisfies it, else the nearest installed one: the lowest minor version
that satisfies it (``>=3.12`` → 3.12, as the platforms' defaults do), at its highest patch.
When nothing satisfies the request and none can be fetched: with ``fallback`` the nearest
installed Python is chosen and ``PythonChoice.warning`` says so (``fnserve dev``; ``fnserve start
--python-fallback``); without it ``DependencyError`` (the same sentence, listing what is installed
and naming ``--python-fallback``). fnserve never silently runs a pinned project on its own
interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fnserve.deps.jsonfile import read_json_object, write_json_atomic
from fnserve.deps.manifests import PythonRequest
from fnserve.errors import DependencyError

MIN_SUPPORTED = (3, 9)
FETCH_RETRY = 600.0  # s: a failed `uv python install` (offline) is not retried before this
_FETCH_KEY = "uv python install"  # pythons.json entry: {specifier: time of the failed fetch}
_PROBE = r"""
import json, os, platform, sys, sysconfig
names = getattr(sys, "stdlib_module_names", None)
if names is None:
    import pkgutil
    stdlib = sysconfig.get_paths()["stdlib"]
    names = set(sys.builtin_module_names)
    for folder in (stdlib, os.path.join(stdlib, "lib-dynload")):
        for info in pkgutil.iter_modules([folder]):
            names.add(info[1].split(".")[0])
impl = sys.implementation
iv = "%d.%d.%d" % impl.version[:3]
print(json.dumps({
    "version": "%d.%d.%d" % sys.version_info[:3],
    "implementation": impl.name,
    "executable": sys.executable,
    "stdlib": sorted(names),
    "markers": {
        "implementation_name": impl.name, "implementation_version": iv, "os_name": os.name,
        "platform_machine": platform.machine(), "platform_release": platform.release(),
        "platform_system": platform.system(), "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
    },
}))
"""


@dataclass(frozen=True)
class Interpreter:
    """A probed Python. ``path``: the executable (absolute); ``version``: ``"3.12.1"``;
    ``stdlib``: its ``sys.stdlib_module_names``; ``markers``: its PEP 508 marker environment."""

    path: Path
    version: str
    implementation: str = "cpython"
    stdlib: frozenset[str] = field(default_factory=frozenset, repr=False)
    markers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def parsed(self) -> Version:
        return Version(self.version)

    @property
    def supported(self) -> bool:
        return self.parsed.release[:2] >= MIN_SUPPORTED

    @property
    def tag(self) -> str:
        """``"cpython-3.12.1"``."""
        return f"{self.implementation}-{self.version}"


@dataclass(frozen=True)
class PythonChoice:
    """The chosen interpreter and a sentence saying why (for ``fnserve deps``). ``warning``: set
    when it does NOT satisfy the request (the nearest installed one, ``fallback``): print it."""

    interpreter: Interpreter
    reason: str
    requests: tuple[PythonRequest, ...] = ()
    warning: str | None = None


def current_interpreter() -> Interpreter:
    """fnserve's own Python, described without a subprocess."""
    base = Path(getattr(sys, "_base_executable", None) or sys.executable)
    from packaging.markers import default_environment

    return Interpreter(
        path=base if base.exists() else Path(sys.executable),
        version="%d.%d.%d" % sys.version_info[:3],
        implementation=sys.implementation.name,
        stdlib=frozenset(sys.stdlib_module_names),
        markers={k: str(v) for k, v in default_environment().items()},
    )


def candidate_paths(environ: Mapping[str, str]) -> list[Path]:
    """Executables worth probing (deduplicated by real path, order kept). ``environ``: the
    environment fnserve was started with (``PATH``, ``PYENV_ROOT``, ``UV_PYTHON_INSTALL_DIR``)."""
    home = Path(environ.get("HOME", "~")).expanduser()
    found: list[Path] = []
    for folder in environ.get("PATH", "").split(os.pathsep):
        if not folder or Path(folder).name == "shims":
            continue
        for name in ["python3", *(f"python3.{minor}" for minor in range(9, 15))]:
            found.append(Path(folder) / name)
    pyenv = Path(environ.get("PYENV_ROOT") or home / ".pyenv") / "versions"
    uv_dir = Path(environ.get("UV_PYTHON_INSTALL_DIR") or home / ".local/share/uv/python")
    for base in (pyenv, uv_dir):
        if base.is_dir():
            found += sorted(base.glob("*/bin/python3"))
    seen: set[Path] = set()
    out: list[Path] = []
    for path in found:
        try:
            real = path.resolve(strict=True)
        except OSError:
            continue
        if real not in seen and os.access(real, os.X_OK):
            seen.add(real)
            out.append(path)
    return out


def probe(path: Path, cache_file: Path | None) -> Interpreter | None:
    """Describe ``path`` by running it once (cached in ``cache_file`` by path, mtime, size).
    Returns None when it does not run (a broken install) or is not a Python 3."""
    try:
        stat = path.resolve().stat()
    except OSError:
        return None
    stamp = [str(path), stat.st_mtime_ns, stat.st_size]
    cache = _read_cache(cache_file)
    entry = cache.get(str(path))
    if entry and entry.get("stamp") == stamp:
        return _from_json(path, entry["info"])
    try:
        proc = subprocess.run([str(path), "-I", "-c", _PROBE], capture_output=True, text=True, timeout=20)
        info = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        info = None
    if info is None:
        return None
    cache[str(path)] = {"stamp": stamp, "info": info}
    _write_cache(cache_file, cache)
    return _from_json(path, info)


def _from_json(path: Path, info: dict[str, Any]) -> Interpreter:
    return Interpreter(path, info["version"], info.get("implementation", "cpython"),
                       frozenset(info.get("stdlib", ())), dict(info.get("markers", {})))


def _read_cache(cache_file: Path | None) -> dict[str, Any]:
    """``pythons.json``: path → ``{"stamp": [path, mtime_ns, size], "info": probe output}``."""
    return read_json_object(cache_file)


def _write_cache(cache_file: Path | None, cache: dict[str, Any]) -> None:
    if cache_file is not None:
        write_json_atomic(cache_file, cache)


def combine_requests(requests: Sequence[PythonRequest]) -> SpecifierSet:
    """The intersection of every request (an empty ``SpecifierSet`` when there is none)."""
    spec = SpecifierSet()
    for request in requests:
        spec &= request.specifier
    return spec


def discover(environ: Mapping[str, str], cache_file: Path | None) -> list[Interpreter]:
    """Every working interpreter found on disk, fnserve's own first."""
    out = [current_interpreter()]
    seen = {out[0].path.resolve()}
    for path in candidate_paths(environ):
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        interp = probe(path, cache_file)
        if interp is not None:
            out.append(interp)
    return out


def select_python(
    requests: Sequence[PythonRequest],
    environ: Mapping[str, str],
    cache_file: Path | None,
    *,
    override: str | None = None,
    uv_find: UvFind | None = None,
    uv_fetch: UvFetch | None = None,
    fallback: bool = False,
) -> PythonChoice:
    """Choose the interpreter for a project (see the module docstring). ``override``: an explicit
    ``python`` setting that replaces the requests: a version (``"3.12"``, ``"python3.12"``), a
    specifier (``">=3.11"``) or an interpreter path (``"/usr/bin/python3"``).
    ``uv_find``: a callable asked when nothing on disk matches, ``(specifier) -> Path | None``;
    ``uv_fetch``: the same for ``uv python install``, asked after it; ``fallback``: when still
    nothing matches, choose the nearest installed Python and set ``warning`` instead of raising.
    Raises ``DependencyError``."""
    if override:
        as_path = Path(override).expanduser()
        if as_path.is_absolute() or os.sep in override:
            interp = probe(as_path, cache_file)
            if interp is None:
                raise DependencyError(f"python setting: {override} is not a working Python",
                                      "give a version such as 3.12 or the path of a python executable")
            return PythonChoice(interp, f"{interp.tag} at {interp.path} (python setting)")
        text = override.strip()
        if text[:1] in "<>=!~":
            spec = SpecifierSet(text)
        else:
            version = text.lower().removeprefix("cpython-").removeprefix("python")
            spec = SpecifierSet(f"=={version}" if version.count(".") >= 2 else f"=={version}.*")
        requests = [PythonRequest(spec, text, "python setting", pin=True)]
    tuple_requests = tuple(requests)
    current = current_interpreter()
    if not requests:
        return PythonChoice(current, f"{current.tag} at {current.path} (nothing requested: the Python fnserve runs on)")
    spec = combine_requests(requests)
    why = ", ".join(f"{r.text} ({r.source})" for r in requests)
    if current.supported and spec.contains(current.version, prereleases=True):
        return PythonChoice(current, f"{current.tag} at {current.path} (fnserve's own Python satisfies {why})", tuple_requests)
    installed = discover(environ, cache_file)
    matching = [i for i in installed if i.supported and spec.contains(i.version, prereleases=True)]
    if matching:
        lowest_minor = min(i.parsed.release[:2] for i in matching)
        best = max((i for i in matching if i.parsed.release[:2] == lowest_minor), key=lambda i: i.parsed)
        return PythonChoice(best, f"{best.tag} at {best.path} (nearest installed match for {why})", tuple_requests)
    for how, ask in (("found by uv", uv_find), ("fetched by uv", uv_fetch)):
        path = ask(spec) if ask is not None else None
        interp = probe(path, cache_file) if path else None
        if interp is not None and interp.supported and spec.contains(interp.version, prereleases=True):
            return PythonChoice(interp, f"{interp.tag} at {interp.path} ({how} for {why})", tuple_requests)
    listing = ", ".join(sorted({f"{i.version} ({i.path})" for i in installed}, key=_version_key)) or "none"
    nearest = nearest_interpreter(spec, installed)
    fetched = "" if uv_fetch is None else " and uv could not fetch one"
    message = f"no installed Python satisfies {why}{fetched}; installed: {listing}"
    if nearest is not None and fallback:
        warning = (f"{message}. The environment is built with the nearest one, Python {nearest.version} "
                   f"({nearest.path}): install a matching Python to run on the version the project asks for")
        return PythonChoice(nearest, f"{nearest.tag} at {nearest.path} (FALLBACK: nothing satisfies {why})",
                            tuple_requests, warning)
    hint = "install a matching Python (e.g. `uv python install 3.12` or pyenv), or change the request"
    if nearest is not None:
        hint += f", or pass --python-fallback to build the environment with Python {nearest.version}"
    raise DependencyError(message, hint + ("; versions below 3.9 are not supported by the function runtime"
                                           if installed else ""))


def nearest_interpreter(spec: SpecifierSet, installed: Iterable[Interpreter]) -> Interpreter | None:
    """The supported interpreter closest to what ``spec`` asks for: the smallest distance in minor
    versions to any version ``spec`` names (``==3.14.*`` → 3.13 before 3.12; ``==3.8.*`` → 3.9),
    the higher one on a tie, the highest patch. None when no supported one is installed."""
    wanted = [Version(s.version.replace(".*", "")).release[:2] for s in spec] or [(3, 99)]
    supported = [i for i in installed if i.supported]
    if not supported:
        return None

    def distance(interp: Interpreter) -> tuple[int, Version]:
        major, minor = (interp.parsed.release + (0,))[:2]
        gap = min(abs((major * 100 + minor) - (w[0] * 100 + (w[1] if len(w) > 1 else 0))) for w in wanted)
        return (-gap, interp.parsed)

    return max(supported, key=distance)


def _version_key(text: str) -> Version:
    return Version(text.split(" ", 1)[0])


class UvFind:
    """``uv python find`` as a last resort; ``(specifier) -> Path | None``. Never downloads."""

    def __init__(self, uv_bin: str, env: Mapping[str, str]) -> None:
        self.uv_bin, self.env = uv_bin, dict(env)

    def __call__(self, spec: SpecifierSet) -> Path | None:
        try:
            proc = subprocess.run(
                [self.uv_bin, "python", "find", "--no-python-downloads", str(spec) or ">=3.9"],
                capture_output=True, text=True, timeout=30, env={**self.env, "UV_PYTHON_DOWNLOADS": "never"},
            )
        except (OSError, subprocess.SubprocessError):
            return None
        line = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
        return Path(line[0]) if line else None


class UvFetch:
    """``uv python install`` of a Python matching a specifier into uv's own store (it downloads),
    then ``uv python find``; ``(specifier) -> Path | None``. ``cache_file``: ``pythons.json``,
    where a failure is remembered for ``FETCH_RETRY`` s (offline, each start would wait for it);
    ``say``: progress lines."""

    def __init__(self, uv_bin: str, env: Mapping[str, str], cache_file: Path | None,
                 say: Callable[[str], None] | None = None) -> None:
        self.uv_bin, self.env, self.cache_file, self.say = uv_bin, dict(env), cache_file, say

    def __call__(self, spec: SpecifierSet) -> Path | None:
        request = str(spec) or ">=3.9"
        cache = _read_cache(self.cache_file)
        entry = cache.get(_FETCH_KEY)
        failed: dict[str, float] = entry if isinstance(entry, dict) else {}
        if time.time() - float(failed.get(request, 0)) < FETCH_RETRY:
            return None
        if self.say is not None:
            self.say(f"fetching a Python for {request} with `uv python install` (none installed matches)")
        env = {k: v for k, v in self.env.items() if k != "UV_PYTHON_DOWNLOADS"}
        try:
            proc = subprocess.run([self.uv_bin, "python", "install", request], capture_output=True, text=True,
                                  timeout=600, env=env, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            proc = None
        found = UvFind(self.uv_bin, self.env)(spec) if proc is not None and proc.returncode == 0 else None
        if found is None:
            failed[request] = time.time()
            cache[_FETCH_KEY] = failed
            _write_cache(self.cache_file, cache)
        return found


def describe(interpreters: Iterable[Interpreter]) -> list[dict[str, Any]]:
    """JSON-able listing for reports."""
    return [{"path": str(i.path), "version": i.version, "implementation": i.implementation,
             "supported": i.supported} for i in interpreters]
