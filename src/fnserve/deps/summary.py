"""``fnserve deps`` output (issue 5 item 6): the merged set with sources, the Python and why, the env.

``to_json(plan, env)`` is the ``--json`` document; ``render_text`` the human table;
``check_problems`` what ``--check`` fails on (detected-but-undeclared imports; conflicts already
raised ``DependencyError`` while planning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fnserve.deps.envs import MARKER, Environment
from fnserve.deps.jsonfile import read_json_object
from fnserve.deps.plan import DepsPlan


def _marker(plan: DepsPlan) -> dict[str, Any]:
    return read_json_object(plan.env_path / MARKER)


def _provided(plan: DepsPlan) -> dict[str, str]:
    """Detected modules the built env found already provided by declared packages."""
    return dict(_marker(plan).get("detected_provided_by_declared") or {})


def _not_installed(plan: DepsPlan) -> dict[str, str]:
    """Detected-only requirements the index did not have (left out of the env): name → uv's words."""
    return dict(_marker(plan).get("detected_not_installed") or {})


def check_problems(plan: DepsPlan) -> list[str]:
    """One line per detected-but-undeclared requirement (optional imports excluded)."""
    provided = _provided(plan)
    out = []
    for req in plan.merged.undeclared:
        if req.modules and all(m in provided for m in req.modules):
            continue
        out.append(f"{req.name}: imported as {', '.join(req.modules)} ({'; '.join(req.sources)}) "
                   f"but not declared in a manifest")
    return out


def to_json(plan: DepsPlan, env: Environment | None) -> dict[str, Any]:
    """The ``--json`` document (stable keys; paths absolute)."""
    interp = plan.python.interpreter
    provided, missing = _provided(plan), _not_installed(plan)
    return {
        "project": str(plan.project_dir),
        "python": {"version": interp.version, "implementation": interp.implementation,
                   "path": str(interp.path), "reason": plan.python.reason},
        "manifests": list(plan.manifests),
        "detect_imports": plan.detect_imports,
        "requirements": [
            {"name": r.name, "requirement": r.line, "declared": r.declared, "sources": list(r.sources),
             "modules": list(r.modules),
             "provided_by_declared": bool(r.modules) and all(m in provided for m in r.modules),
             "not_installed": missing.get(r.name)}
            for r in plan.merged.requirements
        ],
        "optional": [{"name": r.name, "modules": list(r.modules), "sources": list(r.sources)}
                     for r in plan.merged.optional],
        "constraints": list(plan.merged.constraints),
        "index": list(plan.index_args),
        "env": {"key": plan.key, "path": str(plan.env_path),
                "exists": env is not None or (plan.env_path / MARKER).is_file(),
                "python": str(env.python) if env else None,
                "changed": env.changed if env else False,
                "lock": str(env.lock) if env and env.lock else None},
        "problems": check_problems(plan),
    }


def render_text(plan: DepsPlan, env: Environment | None) -> str:
    """A human report: one line per requirement with its sources, then Python, env, problems."""
    lines = [f"project  {plan.project_dir}",
             f"read     {', '.join(plan.manifests) or 'no manifest'}"
             + ("" if plan.detect_imports else "  (import detection off)"), ""]
    reqs = plan.merged.requirements
    width = max([len(r.line) for r in reqs] + [11])
    lines.append(f"{'requirement'.ljust(width)}  from")
    missing = _not_installed(plan)
    for r in reqs:
        mark = "" if r.declared else "  [undeclared]"
        mark += "  [not on the index: left out]" if r.name in missing else ""
        lines.append(f"{r.line.ljust(width)}  {'; '.join(r.sources)}{mark}")
    if not reqs:
        lines.append("(none: the environment is a plain venv)")
    for r in plan.merged.optional:
        lines.append(f"{r.line.ljust(width)}  {'; '.join(r.sources)}  [optional import, not installed]")
    if plan.merged.constraints:
        lines.append(f"constraints: {len(plan.merged.constraints)} pinned (uv.lock / -c files)")
    lines += ["", f"python   {plan.python.reason}"]
    state = ("created now" if env.changed else "up to date") if env else (
        "exists" if (plan.env_path / MARKER).is_file() else "not created (run without --no-install)")
    if env is not None and env.key == "none":
        lines.append(f"env      none: install is off; functions run with {env.python}")
    else:
        lines.append(f"env      {_short(plan.env_path, plan.project_dir)}  ({state})")
    if env is not None and env.lock is not None:
        lines.append(f"lock     {_short(env.lock, plan.project_dir)}")
    problems = check_problems(plan)
    if problems:
        lines += ["", "undeclared (add them to requirements.txt or pyproject.toml):"]
        lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


def _short(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
