"""``load_config``: resolve every setting once, with one documented precedence (SPEC §5).

Highest first: CLI flags (``overrides``) > ``FNSERVE_<NAME>`` in ``environ`` > ``fnserve.toml``
(top-level keys) or else ``[tool.fnserve]`` in ``pyproject.toml`` (then ``[tool.vercel]
entrypoint``) > ``vercel.json`` (``framework``; per-function ``functions`` limits) > defaults.

File keys may be written ``body-limit``, ``body_limit`` or ``bodyLimit``. Besides the settings,
the file table may hold ``[tool.fnserve.functions."<glob>"]`` (per-function limits: every
per-function setting, plus ``concurrency`` for both kinds, ``include-files``, ``exclude-files``)
and ``[tool.fnserve.import-map]`` (import name → distribution name, for ``deps``).
When both ``fnserve.toml`` and ``[tool.fnserve]`` exist, ``fnserve.toml`` is used and a warning
says the other is ignored. Unknown keys and bad values raise ``ConfigError`` naming the file,
the key and what is allowed; unknown ``FNSERVE_*`` variables only warn.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fnserve.config.effective import SETTINGS, SETTINGS_BY_NAME, Config, FunctionRule, glob_matches
from fnserve.config.settings import Setting
from fnserve.errors import ConfigError
from fnserve.project.envfiles import env_file_names, load_env_files
from fnserve.project.layout import iter_python_files
from fnserve.project.suggest import unknown_key
from fnserve.project.vercel_json import load_platform_config
from fnserve.project.vercel_types import FrozenMap, FunctionConfig, VercelConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    # mypy runs with python_version 3.10, where tomli is a dependency; the venv may not have it
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["load_config", "watched_file_names", "MODES", "CONFIG_FILE_NAMES"]

MODES = ("dev", "start", "build")
CONFIG_FILE_NAMES = ("pyproject.toml", "fnserve.toml", "vercel.json", "edgeone.json")
_PYPROJECT = "pyproject.toml [tool.fnserve]"


def load_config(
    project_dir: Path | str,
    overrides: Mapping[str, Any] = FrozenMap({}),
    environ: Mapping[str, str] = os.environ,
    *,
    mode: str = "dev",
    files: bool = True,
) -> Config:
    """Build the one frozen ``Config`` for ``project_dir``.

    ``overrides``: setting name → value of the flags given on the command line (strings or
    typed values; None means "not given"). ``environ``: where ``FNSERVE_*`` are read (the only
    place fnserve reads its environment) and ``${VAR}`` in ``.env`` files is resolved. ``mode``:
    "dev", "start" or "build" (selects ``.env.development*`` vs ``.env.production*`` and the
    ``reload`` default). ``files``: False reads no project file (``vercel.json``,
    ``edgeone.json``, ``pyproject.toml``, ``fnserve.toml``, ``.env*``): flags, environment and
    defaults only — what ``fnserve dev`` serves with while a project file is broken. Raises
    ``ConfigError`` for a bad value anywhere, naming its source."""
    if mode not in MODES:
        raise ConfigError("load_config", "mode", f"unknown mode {mode!r}", ", ".join(MODES))
    root = Path(project_dir).resolve()
    if not root.is_dir():
        raise ConfigError(str(project_dir), "project", "is not a folder", "an existing project folder")
    warnings: list[str] = []
    vercel = load_platform_config(root) if files else VercelConfig()
    warnings.extend(vercel.warnings)
    table, label, tool_vercel = _read_tool_tables(root, warnings) if files else ({}, _PYPROJECT, {})
    file_values, rules, import_map = _parse_table(table, label)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in overrides:
        if name not in SETTINGS_BY_NAME:
            raise ConfigError("overrides", name, "unknown setting", ", ".join(SETTINGS_BY_NAME))
    for setting in SETTINGS:
        name = setting.name
        if overrides.get(name) is not None:
            values[name], sources[name] = setting.parse(overrides[name], setting.flag), setting.flag
        elif setting.env in environ:
            values[name], sources[name] = setting.parse(environ[setting.env], setting.env), setting.env
        elif name in file_values:
            values[name], sources[name] = file_values[name], label
        elif name == "entrypoint" and tool_vercel.get("entrypoint") is not None:
            where = "pyproject.toml [tool.vercel]"
            values[name], sources[name] = setting.parse(tool_vercel["entrypoint"], where), where
        elif name == "framework" and vercel.framework is not None:
            values[name], sources[name] = vercel.framework, "vercel.json"
        else:
            values[name], sources[name] = setting.default_for(mode), "default"
    _apply_workers_per_function(values, sources)
    _check_consistency(values, sources)
    known_env = {s.env for s in SETTINGS}
    for key in sorted(k for k in environ if k.startswith("FNSERVE_") and k not in known_env):
        warnings.append(f"environment: {key} is not an fnserve setting (known: FNSERVE_PORT, FNSERVE_HOST, ...)")

    extra_env = _env_file_paths(root, values["env_file"], sources["env_file"])  # checked even without files
    _check_reload_dirs(root, values["reload_dir"], sources["reload_dir"])
    env_vars, env_files = load_env_files(root, mode, vercel.env, environ, extra_env) if files else ({}, ())
    found = tool_vercel.get("scripts")
    scripts: dict[str, Any] = found if isinstance(found, dict) else {}
    build_command = vercel.build_command if vercel.build_command is not None else scripts.get("build")
    warnings.extend(_unmatched_function_globs(root, vercel.functions, rules))
    config_files = tuple(root / n for n in CONFIG_FILE_NAMES if files and (root / n).is_file())
    return Config(
        project_dir=root, mode=mode, sources=FrozenMap(sources), vercel=vercel,
        function_rules=rules, import_map=FrozenMap(import_map),
        env_vars=FrozenMap(env_vars), files=config_files + env_files,
        build_command=build_command if isinstance(build_command, str) else None,
        warnings=tuple(warnings), **values,
    )


def watched_file_names(mode: str = "dev") -> tuple[str, ...]:
    """Every project-root file name whose change changes the ``Config`` (for reloaders)."""
    return CONFIG_FILE_NAMES + env_file_names(mode)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path.name, "(file)", f"invalid TOML: {exc}", "a valid TOML file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path.name, "(file)", "not UTF-8 text", "a UTF-8 TOML file") from exc


def _read_tool_tables(root: Path, warnings: list[str]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Returns (the fnserve settings table, its label for sources/errors, [tool.vercel])."""
    pyproject = root / "pyproject.toml"
    tool: dict[str, Any] = {}
    if pyproject.is_file():
        tool = _read_toml(pyproject).get("tool", {})
        if not isinstance(tool, dict):
            raise ConfigError("pyproject.toml", "tool", "is not a table", "a [tool] table")
    tool_vercel = tool.get("vercel", {}) if isinstance(tool.get("vercel", {}), dict) else {}
    own = root / "fnserve.toml"
    if own.is_file():
        if "fnserve" in tool:
            warnings.append("pyproject.toml: [tool.fnserve] ignored because fnserve.toml exists")
        return _read_toml(own), "fnserve.toml", tool_vercel
    table = tool.get("fnserve", {})
    if not isinstance(table, dict):
        raise ConfigError("pyproject.toml", "tool.fnserve", "is not a table", "a [tool.fnserve] table")
    return table, _PYPROJECT, tool_vercel


def _snake(key: str) -> str:
    """``body-limit`` / ``bodyLimit`` / ``body_limit`` → ``body_limit``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).replace("-", "_").lower()


def _parse_table(
    table: Mapping[str, Any], label: str
) -> tuple[dict[str, Any], tuple[FunctionRule, ...], dict[str, str]]:
    """Validate the fnserve table: (setting values, function rules, import map)."""
    values: dict[str, Any] = {}
    rules: tuple[FunctionRule, ...] = ()
    import_map: dict[str, str] = {}
    allowed = ", ".join([s.file_key for s in SETTINGS] + ["functions", "import-map"])
    for key, raw in table.items():
        name = _snake(key)
        if name in SETTINGS_BY_NAME:
            values[name] = _parse_as_written(SETTINGS_BY_NAME[name], raw, label, key)
        elif name == "functions":
            rules = _function_rules(raw, label)
        elif name == "import_map":
            import_map = _import_map(raw, label)
        else:
            known = [s.file_key for s in SETTINGS] + ["functions", "import-map"]
            raise unknown_key(label, key, key, known, allowed)
    return values, rules, import_map


def _parse_as_written(setting: Setting, raw: Any, source: str, key: str) -> Any:
    """``setting.parse`` with errors naming the key as the user wrote it (``body-limit``)."""
    try:
        return setting.parse(raw, source)
    except ConfigError as exc:
        raise ConfigError(source, key, exc.problem, exc.allowed) from exc


def _function_rules(raw: Any, label: str) -> tuple[FunctionRule, ...]:
    if not isinstance(raw, dict):
        raise ConfigError(label, "functions", f"expected a table, found {raw!r}",
                          '[tool.fnserve.functions."api/**/*.py"] tables')
    per_function = [s for s in SETTINGS if s.per_function]
    allowed = ", ".join([s.file_key for s in per_function] + ["concurrency", "include-files", "exclude-files"])
    rules = []
    for order, (glob, spec) in enumerate(raw.items()):
        where = f'{label} functions."{glob}"'
        if not isinstance(spec, dict):
            raise ConfigError(label, f'functions."{glob}"', f"expected a table, found {spec!r}", allowed)
        values: dict[str, Any] = {}
        for key, val in spec.items():
            name = _snake(key)
            if name == "concurrency":
                setting: Setting = SETTINGS_BY_NAME["concurrency_sync"]
                parsed = _parse_as_written(setting, val, where, key)
                values.setdefault("concurrency_sync", parsed)
                values.setdefault("concurrency_asgi", parsed)
            elif name in ("include_files", "exclude_files"):
                if not isinstance(val, str) or not val:
                    raise ConfigError(where, key, f"expected a glob string, found {val!r}", "a glob such as 'data/**'")
                values[name] = val
            elif name in SETTINGS_BY_NAME and SETTINGS_BY_NAME[name].per_function:
                values[name] = _parse_as_written(SETTINGS_BY_NAME[name], val, where, key)
            else:
                known = [s.file_key for s in per_function] + ["concurrency", "include-files", "exclude-files"]
                raise unknown_key(where, key, key, known, allowed)
        rules.append(FunctionRule(glob, FrozenMap(values), order, where))
    return tuple(rules)


def _import_map(raw: Any, label: str) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ConfigError(label, "import-map", f"expected a table, found {raw!r}", 'import name = "distribution"')
    for key, val in raw.items():
        if not isinstance(val, str) or not val.strip():
            raise ConfigError(label, f"import-map.{key}", f"expected a distribution name, found {val!r}",
                              'a string such as "PyYAML"')
    return dict(raw)


def _tier(source: str) -> int:
    """Precedence rank of a source string: flag 3, environment 2, file 1, default 0."""
    return 3 if source.startswith("--") else 2 if source.startswith("FNSERVE_") else 0 if source == "default" else 1


def _apply_workers_per_function(values: dict[str, Any], sources: dict[str, str]) -> None:
    """``workers_per_function = N`` sets ``min_instances`` and ``max_instances`` to N unless they
    come from a source of the same or higher precedence (issue 6 ``--workers-per-function``)."""
    count, source = values["workers_per_function"], sources["workers_per_function"]
    if count is None:
        return
    for name in ("min_instances", "max_instances"):
        if _tier(sources[name]) < _tier(source):
            values[name], sources[name] = count, f"{source} (workers-per-function)"


def _unmatched_function_globs(root: Path, vercel_functions: tuple[FunctionConfig, ...], rules: tuple[FunctionRule, ...]) -> list[str]:
    """Warnings for ``functions`` globs that match no Python file (Vercel rejects those)."""
    globs = [(f.glob, f.where) for f in vercel_functions] + [(r.glob, r.where) for r in rules]
    if not globs:
        return []
    ids = [p.relative_to(root).as_posix() for p in iter_python_files(root)]
    return [f"{where}: matches no Python file; check the glob (e.g. 'api/**/*.py')"
            for glob, where in globs if not any(glob_matches(glob, i) for i in ids)]


def _env_file_paths(root: Path, names: tuple[str, ...], source: str) -> list[Path]:
    """``env_file`` entries as absolute paths (relative ones: to the project folder); a missing
    file is a ``ConfigError`` naming where the entry came from."""
    paths = []
    for name in names:
        path = (root / name).resolve()
        if not path.is_file():
            raise ConfigError(source, "env_file", f"{name}: no such file ({path})",
                              "an existing file; relative paths start at the project folder")
        paths.append(path)
    return paths


def _check_reload_dirs(root: Path, names: tuple[str, ...], source: str) -> None:
    """Each ``reload_dir`` must be an existing folder inside the project."""
    for name in names:
        path = (root / name).resolve()
        if not path.is_dir() or not path.is_relative_to(root):
            raise ConfigError(source, "reload_dir", f"{name}: not a folder inside the project ({path})",
                              "a folder of the project, relative to it (e.g. api)")


def _check_consistency(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    if values["min_instances"] > values["max_instances"]:
        raise ConfigError(
            sources["min_instances"], "min_instances",
            f"{values['min_instances']} is above max_instances {values['max_instances']} "
            f"(from {sources['max_instances']})", "min-instances <= max-instances",
        )
