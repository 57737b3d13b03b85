"""``manifest.json`` of a build output: the schema, reading, writing and the format check.

A build output (``fnserve build``, docs/DEPLOY.md) is target-neutral; this file describes it::

    {"format": 1, "fnserve": "0.1.0", "created": "2026-12-03T17:00:00Z", "inputs": "<sha256>",
     "source": "/abs/project", "zero_config": false,
     "config": {"files": ["vercel.json", ".env"], "note": "..."},
     "rules": {"redirects": [...], "rewrites": [...], "headers": [...], "cleanUrls": false,
               "trailingSlash": null, "routes": [...]},          # as written in vercel.json/edgeone.json
     "build_command": null, "install_command": null,
     "static": {"dir": "static", "files": 2, "bytes": 1234},
     "routes": [{"pattern": "/api/users/[id]", "segments": [["literal", "api"], ...],
                 "function": "api/users/[id].py", "kind": "handler", "mount": false, "alias": false}],
     "functions": [{"id", "module", "attr", "kind", "line", "methods", "layout",
                    "import_roots": [".", "cloud-functions"], "limits": {...}, "env": "<key>" | null,
                    "files": ["api/hello.py", ...], "bytes": 1234}],
     "envs": {"<key>": {"path": "envs/<key>", "python": "envs/<key>/bin/python",
                        "site_packages": "envs/<key>/lib/python3.12/site-packages",
                        "python_version": "3.12.3", "base_python": "/usr/bin/python3.12",
                        "requirements": ["flask>=3"], "bytes": 123}},
     "stats": {"api/hello.py": [1094, 1764781531000000000]}}   # source size, mtime_ns (incremental)

Paths inside the output are POSIX and relative to the output folder; ``files`` and
``import_roots`` are relative to ``project/``. Routes are in priority order (``RouteTable.routes``).
``FORMAT`` changes whenever a reader of an older format would misread a newer output;
``read_manifest`` refuses any format not in ``KNOWN_FORMATS`` (``OutputFormatError``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fnserve.build.exceptions import OutputFormatError
from fnserve.project import Entry, EntryKind, Function, Layout, Project, Route, RouteTable, Segment

FORMAT = 1
KNOWN_FORMATS = (1,)
MANIFEST_NAME = "manifest.json"
#: Optional keys carried in ``Manifest.extra``: ``stats`` (project file → [size, mtime_ns] of its
#: source when copied; incremental builds link unchanged files from the previous output).
EXTRA_KEYS = ("stats",)
CONFIG_NOTE = ("fnserve start --from loads its configuration from these files, copied under project/ "
               "(vercel.json/edgeone.json routing rules, [tool.fnserve] settings, .env files); "
               "`rules` repeats the routing rules as written, for other targets")


@dataclass(frozen=True)
class RouteRecord:
    """One route. ``segments``: (kind, value) pairs (``Segment``); ``function``: the function id;
    ``kind``: the entry kind (``EntryKind`` value) of that function."""

    pattern: str
    segments: tuple[tuple[str, str], ...]
    function: str
    kind: str | None
    mount: bool = False
    alias: bool = False


@dataclass(frozen=True)
class FunctionRecord:
    """One function. ``import_roots``: relative to ``project/`` (``"."`` = ``project/`` itself);
    ``limits``: ``FunctionLimits`` fields (seconds, MB; ``concurrency`` for sync kinds,
    ``concurrency_asgi`` for ASGI); ``env``: the env key in ``Manifest.envs`` or None (fnserve's
    own interpreter); ``files``: the project files it needs; ``bytes``: their size plus its env's."""

    id: str
    module: str
    attr: str
    kind: str
    line: int
    methods: tuple[str, ...]
    layout: str
    import_roots: tuple[str, ...]
    limits: Mapping[str, Any]
    env: str | None
    files: tuple[str, ...]
    bytes: int


@dataclass(frozen=True)
class EnvRecord:
    """A dependency environment inside the output (a relocatable venv). Paths relative to the
    output; ``base_python``: the interpreter it was made from (absolute, on the build machine)."""

    key: str
    path: str
    python: str
    site_packages: str
    python_version: str
    base_python: str
    requirements: tuple[str, ...]
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """The whole ``manifest.json`` (see the module docstring)."""

    fnserve: str
    created: str
    inputs: str
    source: str
    zero_config: bool
    config_files: tuple[str, ...]
    rules: Mapping[str, Any]
    build_command: str | None
    install_command: str | None
    static: Mapping[str, Any]
    routes: tuple[RouteRecord, ...]
    functions: tuple[FunctionRecord, ...]
    envs: Mapping[str, EnvRecord]
    format: int = FORMAT
    extra: Mapping[str, Any] = field(default_factory=dict)

    def function(self, function_id: str) -> FunctionRecord | None:
        return next((f for f in self.functions if f.id == function_id), None)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``manifest.json``."""
        return {
            "format": self.format, "fnserve": self.fnserve, "created": self.created, "inputs": self.inputs,
            "source": self.source, "zero_config": self.zero_config,
            "config": {"files": list(self.config_files), "note": CONFIG_NOTE},
            "rules": dict(self.rules), "build_command": self.build_command, "install_command": self.install_command,
            "static": dict(self.static),
            "routes": [asdict(r) for r in self.routes],
            "functions": [asdict(f) for f in self.functions],
            "envs": {k: asdict(e) for k, e in self.envs.items()},
            **dict(self.extra),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse a ``manifest.json`` object of a known format. Raises ``KeyError``/``TypeError``/
        ``ValueError`` for a malformed one (``read_manifest`` turns them into ``OutputFormatError``)."""
        routes = tuple(RouteRecord(r["pattern"], tuple((k, v) for k, v in r["segments"]), r["function"], r["kind"],
                                   bool(r["mount"]), bool(r["alias"])) for r in data["routes"])
        functions = tuple(FunctionRecord(
            f["id"], f["module"], f["attr"], f["kind"], int(f["line"]), tuple(f["methods"]), f["layout"],
            tuple(f["import_roots"]), dict(f["limits"]), f["env"], tuple(f["files"]), int(f["bytes"]),
        ) for f in data["functions"])
        envs = {k: EnvRecord(e["key"], e["path"], e["python"], e["site_packages"], e["python_version"],
                             e["base_python"], tuple(e["requirements"]), int(e["bytes"]))
                for k, e in data["envs"].items()}
        return cls(
            fnserve=data["fnserve"], created=data["created"], inputs=data["inputs"], source=data["source"],
            zero_config=bool(data["zero_config"]), config_files=tuple(data["config"]["files"]),
            rules=dict(data["rules"]), build_command=data["build_command"], install_command=data["install_command"],
            static=dict(data["static"]), routes=routes, functions=functions, envs=envs, format=int(data["format"]),
            extra={k: v for k, v in data.items() if k in EXTRA_KEYS},
        )


def write_manifest(folder: Path, manifest: Manifest) -> Path:
    """Write ``folder/manifest.json`` (via a temporary file and a rename); returns its path."""
    path = folder / MANIFEST_NAME
    tmp = folder / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(output: Path) -> Manifest:
    """The manifest of the build output folder ``output``. Raises ``OutputFormatError`` when the
    folder has no readable ``manifest.json``, its ``format`` is not in ``KNOWN_FORMATS``, or it is
    malformed (message names the file and what was found)."""
    path = Path(output) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise OutputFormatError(Path(output), "no manifest.json: not an fnserve build output (or an unfinished one)") from None
    except (OSError, ValueError) as exc:
        raise OutputFormatError(Path(output), f"manifest.json cannot be read: {exc}") from exc
    found = data.get("format") if isinstance(data, dict) else None
    if found not in KNOWN_FORMATS:
        known = ", ".join(map(str, KNOWN_FORMATS))
        raise OutputFormatError(Path(output), f"manifest.json has format {found!r}, written by fnserve "
                                f"{data.get('fnserve', '?') if isinstance(data, dict) else '?'}; this fnserve "
                                f"reads format {known} only", found)
    try:
        return Manifest.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise OutputFormatError(Path(output), f"manifest.json is malformed ({type(exc).__name__}: {exc})", found) from exc


def project_from_manifest(manifest: Manifest, project_dir: Path) -> Project:
    """The ``Project`` model of a build, without scanning anything: functions and routes from the
    manifest, paths under ``project_dir`` (the output's ``project/`` folder). No helpers, no
    problems (a build has none: it refuses a project with errors), no import graph (``start``
    does not hot-reload)."""
    root = Path(project_dir).resolve()
    functions: dict[str, Function] = {}
    for rec in manifest.functions:
        entry = Entry(EntryKind(rec.kind), rec.attr, rec.line, rec.methods)
        roots = tuple((root / r).resolve() if r != "." else root for r in rec.import_roots)
        functions[rec.id] = Function(rec.id, root / rec.id, rec.module, Layout(rec.layout), entry, roots)
    routes = [Route(r.pattern, tuple(Segment(k, v) for k, v in r.segments), functions[r.function], r.mount, r.alias)
              for r in manifest.routes]
    return Project(root=root, functions=tuple(sorted(functions.values(), key=lambda f: f.id)),
                   routes=RouteTable(routes), zero_config=manifest.zero_config)
