"""Declared dependencies and Python version requests, read from a project's manifests (SPEC §7).

Sources (each requirement keeps ``file:line``):

- ``requirements.txt``: EdgeOne layout: ``cloud-functions/requirements.txt`` if present, else the
  root one; Vercel/zero-config: the root one (both when a project has both layouts).
- ``pyproject.toml``: ``[project].dependencies`` only (never optional or dev groups) and
  ``requires-python``.
- ``Pipfile``: ``[packages]`` (never ``[dev-packages]``), ``[[source]]`` (index URLs for uv) and
  ``[requires] python_version`` / ``python_full_version``; ``Pipfile.lock``: the ``default`` section.
- ``uv.lock``: the root project's direct dependencies at their locked versions, and every other
  locked package as a constraint (transitives stay as locked).
- ``.python-version``: the first non-comment line (``3.12``, ``3.12.1``, ``cpython-3.12``).

Raises ``DependencyError`` naming the file for unparseable TOML/JSON or bad requirements.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from fnserve.deps.requirements_txt import (
    ParsedRequirements,
    SourcedRequirement,
    parse_requirement_line,
    parse_requirements_file,
)
from fnserve.errors import DependencyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the tomli backport (a dependency there; absent where mypy runs on 3.11+)
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]


#: Names of the files whose change can change the requirement set or the Python: the manifests
#: read here and the config files that set ``python`` / ``detect-imports`` / ``import-map``.
MANIFEST_NAMES = frozenset({"requirements.txt", "pyproject.toml", "Pipfile", "Pipfile.lock", "uv.lock",
                            ".python-version", "fnserve.toml"})


def is_dependency_file(name: str) -> bool:
    """True for a file name in ``MANIFEST_NAMES`` or any ``*requirements*.txt`` (``-r``
    includes such as ``dev-requirements.txt``). The one list the dev watcher and
    ``affects_dependencies`` use; ``.py`` files (imports) are the caller's to add."""
    return name in MANIFEST_NAMES or (name.endswith(".txt") and "requirements" in name)


@dataclass(frozen=True)
class PythonRequest:
    """A Python version constraint. ``specifier``: e.g. ``==3.12.*``; ``text``: as written;
    ``source``: ``".python-version:1"``; ``pin``: True for a chosen version (``.python-version``,
    Pipfile), False for a range (``requires-python``)."""

    specifier: SpecifierSet
    text: str
    source: str
    pin: bool


@dataclass
class Manifests:
    """Everything declared. ``files``: project-relative names of the manifests read."""

    requirements: list[SourcedRequirement] = field(default_factory=list)
    constraints: list[SourcedRequirement] = field(default_factory=list)
    index_args: list[str] = field(default_factory=list)
    python: list[PythonRequest] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def requirements_files(root: Path) -> list[Path]:
    """The requirements.txt files that apply (EdgeOne rule first)."""
    edgeone, vercel = root / "cloud-functions" / "requirements.txt", root / "requirements.txt"
    if edgeone.is_file():
        return [edgeone, vercel] if vercel.is_file() and (root / "api").is_dir() else [edgeone]
    return [vercel] if vercel.is_file() else []


def read_manifests(root: Path) -> Manifests:
    """Read every manifest of the project at ``root`` (absolute). Never writes anything."""
    out = Manifests()
    for path in requirements_files(root):
        parsed = parse_requirements_file(path, root, ParsedRequirements())
        out.requirements += parsed.requirements
        out.constraints += parsed.constraints
        out.index_args += parsed.index_args
        out.files += [_rel(p, root) for p in parsed.files]
    _pyproject(root, out)
    _pipfile(root, out)
    _pipfile_lock(root, out)
    _uv_lock(root, out)
    _python_version_file(root, out)
    return out


def _load_toml(path: Path, root: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise DependencyError(f"{_rel(path, root)}: invalid TOML: {exc}", "fix the file") from exc


def _line_of(text: str, needle: str, after: str | None = None) -> int:
    """1-based line of the first ``needle`` (after the first ``after`` if given), else 1."""
    start = text.find(after) if after else 0
    pos = text.find(needle, max(start, 0))
    return text.count("\n", 0, pos) + 1 if pos >= 0 else 1


def _pyproject(root: Path, out: Manifests) -> None:
    path = root / "pyproject.toml"
    if not path.is_file():
        return
    data, text = _load_toml(path, root)
    project = data.get("project") or {}
    deps = project.get("dependencies") or []
    if deps or "requires-python" in project:
        out.files.append("pyproject.toml")
    for item in deps:
        where = f"pyproject.toml:{_line_of(text, json.dumps(item)[1:-1], '[project]')}"
        out.requirements.append(SourcedRequirement(parse_requirement_line(item, where), where))
    if "requires-python" in project:
        spec = str(project["requires-python"])
        where = f"pyproject.toml:{_line_of(text, 'requires-python')}"
        out.python.append(PythonRequest(_specifier(spec, where), spec, where, pin=False))


def _pipfile(root: Path, out: Manifests) -> None:
    path = root / "Pipfile"
    if not path.is_file():
        return
    data, text = _load_toml(path, root)
    out.files.append("Pipfile")
    for name, value in (data.get("packages") or {}).items():
        where = f"Pipfile:{_line_of(text, name, '[packages]')}"
        out.requirements.append(SourcedRequirement(_pipfile_requirement(name, value, where), where))
    for number, source in enumerate(data.get("source") or []):
        url = str(source.get("url", "")).rstrip("/")
        if url and url != "https://pypi.org/simple":  # the default index needs no option
            out.index_args += ["--index-url" if number == 0 else "--extra-index-url", url]
    requires = data.get("requires") or {}
    for key in ("python_full_version", "python_version"):
        if key in requires:
            version = str(requires[key])
            where = f"Pipfile:{_line_of(text, key)}"
            spec = f"=={version}" if key == "python_full_version" else f"=={version}.*"
            out.python.append(PythonRequest(_specifier(spec, where), version, where, pin=True))
            break


def _pipfile_requirement(name: str, value: object, where: str) -> Requirement:
    if isinstance(value, str):
        return parse_requirement_line(name if value.strip() == "*" else f"{name}{value}", where)
    if not isinstance(value, dict):
        raise DependencyError(f"{where}: {name}: unsupported value {value!r}", "use a version string")
    extras = f"[{','.join(value['extras'])}]" if value.get("extras") else ""
    marker = f"; {value['markers']}" if value.get("markers") else ""
    if "git" in value:
        ref = f"@{value['ref']}" if value.get("ref") else ""
        return parse_requirement_line(f"{name}{extras} @ git+{value['git']}{ref}{marker}", where)
    if "file" in value or "path" in value:
        raise DependencyError(f"{where}: {name}: local path packages are not supported",
                              "publish the package or vendor it as a helper module")
    version = str(value.get("version", "*"))
    spec = "" if version.strip() == "*" else version
    return parse_requirement_line(f"{name}{extras}{spec}{marker}", where)


_DEFAULT_KEY = '"default"'


def _pipfile_lock(root: Path, out: Manifests) -> None:
    path = root / "Pipfile.lock"
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DependencyError(f"Pipfile.lock: invalid JSON: {exc}", "regenerate it with `pipenv lock`") from exc
    out.files.append("Pipfile.lock")
    for name, value in (data.get("default") or {}).items():
        where = f"Pipfile.lock:{_line_of(text, json.dumps(name), _DEFAULT_KEY)}"
        out.requirements.append(SourcedRequirement(_pipfile_requirement(name, value, where), where))


def _uv_lock(root: Path, out: Manifests) -> None:
    path = root / "uv.lock"
    if not path.is_file():
        return
    data, text = _load_toml(path, root)
    packages = data.get("package") or []
    roots = [p for p in packages if set(p.get("source") or {}) & {"editable", "virtual"}
             and (p.get("source") or {}).get("editable", (p.get("source") or {}).get("virtual")) == "."]
    if not roots:
        return
    out.files.append("uv.lock")
    versions = {p["name"]: p.get("version") for p in packages if "name" in p}
    root_name = roots[0]["name"]
    for dep in roots[0].get("dependencies") or []:
        name, version = dep["name"], versions.get(dep["name"])
        where = f"uv.lock:{_line_of(text, f'name = {json.dumps(name)}', f'name = {json.dumps(root_name)}')}"
        extras = f"[{','.join(dep['extra'])}]" if dep.get("extra") else ""
        marker = f"; {dep['marker']}" if dep.get("marker") else ""
        pin = f"=={version}" if version else ""
        out.requirements.append(SourcedRequirement(parse_requirement_line(f"{name}{extras}{pin}{marker}", where), where))
    direct = {d["name"] for d in roots[0].get("dependencies") or []}
    for pkg in packages:
        name = pkg.get("name")
        if name and name != root_name and name not in direct and pkg.get("version"):
            if (pkg.get("source") or {}).get("registry"):
                where = f"uv.lock:{_line_of(text, f'name = {json.dumps(name)}')}"
                out.constraints.append(SourcedRequirement(Requirement(f"{name}=={pkg['version']}"), where))


_PY_VERSION = re.compile(r"^(?:cpython-|python|py)?(\d+(?:\.\d+){0,2})")


def _python_version_file(root: Path, out: Manifests) -> None:
    for path in (root / ".python-version", root / "cloud-functions" / ".python-version"):
        if not path.is_file():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{_rel(path, root)}:{number}"
            match = _PY_VERSION.match(line.lower())
            if not match:
                raise DependencyError(f"{where}: cannot read a Python version from {line!r}",
                                      "write a version such as 3.12")
            version = match.group(1)
            spec = f"=={version}" if version.count(".") == 2 else f"=={version}.*"
            out.python.append(PythonRequest(_specifier(spec, where), line, where, pin=True))
            out.files.append(_rel(path, root))
            return


def _specifier(text: str, where: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier as exc:
        raise DependencyError(f"{where}: not a version specifier: {text!r}",
                              "write e.g. >=3.10 or 3.12") from exc


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
