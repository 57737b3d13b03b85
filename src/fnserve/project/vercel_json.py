"""``vercel.json`` and ``edgeone.json``: parsed, validated, patterns compiled (SPEC §5).

``load_platform_config(project_dir) -> VercelConfig`` reads ``vercel.json`` and ``edgeone.json``
(both optional) and returns one frozen :class:`VercelConfig`. Every key is checked; an unknown key
or a bad value raises :class:`fnserve.errors.ConfigError` whose ``source`` is the file name and
whose ``key`` is the JSON path (``redirects[0].permanent``, ``functions["api/*.py"].memory``),
with what is allowed. A JSON syntax error names ``line:col``.

Decisions (documented here, tested in ``tests/test_vercel_json*.py``):

- Keys Vercel knows but fnserve does not act on (``regions``, ``crons``, ``images``, ``github``,
  ``public``, ``devCommand``, ``functions.*.runtime`` ...) are **accepted with a warning** in
  ``VercelConfig.warnings`` — a project valid on Vercel must load unchanged. Anything else is an error.
- ``redirects``: ``statusCode`` (301, 302, 303, 307, 308) wins; else ``permanent: false`` → 307;
  else 308 (Vercel's default). Both ``permanent`` and ``statusCode`` → error.
- ``routes`` cannot be combined with ``rewrites``/``redirects``/``headers``/``cleanUrls``/
  ``trailingSlash`` (Vercel rejects that too).
- ``edgeone.json`` (EdgeOne Pages): ``rewrites``, ``redirects`` (``statusCode`` 301/302/307/308,
  default 301), ``headers``, ``buildCommand``, ``installCommand``, ``outputDirectory`` are used;
  ``nodeVersion``, ``caches`` and domain redirects (``$host``/``$wwwhost``) are warned and ignored.
  With both files, ``vercel.json`` rules come first, then ``edgeone.json``'s; for single values
  ``vercel.json`` wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from fnserve.errors import ConfigError
from fnserve.project.pathpattern import PathPattern, RegexPattern, js_regex
from fnserve.project.suggest import unknown_key
from fnserve.project.vercel_types import (
    Condition,
    FrozenMap,
    FunctionConfig,
    HeaderRule,
    LegacyBuild,
    LegacyRoute,
    Redirect,
    Rewrite,
    VercelConfig,
)

__all__ = [
    "Condition", "Rewrite", "Redirect", "HeaderRule", "LegacyRoute", "LegacyBuild",
    "FunctionConfig", "VercelConfig", "load_platform_config", "parse_vercel_json",
    "parse_edgeone_json", "read_json",
]

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_T = TypeVar("_T")
TOP_LEVEL = "(top level)"
"""How errors name the JSON path of the document itself (never an empty path)."""
_ROUTE_HANDLES = ("filesystem", "miss", "hit", "error", "rewrite", "resource")
_CONDITION_TYPES = ("header", "cookie", "query", "host")


# ---------------------------------------------------------------- validation helpers


class _Ctx:
    """Carries the file name for errors and collects warnings."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.warnings: list[str] = []

    def fail(self, path: str, problem: str, allowed: str) -> ConfigError:
        """``path`` "" (the document itself) is named ``(top level)``."""
        return ConfigError(self.name, path or TOP_LEVEL, problem, allowed)

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{self.name}: {path}: {message}")

    def obj(self, value: Any, path: str, keys: Collection[str], ignored: Collection[str] = ()) -> dict[str, Any]:
        """Check ``value`` is an object whose keys are in ``keys`` or ``ignored`` (accepted with
        a warning); returns it."""
        if not isinstance(value, dict):
            raise self.fail(path, f"expected an object, found {_show(value)}", "an object")
        for key in value:
            if key in ignored:
                self.warn(_join(path, key), "accepted but not used by fnserve")
            elif key not in keys:
                allowed = ", ".join(sorted(keys))
                raise unknown_key(self.name, _join(path, key), key, [*keys, *ignored], f"one of: {allowed}")
        return value

    def typed(self, value: Any, path: str, kind: type | tuple[type, ...], allowed: str, nullable: bool = False) -> Any:
        if value is None and nullable:
            return None
        if isinstance(value, bool) and bool not in _tuple(kind):
            raise self.fail(path, f"expected {allowed}, found {_show(value)}", allowed)
        if not isinstance(value, kind):
            raise self.fail(path, f"expected {allowed}, found {_show(value)}", allowed)
        return value

    def array(self, value: Any, path: str) -> list[Any]:
        items: list[Any] = self.typed(value, path, list, "an array")
        return items

    @overload
    def string(self, value: Any, path: str, nullable: Literal[False] = False) -> str: ...
    @overload
    def string(self, value: Any, path: str, nullable: bool) -> str | None: ...

    def string(self, value: Any, path: str, nullable: bool = False) -> str | None:
        """``value`` checked to be a string (or None when ``nullable``)."""
        text: str | None = self.typed(value, path, str, "a string", nullable)
        return text


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}


def _show(value: Any) -> str:
    """``value`` as the user wrote it, with its JSON type: ``string "yes"``, ``null``."""
    if value is None:
        return "null"
    return f"{_JSON_TYPES.get(type(value), type(value).__name__)} {json.dumps(value)[:60]}"


def _join(path: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_$][\w$]*", key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _conditions(ctx: _Ctx, rule: dict[str, Any], path: str, which: str) -> tuple[Condition, ...]:
    """Validate ``has``/``missing``: [{type, key?, value?}] (key required except for host)."""
    if which not in rule:
        return ()
    out = []
    for i, item in enumerate(ctx.array(rule[which], _join(path, which))):
        ipath = f"{_join(path, which)}[{i}]"
        ctx.obj(item, ipath, ("type", "key", "value"))
        kind = item.get("type")
        if kind not in _CONDITION_TYPES:
            raise ctx.fail(_join(ipath, "type"), f"found {_show(kind)}", "one of: " + ", ".join(_CONDITION_TYPES))
        key = ctx.string(item.get("key"), _join(ipath, "key"), nullable=kind == "host")
        if kind == "host" and "value" not in item:
            raise ctx.fail(_join(ipath, "value"), "missing", "a host name or regex (required for type host)")
        value = ctx.string(item.get("value"), _join(ipath, "value"), nullable=True)
        regex = None
        if value is not None:
            try:
                regex = re.compile(js_regex(value))
            except re.error as exc:
                raise ctx.fail(_join(ipath, "value"), f"bad regular expression {value!r}: {exc}", "a regex") from exc
        out.append(Condition(kind, key, value, regex))
    return tuple(out)


def _rules(ctx: _Ctx, data: dict[str, Any], key: str, parse_one: Callable[[Any, str], _T]) -> tuple[_T, ...]:
    if key not in data:
        return ()
    return tuple(parse_one(item, f"{key}[{i}]") for i, item in enumerate(ctx.array(data[key], key)))


def _source(ctx: _Ctx, rule: dict[str, Any], path: str) -> PathPattern:
    if "source" not in rule:
        raise ctx.fail(_join(path, "source"), "missing", "a path pattern such as '/blog/:slug'")
    return PathPattern.compile(rule["source"], ctx.name, _join(path, "source"))


def _destination(ctx: _Ctx, rule: dict[str, Any], path: str) -> str:
    dest = rule.get("destination")
    if not isinstance(dest, str) or not dest:
        raise ctx.fail(_join(path, "destination"), f"found {_show(dest)}" if "destination" in rule else "missing",
                       "a path ('/api/x?y=:y') or an absolute URL")
    return dest


def _rewrite(ctx: _Ctx, rule: Any, path: str) -> Rewrite:
    ctx.obj(rule, path, ("source", "destination", "has", "missing"))
    source = _source(ctx, rule, path)
    return Rewrite(source, _destination(ctx, rule, path), _conditions(ctx, rule, path, "has"),
                   _conditions(ctx, rule, path, "missing"), f"{ctx.name}: {path}")


def _redirect(ctx: _Ctx, rule: Any, path: str) -> Redirect:
    keys = ("source", "destination", "permanent", "statusCode", "has", "missing")
    ctx.obj(rule, path, keys)
    source = _source(ctx, rule, path)
    if "permanent" in rule and "statusCode" in rule:
        raise ctx.fail(_join(path, "permanent"), "both permanent and statusCode are set", "only one of them")
    status = 308
    if "statusCode" in rule:
        status = ctx.typed(rule["statusCode"], _join(path, "statusCode"), int, "301, 302, 303, 307 or 308")
        if status not in (301, 302, 303, 307, 308):
            raise ctx.fail(_join(path, "statusCode"), f"found {status}", "301, 302, 303, 307 or 308")
    elif "permanent" in rule:
        permanent = ctx.typed(rule["permanent"], _join(path, "permanent"), bool, "true or false")
        status = 308 if permanent else 307
    return Redirect(source, _destination(ctx, rule, path), status, _conditions(ctx, rule, path, "has"),
                    _conditions(ctx, rule, path, "missing"), f"{ctx.name}: {path}")


def _header_rule(ctx: _Ctx, rule: Any, path: str) -> HeaderRule:
    ctx.obj(rule, path, ("source", "headers", "has", "missing"))
    source = _source(ctx, rule, path)
    if "headers" not in rule:
        raise ctx.fail(_join(path, "headers"), "missing", "an array of {key, value}")
    pairs = []
    for i, item in enumerate(ctx.array(rule["headers"], _join(path, "headers"))):
        ipath = f"{_join(path, 'headers')}[{i}]"
        ctx.obj(item, ipath, ("key", "value"))
        name = ctx.string(item.get("key"), _join(ipath, "key"))
        if not _HEADER_NAME.match(name):
            raise ctx.fail(_join(ipath, "key"), f"{name!r} is not a valid header name", "letters, digits and -")
        pairs.append((name, ctx.string(item.get("value"), _join(ipath, "value"))))
    return HeaderRule(source, tuple(pairs), _conditions(ctx, rule, path, "has"),
                      _conditions(ctx, rule, path, "missing"), f"{ctx.name}: {path}")


def _route(ctx: _Ctx, rule: Any, path: str) -> LegacyRoute:
    keys = ("src", "dest", "status", "headers", "methods", "continue", "check", "caseSensitive", "has",
            "missing", "handle")
    ctx.obj(rule, path, keys)
    where = f"{ctx.name}: {path}"
    if "handle" in rule:
        if rule["handle"] not in _ROUTE_HANDLES or len(rule) != 1:
            raise ctx.fail(_join(path, "handle"), f"found {_show(rule['handle'])} in {json.dumps(rule)[:80]}",
                           "{\"handle\": <phase>} alone, phase one of: " + ", ".join(_ROUTE_HANDLES))
        return LegacyRoute(None, None, handle=rule["handle"], where=where)
    if "src" not in rule:
        raise ctx.fail(_join(path, "src"), "missing", "a regular expression such as '/api/(.*)'")
    pattern = RegexPattern.compile(rule["src"], ctx.name, _join(path, "src"))
    if ctx.typed(rule.get("caseSensitive", False), _join(path, "caseSensitive"), bool, "true or false"):
        pattern = RegexPattern(pattern.source, re.compile(pattern.regex.pattern), pattern.keys)
    status = rule.get("status")
    if status is not None and (ctx.typed(status, _join(path, "status"), int, "an HTTP status") < 100 or status > 599):
        raise ctx.fail(_join(path, "status"), f"found {status}", "an HTTP status code 100-599")
    headers = ctx.typed(rule.get("headers", {}), _join(path, "headers"), dict, "an object of header: value")
    for name, value in headers.items():
        ctx.string(value, _join(_join(path, "headers"), name))
    methods = rule.get("methods")
    if methods is not None:
        methods = tuple(ctx.string(m, f"{_join(path, 'methods')}[{i}]").upper()
                        for i, m in enumerate(ctx.array(methods, _join(path, "methods"))))
    return LegacyRoute(
        rule["src"], pattern, ctx.string(rule.get("dest"), _join(path, "dest"), nullable=True), status,
        tuple(headers.items()), methods,
        ctx.typed(rule.get("continue", False), _join(path, "continue"), bool, "true or false"),
        ctx.typed(rule.get("check", False), _join(path, "check"), bool, "true or false"),
        None, _conditions(ctx, rule, path, "has"), _conditions(ctx, rule, path, "missing"), where,
    )


def _build(ctx: _Ctx, rule: Any, path: str) -> LegacyBuild:
    ctx.obj(rule, path, ("src", "use", "config"))
    src = ctx.string(rule.get("src", "**"), _join(path, "src"))
    use = rule.get("use")
    if not isinstance(use, str) or not use:
        raise ctx.fail(_join(path, "use"), f"found {_show(use)}", "a builder name such as '@vercel/python'")
    config = ctx.typed(rule.get("config", {}), _join(path, "config"), dict, "an object")
    return LegacyBuild(src, use, FrozenMap(dict(config)))


_FUNCTION_KEYS = ("maxDuration", "memory", "includeFiles", "excludeFiles", "runtime")
_FUNCTION_IGNORED = ("regions", "functionFailoverRegions", "supportsCancellation", "architecture",
                     "experimentalTriggers")


def _functions(ctx: _Ctx, data: dict[str, Any]) -> tuple[FunctionConfig, ...]:
    if "functions" not in data:
        return ()
    table = ctx.typed(data["functions"], "functions", dict, "an object of glob → settings")
    out = []
    for order, (glob, spec) in enumerate(table.items()):
        path = _join("functions", glob)
        if not glob.strip():
            raise ctx.fail(path, "empty glob", "a file glob such as 'api/**/*.py'")
        ctx.obj(spec, path, _FUNCTION_KEYS, _FUNCTION_IGNORED)
        duration = spec.get("maxDuration")
        if duration is not None and (ctx.typed(duration, _join(path, "maxDuration"), (int, float),
                                               "a number of seconds > 0") <= 0):
            raise ctx.fail(_join(path, "maxDuration"), f"found {duration}", "a number of seconds > 0")
        memory = spec.get("memory")
        if memory is not None and ctx.typed(memory, _join(path, "memory"), int, "an integer number of MB >= 1") < 1:
            raise ctx.fail(_join(path, "memory"), f"found {memory}", "an integer number of MB >= 1")
        runtime = ctx.string(spec.get("runtime"), _join(path, "runtime"), nullable=True)
        if runtime is not None:
            ctx.warn(_join(path, "runtime"), f"{runtime!r} ignored: fnserve runs Python functions itself")
        out.append(FunctionConfig(
            glob, None if duration is None else float(duration), memory,
            ctx.string(spec.get("includeFiles"), _join(path, "includeFiles"), nullable=True),
            ctx.string(spec.get("excludeFiles"), _join(path, "excludeFiles"), nullable=True),
            runtime, order, f"{ctx.name}: {path}",
        ))
    return tuple(out)


def _env(ctx: _Ctx, data: dict[str, Any]) -> Mapping[str, str]:
    env = ctx.typed(data.get("env", {}), "env", dict, "an object of NAME: \"value\"")
    for name, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ctx.fail(_join("env", name), "not a valid variable name", "letters, digits and _")
        ctx.string(value, _join("env", name))
    return FrozenMap(dict(env))


# ---------------------------------------------------------------- files

_VERCEL_KEYS = (
    "$schema", "functions", "rewrites", "redirects", "headers", "cleanUrls", "trailingSlash", "env",
    "buildCommand", "installCommand", "framework", "outputDirectory", "routes", "builds")
_VERCEL_IGNORED = ("version", "name", "alias", "scope", "regions", "functionFailoverRegions", "crons",
                   "images", "github", "git", "devCommand", "ignoreCommand", "build", "public",
                   "bunVersion", "fluid")


def read_json(path: Path) -> Any:
    """Read a JSON file; syntax errors become ``ConfigError`` with ``line:col``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(path.name, f"line {exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}",
                          "a JSON object (no comments, no trailing commas)") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path.name, "(file)", "not UTF-8 text", "a UTF-8 JSON file") from exc


def parse_vercel_json(data: Any, name: str = "vercel.json") -> VercelConfig:
    """Validate a decoded ``vercel.json`` (``data``) and compile its patterns.
    ``name``: the file name used in errors. Raises ``ConfigError``."""
    ctx = _Ctx(name)
    ctx.obj(data, "", _VERCEL_KEYS, _VERCEL_IGNORED)
    routes = _rules(ctx, data, "routes", lambda r, p: _route(ctx, r, p))
    if routes:
        clash = [k for k in ("rewrites", "redirects", "headers", "cleanUrls", "trailingSlash") if k in data]
        if clash:
            raise ctx.fail("routes", f"cannot be combined with {', '.join(clash)}",
                           "either legacy routes, or rewrites/redirects/headers/cleanUrls/trailingSlash")
    return VercelConfig(
        files=(),
        functions=_functions(ctx, data),
        rewrites=_rules(ctx, data, "rewrites", lambda r, p: _rewrite(ctx, r, p)),
        redirects=_rules(ctx, data, "redirects", lambda r, p: _redirect(ctx, r, p)),
        headers=_rules(ctx, data, "headers", lambda r, p: _header_rule(ctx, r, p)),
        routes=routes,
        builds=_rules(ctx, data, "builds", lambda r, p: _build(ctx, r, p)),
        clean_urls=ctx.typed(data.get("cleanUrls", False), "cleanUrls", bool, "true or false"),
        trailing_slash=ctx.typed(data.get("trailingSlash"), "trailingSlash", bool, "true, false or absent", True),
        env=_env(ctx, data),
        build_command=ctx.string(data.get("buildCommand"), "buildCommand", nullable=True),
        install_command=ctx.string(data.get("installCommand"), "installCommand", nullable=True),
        framework=ctx.string(data.get("framework"), "framework", nullable=True),
        output_directory=ctx.string(data.get("outputDirectory"), "outputDirectory", nullable=True),
        warnings=tuple(ctx.warnings),
    )


_EDGEONE_KEYS = ("$schema", "name", "buildCommand", "installCommand", "outputDirectory",
                                 "rewrites", "redirects", "headers")


def parse_edgeone_json(data: Any, name: str = "edgeone.json") -> VercelConfig:
    """Validate a decoded ``edgeone.json``; see the module docstring for what is used."""
    ctx = _Ctx(name)
    ctx.obj(data, "", _EDGEONE_KEYS, ("nodeVersion", "caches"))

    def redirect(rule: Any, path: str) -> Redirect | None:
        ctx.obj(rule, path, ("source", "destination", "statusCode"))
        if rule.get("source") in ("$host", "$wwwhost"):
            ctx.warn(path, "domain redirects ($host/$wwwhost) only apply on EdgeOne; ignored")
            return None
        source = _source(ctx, rule, path)
        status = ctx.typed(rule.get("statusCode", 301), _join(path, "statusCode"), int, "301, 302, 307 or 308")
        if status not in (301, 302, 307, 308):
            raise ctx.fail(_join(path, "statusCode"), f"found {status}", "301, 302, 307 or 308")
        return Redirect(source, _destination(ctx, rule, path), status, where=f"{name}: {path}")

    return VercelConfig(
        rewrites=_rules(ctx, data, "rewrites", lambda r, p: _rewrite(ctx, r, p)),
        redirects=tuple(r for r in _rules(ctx, data, "redirects", redirect) if r is not None),
        headers=_rules(ctx, data, "headers", lambda r, p: _header_rule(ctx, r, p)),
        build_command=ctx.string(data.get("buildCommand"), "buildCommand", nullable=True),
        install_command=ctx.string(data.get("installCommand"), "installCommand", nullable=True),
        output_directory=ctx.string(data.get("outputDirectory"), "outputDirectory", nullable=True),
        warnings=tuple(ctx.warnings),
    )


def load_platform_config(project_dir: Path) -> VercelConfig:
    """Read ``<project_dir>/vercel.json`` and ``<project_dir>/edgeone.json`` (each optional) and
    merge them (vercel.json rules first; its single values win). Raises ``ConfigError``."""
    vercel_path, edgeone_path = project_dir / "vercel.json", project_dir / "edgeone.json"
    vc = parse_vercel_json(read_json(vercel_path)) if vercel_path.is_file() else VercelConfig()
    if vercel_path.is_file():
        vc = replace(vc, files=(vercel_path,))
    if not edgeone_path.is_file():
        return vc
    eo = parse_edgeone_json(read_json(edgeone_path))
    return replace(
        vc,
        files=vc.files + (edgeone_path,),
        rewrites=vc.rewrites + eo.rewrites,
        redirects=vc.redirects + eo.redirects,
        headers=vc.headers + eo.headers,
        build_command=vc.build_command if vc.build_command is not None else eo.build_command,
        install_command=vc.install_command if vc.install_command is not None else eo.install_command,
        output_directory=vc.output_directory if vc.output_directory is not None else eo.output_directory,
        warnings=vc.warnings + eo.warnings,
    )
