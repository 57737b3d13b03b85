"""The frozen ``Config`` and per-function limits (SPEC §5, §9).

``Config`` has one attribute per setting of :data:`fnserve.config.settings.SETTINGS` (generated
from the registry, so each setting is declared once) plus the fields of :class:`ConfigBase`.

Per-function limits (``Config.limits_for``), for each field, the first that applies wins:

1. a CLI flag or ``FNSERVE_*`` variable for that setting (it applies to every function);
2. ``[tool.fnserve.functions."<glob>"]`` whose glob matches the function id;
3. ``[tool.fnserve]`` (or ``fnserve.toml``) top-level value;
4. ``vercel.json`` ``functions`` glob (``maxDuration``, ``memory``, ``includeFiles``, ``excludeFiles``);
5. the default.

Within one file several globs may match: the most specific wins (a glob without wildcards, then
the one with more literal characters, then fewer ``**``), ties go to the glob written **last**. Globs: ``**/``
matches zero or more folders, ``*``/``?`` stay within a folder, ``{a,b}`` alternates; ``[...]``
is literal (Vercel file names use brackets: ``api/users/[id].py``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnserve.config.settings import SETTINGS, SETTINGS_BY_NAME
from fnserve.project.vercel_types import FrozenMap, VercelConfig

__all__ = ["UNBOUNDED", "Config", "ConfigBase", "FunctionLimits", "FunctionRule", "glob_matches", "glob_specificity"]

LIMIT_FIELDS = ("max_duration", "memory", "concurrency_sync", "concurrency_asgi", "min_instances",
                "max_instances", "idle_timeout", "queue_size", "include_files", "exclude_files")


UNBOUNDED = 1 << 30  # "no bound" for the counts of ``FunctionLimits`` (concurrency, queue_size)


@dataclass(frozen=True)
class FunctionLimits:
    """The limits of one function, the one type for them: ``Config.limits_for`` builds it and the
    supervisor enforces it (``fnserve dev`` and ``fnserve start`` alike).

    ``max_duration``: seconds (float) a request may run, None = no limit; ``memory``: MB (int)
    per instance, None = no limit; ``concurrency``: requests at once per instance (for the kind
    asked); ``min_instances`` / ``max_instances``: ints; ``idle_timeout``: seconds (float) before
    an idle instance above ``min_instances`` stops; ``queue_size``: requests that may wait beyond
    the running and starting instances' capacity before 503; ``include_files`` /
    ``exclude_files``: globs or None. ``sources``: field → where its value came from (not part
    of equality). The defaults mean "no limit" (one instance, never stopped for idleness)."""

    max_duration: float | None = None
    memory: int | None = None
    concurrency: int = UNBOUNDED
    min_instances: int = 0
    max_instances: int = 1
    idle_timeout: float = math.inf
    queue_size: int = UNBOUNDED
    include_files: str | None = None
    exclude_files: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class FunctionRule:
    """One ``[tool.fnserve.functions."<glob>"]`` table: ``values`` (setting name → validated
    value; ``include_files``/``exclude_files`` strings), ``order`` in the file, ``where``."""

    glob: str
    values: Mapping[str, Any]
    order: int
    where: str


def _glob_regex(glob: str) -> re.Pattern[str]:
    out, i = "", 0
    glob = glob.lstrip("/").removeprefix("./")
    while i < len(glob):
        ch = glob[i]
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif ch == "*":
            out, i = out + "[^/]*", i + 1
        elif ch == "?":
            out, i = out + "[^/]", i + 1
        elif ch == "{" and "}" in glob[i:]:
            end = glob.index("}", i)
            alts = [_glob_regex(a).pattern for a in glob[i + 1 : end].split(",")]
            out, i = out + "(?:" + "|".join(alts) + ")", end + 1
        else:
            out, i = out + re.escape(ch), i + 1
    return re.compile(out)


def glob_matches(glob: str, function_id: str) -> bool:
    """True when ``glob`` (vercel.json ``functions`` key style) matches ``function_id`` (a
    project-relative POSIX path such as ``api/users/[id].py``)."""
    return glob.lstrip("/").removeprefix("./") == function_id or bool(_glob_regex(glob).fullmatch(function_id))


def glob_specificity(glob: str) -> tuple[int, int, int]:
    """Sort key, higher is more specific: (1 for a glob without wildcards, number of literal
    characters, minus the number of ``**``)."""
    wild = sum(glob.count(c) for c in "*?{")
    literal = re.sub(r"\*\*/?|[*?]|\{[^}]*\}", "", glob)
    return (0 if wild else 1, len(literal), -glob.count("**"))


@dataclass(frozen=True)
class ConfigBase:
    """The fields every ``Config`` has besides the settings.

    ``project_dir``: absolute path; ``mode``: "dev", "start" or "build"; ``sources``: setting
    name → where its value came from (``"--port"``, ``"FNSERVE_PORT"``, ``"pyproject.toml
    [tool.fnserve]"``, ``"fnserve.toml"``, ``"pyproject.toml [tool.vercel]"``, ``"vercel.json"``,
    ``"default"``); ``vercel``: the parsed ``vercel.json``/``edgeone.json``; ``function_rules``:
    ``[tool.fnserve.functions]``; ``import_map``: ``[tool.fnserve.import-map]`` (import name →
    distribution, for ``deps``); ``env_vars``: the merged function environment; ``files``: every
    config file that exists (pyproject.toml, fnserve.toml, vercel.json, edgeone.json, .env*) —
    what a reloader should watch; ``build_command``: vercel.json ``buildCommand``, else
    ``[tool.vercel.scripts] build``; ``warnings``: accepted-but-unused keys and the like.
    """

    project_dir: Path
    mode: str
    sources: Mapping[str, str]
    vercel: VercelConfig
    function_rules: tuple[FunctionRule, ...]
    import_map: Mapping[str, str]
    env_vars: Mapping[str, str]
    files: tuple[Path, ...]
    build_command: str | None
    warnings: tuple[str, ...]

    def function_env(self) -> dict[str, str]:
        """The variables every function process gets on top of its base environment: vercel.json
        ``env``, then ``.env``, ``.env.local``, ``.env.<stage>``, ``.env.<stage>.local`` (later
        wins; see ``fnserve.project.envfiles``). A new dict; ``os.environ`` is never touched."""
        return dict(self.env_vars)

    def value(self, name: str) -> Any:
        """The effective value of setting ``name``."""
        return getattr(self, name)

    def limits_for(self, function_id: str, *, asgi: bool = False) -> FunctionLimits:
        """Limits for ``function_id`` (``Function.id``: ``api/users/[id].py``); ``asgi`` picks
        the concurrency default (ASGI 100, other kinds 16). See the module docstring for order."""
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in LIMIT_FIELDS:
            src = self.sources.get(name, "default")
            if name in SETTINGS_BY_NAME and (src.startswith("--") or src.startswith("FNSERVE_")):
                values[name], sources[name] = getattr(self, name), src
        for rule in sorted(self.function_rules, key=lambda r: (glob_specificity(r.glob), r.order), reverse=True):
            if glob_matches(rule.glob, function_id):
                for name, val in rule.values.items():
                    if name not in values:
                        values[name], sources[name] = val, f"{rule.where}"
        for name in LIMIT_FIELDS:
            src = self.sources.get(name, "default")
            if name not in values and name in SETTINGS_BY_NAME and src != "default":
                values[name], sources[name] = getattr(self, name), src
        ordered = sorted(self.vercel.functions, key=lambda f: (glob_specificity(f.glob), f.order), reverse=True)
        for fn in ordered:
            if not glob_matches(fn.glob, function_id):
                continue
            for name in ("max_duration", "memory", "include_files", "exclude_files"):
                val = getattr(fn, name)
                if val is not None and name not in values:
                    values[name], sources[name] = val, fn.where
        for name in LIMIT_FIELDS:
            if name not in values:
                values[name] = getattr(self, name) if name in SETTINGS_BY_NAME else None
                sources[name] = "default"
        kind = "concurrency_asgi" if asgi else "concurrency_sync"
        return FunctionLimits(
            max_duration=float(values["max_duration"]), memory=int(values["memory"]),
            concurrency=int(values[kind]), min_instances=int(values["min_instances"]),
            max_instances=int(values["max_instances"]), idle_timeout=float(values["idle_timeout"]),
            queue_size=int(values["queue_size"]), include_files=values["include_files"],
            exclude_files=values["exclude_files"],
            sources=FrozenMap({("concurrency" if k == kind else k): v for k, v in sources.items()
                                      if k not in ("concurrency_sync", "concurrency_asgi") or k == kind}),
        )


def _make_config_class() -> type:
    fields = [(s.name, Any, dataclasses.field()) for s in SETTINGS]
    cls = dataclasses.make_dataclass("Config", fields, bases=(ConfigBase,), frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = (
        "The effective configuration (frozen): the fields of ``ConfigBase`` plus one attribute per "
        "setting: " + ", ".join(f"``{s.name}``" + (f" ({s.unit})" if s.unit else "") for s in SETTINGS)
        + ". Built by ``fnserve.config.load_config``."
    )
    return cls


Config = _make_config_class()
