"""The frozen ``Config`` and per-function limits (SPEC §5, §9).

``Config`` is a hand-written frozen dataclass: the project fields, then one field per setting
declared with ``fnserve.config.settings.setting`` (type from the annotation, the rest in field
metadata). :data:`SETTINGS` (the registry every flag, variable, file key and report is derived
from) is read off those fields, so each setting is declared once and tools see real types.

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

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnserve.config.settings import ENTRYPOINT_PATTERN, Setting, Strings, setting, settings_of
from fnserve.project.vercel_types import FrozenMap, VercelConfig

__all__ = ["DEPS", "PROJECT", "SERVE", "SETTINGS", "SETTINGS_BY_NAME", "START", "UNBOUNDED", "Config",
           "FunctionLimits", "FunctionRule", "glob_matches", "glob_specificity"]

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


_CPUS = max(1, os.cpu_count() or 1)

# Which commands take a setting's flag (``fnserve config`` takes every one: it shows them all).
SERVE = ("dev", "start", "config")
"""Both servers: listening, logs, and the limits ``dev`` enforces too."""
START = ("start", "config")
"""Production only: scaling, instances, queue, drain, admin port."""
PROJECT = ("dev", "start", "build", "routes", "config")
"""What the project model reads (entrypoint, framework)."""
DEPS = ("dev", "start", "build", "deps", "config")
"""The dependency step."""


@dataclass(frozen=True)
class Config:
    """The effective configuration (frozen, picklable). Built by ``fnserve.config.load_config``.

    ``project_dir``: absolute path; ``mode``: "dev", "start" or "build"; ``sources``: setting
    name → where its value came from (``"--port"``, ``"FNSERVE_PORT"``, ``"pyproject.toml
    [tool.fnserve]"``, ``"fnserve.toml"``, ``"pyproject.toml [tool.vercel]"``, ``"vercel.json"``,
    ``"default"``); ``vercel``: the parsed ``vercel.json``/``edgeone.json``; ``function_rules``:
    ``[tool.fnserve.functions]``; ``import_map``: ``[tool.fnserve.import-map]`` (import name →
    distribution, for ``deps``); ``env_vars``: the merged function environment; ``files``: every
    config file that exists (pyproject.toml, fnserve.toml, vercel.json, edgeone.json, .env*) —
    what a reloader should watch; ``build_command``: vercel.json ``buildCommand``, else
    ``[tool.vercel.scripts] build``; ``warnings``: accepted-but-unused keys and the like.

    Then one field per setting, declared with ``setting(...)``; :data:`SETTINGS` is read off these
    fields (their order is the order of ``fnserve config``). Units: ``body_limit``/``header_limit`` bytes,
    ``header_timeout``/``body_timeout`` seconds,
    ``max_duration``/``idle_timeout``/``grace_period`` seconds (float), ``memory`` MB.
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

    host: str = setting("127.0.0.1", "Interface to listen on.", commands=SERVE)
    port: int = setting(3000, "Port to listen on (0: any free port; dev moves on to the next free port when the "
                        "default one is taken).", minimum=0, maximum=65535, commands=SERVE, short="-p")
    entrypoint: str | None = setting(
        None, "Serve one app at / from 'module:attr' (also [tool.vercel] entrypoint).",
        pattern=ENTRYPOINT_PATTERN, commands=PROJECT)
    framework: str | None = setting(
        None, "Framework preset (vercel.json 'framework'); a Python preset forces the single-app mode.",
        commands=PROJECT)
    log_format: str = setting("text", "Access and error log format.", choices=("text", "json"), commands=SERVE)
    body_limit: int = setting(4718592, "Largest request body accepted (413 above it).", unit="bytes", minimum=0,
                              size=True, commands=SERVE)
    header_limit: int = setting(65536, "Largest request line + headers accepted (431 above it).", unit="bytes",
                                minimum=1024, size=True, commands=SERVE)
    header_count: int = setting(100, "Most request headers accepted (431 above it).", minimum=1, commands=SERVE)
    header_timeout: float = setting(
        10.0, "Time a client gets to send a request line and its headers (then 408, or a silent close when "
        "it sent nothing).", unit="s", minimum=0.1, commands=SERVE)
    body_timeout: float = setting(30.0, "Longest pause while a request body arrives (408 after it).", unit="s",
                                  minimum=0.1, commands=SERVE)
    max_connections: int | None = setting(
        None, "Most open client connections (a new one above it gets 503 and is closed); empty: the open-file "
        "limit (raised to its hard limit at start) minus a reserve.", minimum=1, default_text="open-file limit - reserve",
        commands=SERVE)
    max_duration: float = setting(300.0, "Longest a request may run (504 after it).", unit="s", minimum=0.001,
                                  per_function=True, commands=SERVE)
    memory: int = setting(1024, "Memory limit per function instance.", unit="MB", minimum=1, per_function=True,
                          commands=SERVE)
    concurrency_sync: int = setting(32, "Requests at once per instance for handler/WSGI/lambda functions.",
                                    minimum=1, per_function=True, commands=START)
    concurrency_asgi: int = setting(100, "Requests at once per instance for ASGI functions.", minimum=1,
                                    per_function=True, commands=START)
    min_instances: int = setting(0, "Instances kept running per function.", minimum=0, per_function=True,
                                 commands=START)
    max_instances: int = setting(_CPUS, "Most instances per function (default: CPU count).", minimum=1,
                                 per_function=True, default_text="CPU count", commands=START)
    idle_timeout: float = setting(60.0, "Idle time before an instance above min-instances stops.", unit="s",
                                  minimum=0, per_function=True, commands=START)
    workers_per_function: int | None = setting(
        None, "Run exactly this many instances per function (sets min-instances and max-instances where they "
        "are not set more specifically); empty: autoscale.", minimum=1, commands=START)
    queue_size: int = setting(100, "Requests waiting per function before 503.", minimum=0, per_function=True,
                              commands=START)
    grace_period: float = setting(
        30.0, "On SIGTERM/SIGINT, time in-flight requests get to finish (then they are cut off); also what "
        "each instance gets to drain on reload.", unit="s", minimum=0, commands=START)
    admin_port: int | None = setting(
        None, "Serve /_fnserve/health and /_fnserve/metrics on this port (empty: on the main port).",
        minimum=0, maximum=65535, commands=START)
    heartbeat_timeout: float = setting(
        30.0, "Kill an instance whose event loop sent no heartbeat for this long (a worker stuck in one long "
        "call; its requests get 502); 0: never.", unit="s", minimum=0, commands=START)
    load_retry: float = setting(
        60.0, "Retry a function whose import or lifespan startup failed after 1, 2, 4, ... s, at most this "
        "long apart; 0: never (it waits for a SIGHUP).", unit="s", minimum=0, commands=START)
    max_requests: int = setting(
        0, "Replace an instance after it served this many requests (plus up to max-requests-jitter); "
        "0: never.", minimum=0, commands=START)
    max_requests_jitter: int = setting(
        0, "Random extra requests (0..this) added to max-requests per instance, so instances do not all "
        "restart at once.", minimum=0, commands=START)
    max_failures: int = setting(
        10, "Replace an instance after this many failed requests in a row (the function raised or "
        "answered 5xx); 0: never.", minimum=0, commands=START)
    # issue 10 item 7 (containment): per-instance resource limits, applied in the instance before its code runs
    instance_max_open_files: int = setting(
        1024, "RLIMIT_NOFILE of each instance (soft and hard; Vercel's and Lambda's 1024), capped at the limit "
        "fnserve has; 0: inherited from fnserve.", minimum=0, commands=START)
    instance_max_processes: int = setting(
        0, "RLIMIT_NPROC of each instance (soft and hard). It counts every process and thread of the user "
        "running the instance, fnserve's included, so it must leave room for them; 0: inherited.", minimum=0,
        commands=START)
    detect_imports: bool = setting(True, "Add packages detected from imports to the requirements.", commands=DEPS)
    install: bool = setting(True, "Install requirements into a per-project env with uv (false: run functions "
                            "with the current interpreter; fnserve deps: plan only).", commands=DEPS)
    python: str | None = setting(
        None, "Python version request or interpreter path for the function env (e.g. 3.12).", commands=DEPS)
    python_fallback: bool = setting(
        False, "When no Python matching the project's request is installed and uv cannot fetch one, build "
        "the env with the nearest installed Python (with a warning) instead of stopping (dev always does).",
        commands=("start", "build", "deps", "config"))
    reload: bool = setting(
        True, "Reload functions when files change (default: on in dev; fnserve start reloads on SIGHUP "
        "instead).", mode_default=lambda mode: mode == "dev", default_text="on in dev", commands=("dev", "config"))
    dashboard: bool = setting(
        True, "Serve the dashboard at /_fnserve/ (routes, function states, live requests, latency, output; "
        "fnserve start: off by default, and only on the admin port).", mode_default=lambda mode: mode == "dev",
        default_text="on in dev", commands=SERVE)

    env_file: Strings = setting(
        Strings(()), "An extra env file for the functions, loaded after .env, .env.local and .env.<stage>[.local] "
        "(repeatable; later files win; relative to the project folder).", commands=("dev", "start", "build", "config"))
    reload_dir: Strings = setting(
        Strings(()), "Watch only this folder of the project for changes (repeatable; default: the whole project; "
        "the config files at its root are always watched).", commands=("dev", "config"))
    reload_exclude: Strings = setting(
        Strings(()), "Ignore changes to files matching this glob (repeatable; matched against the project-relative path, "
        "the file name and each folder name, e.g. 'tests', '*.log', 'data/*').", commands=("dev", "config"))
    open: bool = setting(False, "Open the dev server's URL in the browser once it listens.", commands=("dev", "config"))
    # issue 10 items 8-9 (helper reach): what a function can reach in fnserve start (docs/SECURITY.md)
    env_passthrough: Strings = setting(
        Strings(()), "A host environment variable (name or glob, e.g. 'AWS_*') fnserve start passes to functions "
        "besides PATH, HOME, USER, LANG, LC_*, TZ, SSL_CERT_FILE, SSL_CERT_DIR and a few more (repeatable; the "
        "project's .env* and vercel.json env always pass; fnserve dev passes the whole environment).",
        commands=START)
    read_only_code: bool = setting(
        True, "In fnserve start, functions can write only to /tmp, their own $TMPDIR, /dev and --writable-path: "
        "the project and every other file are read-only to them (Landlock, Linux >= 5.13; fnserve dev never "
        "restricts).", commands=START)
    writable_path: Strings = setting(
        Strings(()), "A folder functions may write to despite read-only-code (repeatable; relative to the project "
        "folder or absolute), e.g. a SQLite database's folder.", commands=START)
    user: str | None = setting(
        None, "Run function instances as this user (a name or uid) when fnserve start runs as root; the project "
        "must be readable by it.", commands=START)
    # issue 14 item 4 (dev as fast as start): dev stops idle instances; the next request forks one from the zygote
    dev_idle_timeout: float = setting(
        300.0, "fnserve dev: stop a function's instance after this long without a request (the next request "
        "starts one again); 0: never.", unit="s", minimum=0, commands=("dev", "config"))

    # issue 14 item 2 (direct path): instances serve the client connections of their own function
    direct_path: bool = setting(
        True, "fnserve start: pass a client connection whose first request goes straight to a function (no "
        "vercel.json rule, no static file) to an instance of it, which then serves the connection itself "
        "(about 5x less CPU per request than through the front); off: every request goes through the front.",
        commands=START)

    # --- terminal and logs (issue 13 item 4; owner: terminal) ---
    log_level: str = setting(
        "info", "Least level of fnserve's own messages shown; access lines are info (a function's output is always "
        "shown).", choices=("debug", "info", "warning", "error"), commands=SERVE)
    quiet: bool = setting(False, "Show only warnings and errors (and the URL): no access lines, no route table.",
                          commands=SERVE)
    access_log: bool = setting(True, "Print one line per request.", commands=SERVE)
    handler_log: str = setting(
        "hide", "The line a BaseHTTPRequestHandler class logs per request (its log_request): hide it (fnserve prints "
        "its own access line) or show it as the function's output (default: hide in dev, show in start).",
        choices=("show", "hide"), mode_default=lambda mode: "hide" if mode == "dev" else "show",
        default_text="hide in dev, show in start", commands=SERVE)

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
        the concurrency default (ASGI 100, other kinds 32). See the module docstring for order."""
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


SETTINGS: tuple[Setting, ...] = settings_of(Config)
"""The registry: one ``Setting`` per setting field of ``Config``, in declaration order."""
SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}
