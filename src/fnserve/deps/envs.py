"""Per-project function environments under ``.fnserve/envs/<key>/`` (SPEC §7, issue 5 items 4–5).

Layout (nothing is written outside ``.fnserve/`` and uv's cache)::

    .fnserve/envs/<key>/                 a real venv (``uv venv``): functions never see fnserve's packages
    .fnserve/envs/<key>/fnserve-env.json the completion marker, written last (no marker = incomplete)
    .fnserve/envs/<key>/requirements.in  the lines given to uv;  installed.txt: ``uv pip freeze``
    .fnserve/envs/current                the key of the last completed env (seed for the next one)
    .fnserve/requirements.lock           a copy of the current env's installed.txt

``key`` = sha256 of (Python tag and path, requirement lines, constraints, index options). An
existing complete env for the key is reused with no uv process at all.

A changed set builds a NEW env (the old one keeps serving: safe to run in the background and swap
workers when it returns): ``uv venv``, then the previous env's site-packages is hard-linked in
(same Python only), then ``uv pip install --exact`` installs the difference and removes what is no
longer wanted. uv links from its warm cache, so one added small requirement costs well under 2 s.
On failure the new folder is removed, the previous env is untouched, and ``DependencyError`` names
the requirement uv choked on and where it was declared.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fnserve.deps.merge import MergedSet, ResolvedRequirement
from fnserve.deps.progress import Note, Progress, install_note, uv_note
from fnserve.deps.pythons import Interpreter
from fnserve.deps.uv import Uv, failing_requirement, summarize_error
from fnserve.errors import DependencyError

MARKER = "fnserve-env.json"


@dataclass(frozen=True)
class Environment:
    """A ready environment. ``python``: the env's interpreter (give it to the worker);
    ``site_packages``: its site-packages folder; ``key``: the env's hash; ``requirements``: the lines
    installed from; ``changed``: True when this call created it; ``path``: the env folder;
    ``lock``: ``installed.txt`` (what uv installed, pinned); None for ``current_environment()``."""

    python: Path
    site_packages: Path
    key: str
    requirements: tuple[str, ...]
    changed: bool
    path: Path
    lock: Path | None


def current_environment(python: Path, requirements: Sequence[str] = ()) -> Environment:
    """The interpreter fnserve runs on, as an ``Environment`` (``install = false``: the user manages
    packages; functions then see whatever that interpreter has). ``python``: ``sys.executable``."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    return Environment(python, site, "none", tuple(requirements), False, Path(sys.prefix), None)


def env_key(interp: Interpreter, merged: MergedSet, index_args: Sequence[str]) -> str:
    """16 hex digits identifying (Python, requirement set, constraints, index options)."""
    blob = json.dumps({"python": [interp.tag, str(interp.path)], "requirements": merged.lines(),
                       "constraints": list(merged.constraints), "index": list(index_args)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def existing_env(envs_dir: Path, key: str) -> Environment | None:
    """The complete env for ``key``, or None. Stats a few files; starts no process."""
    folder = envs_dir / key
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    python = folder / "bin" / "python"
    if not python.exists():
        return None
    return Environment(python, Path(data["site_packages"]), key, tuple(data["requirements"]),
                       False, folder, folder / "installed.txt")


@contextmanager
def _locked(envs_dir: Path) -> Iterator[None]:
    """One builder at a time per project (``fnserve dev`` and ``fnserve deps`` may race)."""
    envs_dir.mkdir(parents=True, exist_ok=True)
    with open(envs_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_env(
    state_dir: Path, key: str, interp: Interpreter, merged: MergedSet, index_args: Sequence[str],
    uv: Uv, progress: Progress | None = None, *, keep: int = 3,
) -> Environment:
    """Return the env for ``key``, creating it if needed (see the module docstring).
    ``state_dir``: the project's ``.fnserve``. Raises ``DependencyError`` (previous env intact)."""
    envs_dir = state_dir / "envs"
    ensure_state_dir(state_dir)
    say = progress or (lambda _msg: None)
    with _locked(envs_dir):
        found = existing_env(envs_dir, key)
        if found is not None:
            return found
        folder = envs_dir / key
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier attempt
        started = time.monotonic()
        try:
            env = _create(folder, key, interp, merged, index_args, uv, say, envs_dir)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        (envs_dir / "current.tmp").write_text(key)
        os.replace(envs_dir / "current.tmp", envs_dir / "current")
        if env.lock is not None:  # always set for a built env; None only for current_environment()
            shutil.copyfile(env.lock, state_dir / "requirements.lock")
        _prune(envs_dir, keep, protect={key})
        say(f"environment ready in {time.monotonic() - started:.1f} s: {folder}")
        return env


def _create(folder: Path, key: str, interp: Interpreter, merged: MergedSet, index_args: Sequence[str],
            uv: Uv, say: Progress, envs_dir: Path) -> Environment:
    say(Note(f"creating environment with Python {interp.version} ({interp.path})", "creating the environment"))
    proc = uv.run(["venv", "--quiet", "--no-python-downloads", "--python", str(interp.path), str(folder)])
    if proc.returncode != 0:
        raise DependencyError(f"uv could not create a virtual environment with {interp.path}:\n"
                              f"{summarize_error(proc.stderr)}", "check that this Python works")
    python = folder / "bin" / "python"
    site = _site_packages(folder)
    lines = merged.lines()
    (folder / "requirements.in").write_text("".join(f"{line}\n" for line in lines))
    outcome: dict[str, dict[str, str]] = {"provided": {}, "not_installed": {}}
    if lines:
        seeded = _seed_from_previous(envs_dir, folder, site, interp)
        say(install_note([r.name for r in merged.requirements], seeded))
        outcome = _install(folder, python, site, merged, index_args, uv, say)
    freeze = uv.run(["pip", "freeze", "--python", str(python)]) if lines else None
    lock = folder / "installed.txt"
    lock.write_text(freeze.stdout if freeze is not None and freeze.returncode == 0 else "")
    data = {
        "key": key, "python": interp.tag, "base_python": str(interp.path), "site_packages": str(site),
        "requirements": lines, "constraints": list(merged.constraints), "index": list(index_args),
        "detected_provided_by_declared": outcome["provided"], "detected_not_installed": outcome["not_installed"],
        "created": time.time(),
    }
    (folder / MARKER).write_text(json.dumps(data, indent=2))
    return Environment(python, site, key, tuple(lines), True, folder, lock)


def _install(folder: Path, python: Path, site: Path, merged: MergedSet, index_args: Sequence[str],
             uv: Uv, say: Progress) -> dict[str, dict[str, str]]:
    """Phase 1: the declared requirements (``--exact``: what the seed had and is no longer wanted
    goes); a failure is an error. Phase 2: the detected-only ones whose modules phase 1 did not
    already provide (``foobar`` detected, declared ``foo-bar`` ships it); one that the index does
    not have (an internal package, a wrong guess) is left out with a warning instead of failing
    the whole environment. Returns ``{"provided": {module: dist}, "not_installed": {name: why}}``."""
    declared = [r for r in merged.requirements if r.declared]
    detected = [r for r in merged.requirements if not r.declared]
    if declared:
        _uv_install(folder, "declared.in", python, declared, merged, index_args, uv, say, exact=True)
    todo = [r for r in detected if not (declared and all(_importable(site, m) for m in r.modules))]
    provided = {m: "declared packages" for r in detected if r not in todo for m in r.modules}
    dropped: dict[str, str] = {}
    while todo:
        proc = _uv_install(folder, "detected.in", python, todo, merged, index_args, uv, say,
                           exact=not declared, check=False)
        if proc.returncode == 0:
            break
        name = failing_requirement(proc.stderr, [r.name for r in todo])
        bad = next((r for r in todo if r.name == name), None)
        if bad is None:
            raise _install_error(proc.stderr, merged)
        dropped[bad.name] = summarize_error(proc.stderr, limit=2)
        say(f"warning: {bad.name} (imported as {', '.join(bad.modules)}, {bad.sources[0]}) could not be "
            "installed and is left out; declare the right package or map it in [tool.fnserve.import-map]")
        todo = [r for r in todo if r is not bad]
    return {"provided": provided, "not_installed": dropped}


def _uv_install(folder: Path, name: str, python: Path, reqs: Sequence[ResolvedRequirement], merged: MergedSet,
                index_args: Sequence[str], uv: Uv, say: Progress, *, exact: bool,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    """``uv pip install`` of ``reqs``; uv's progress lines go to ``say`` as they come
    (``deps.progress.uv_note``: resolved / prepared / installed counts and ``+ name==version``)."""

    def on_line(line: str) -> None:
        note = uv_note(line)
        if note is not None:
            say(note)

    (folder / name).write_text("".join(f"{r.line}\n" for r in reqs))
    args = ["pip", "install", "--python", str(python), "-r", str(folder / name)] + (["--exact"] if exact else [])
    if merged.constraints:
        (folder / "constraints.txt").write_text("".join(f"{c}\n" for c in merged.constraints))
        args += ["-c", str(folder / "constraints.txt")]
    proc = uv.run(args + list(index_args), on_line=on_line)
    if check and proc.returncode != 0:
        raise _install_error(proc.stderr, merged)
    return proc


def _importable(site: Path, module: str) -> bool:
    """Does ``site`` hold ``module`` (``a.b`` -> ``a/b/``, ``a/b.py`` or ``a/b.*.so``)?"""
    *parents, last = module.split(".")
    folder = site.joinpath(*parents)
    return (folder / last).is_dir() or (folder / f"{last}.py").is_file() or any(folder.glob(f"{last}.*.so"))


def _site_packages(folder: Path) -> Path:
    found = sorted(folder.glob("lib/python*/site-packages"))
    if not found:
        raise DependencyError(f"{folder}: no site-packages after `uv venv`", "remove the folder and retry")
    return found[0]


def _seed_from_previous(envs_dir: Path, folder: Path, site: Path, interp: Interpreter) -> bool:
    """Hard-link the previous env's site-packages (same Python only) so uv installs the difference.
    Hard links are safe: installers replace files, never edit them in place."""
    try:
        previous = envs_dir / (envs_dir / "current").read_text().strip()
        data = json.loads((previous / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if data.get("python") != interp.tag or previous == folder:
        return False
    src = Path(data["site_packages"])
    for entry in src.iterdir():
        if entry.name.startswith("_virtualenv") or entry.suffix == ".pth" and entry.name.startswith("_"):
            continue
        target = site / entry.name
        if target.exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target, copy_function=_link_or_copy, symlinks=True)
        else:
            _link_or_copy(entry, target)
    _copy_scripts(previous / "bin", folder / "bin", previous, folder)
    return True


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_scripts(src_bin: Path, dst_bin: Path, old: Path, new: Path) -> None:
    """Console scripts of seeded packages, with their ``#!`` line pointed at the new env."""
    old_prefix, new_prefix = f"#!{old}/bin/".encode(), f"#!{new}/bin/".encode()
    for entry in src_bin.iterdir():
        target = dst_bin / entry.name
        if target.exists() or target.is_symlink() or entry.is_symlink() or not entry.is_file():
            continue
        data = entry.read_bytes()
        if data.startswith(old_prefix):
            target.write_bytes(new_prefix + data[len(old_prefix):])
            target.chmod(entry.stat().st_mode)


def _install_error(stderr: str, merged: MergedSet) -> DependencyError:
    names = [r.name for r in merged.requirements]
    name = failing_requirement(stderr, names)
    req = next((r for r in merged.requirements if r.name == name), None)
    where = f" (from {', '.join(req.sources)})" if req else ""
    what = f"{req.line}{where}" if req else (name or "the requirement set")
    hint = "fix or remove that requirement (an earlier environment, if any, is left as it was)"
    if req is not None and not req.declared:
        hint = (f"`{', '.join(req.modules)}` was mapped to `{req.name}`: declare the right package in "
                "requirements.txt or map it in [tool.fnserve.import-map]")
    return DependencyError(f"uv could not install {what}:\n{summarize_error(stderr)}", hint)


def ensure_state_dir(state_dir: Path) -> None:
    """Create ``.fnserve/`` with a ``.gitignore`` of ``*`` (fnserve's state is never committed)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# fnserve's own state; never commit it\n*\n")


def _prune(envs_dir: Path, keep: int, protect: set[str]) -> None:
    """Keep the ``keep`` most recently completed envs (workers may still run in the previous one)."""
    complete = sorted((p for p in envs_dir.iterdir() if (p / MARKER).is_file()),
                      key=lambda p: (p / MARKER).stat().st_mtime, reverse=True)
    for folder in complete[keep:]:
        if folder.name not in protect:
            shutil.rmtree(folder, ignore_errors=True)
