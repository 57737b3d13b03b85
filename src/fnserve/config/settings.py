"""The settings registry: every fnserve setting declared once (STYLE: "declare each setting once").

A :class:`Setting` gives the name, Python type, default, unit, help and the commands that use it;
the environment variable (``FNSERVE_<NAME>``), the CLI flag (``--<name-with-dashes>``), the file
key (``name-with-dashes`` or ``name_with_underscores`` in ``[tool.fnserve]``), the click options
(:func:`cli_options`), the ``Config`` attributes and the ``fnserve config`` table are all derived
from :data:`SETTINGS`.

``Setting.parse(value, source)`` converts a flag/env string or a TOML value and validates it,
raising ``ConfigError(source, name, problem, allowed)`` (e.g. ``FNSERVE_PORT: port: 'abc' is
not an integer``; allowed: ``an integer 0-65535``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click

from fnserve.errors import ConfigError

__all__ = ["Setting", "SETTINGS", "SETTINGS_BY_NAME", "cli_options", "overrides_from", "parse_size"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}  # binary, like nginx's "4m"


def parse_size(text: str) -> int:
    """``"4718592"``, ``"4.5MB"``, ``"4.5MiB"``, ``"4.5m"``, ``"512k"`` → bytes (int). Units are
    binary (k = 1024, M = 1024², G = 1024³), so ``4.5MB`` is Vercel's 4.5 MB body limit, 4718592.
    Raises ``ValueError`` when ``text`` is not a size."""
    found = _SIZE.match(text)
    if not found:
        raise ValueError(text)
    unit = (found.group(2) or "").lower()[:1]
    return int(float(found.group(1)) * _SIZE_UNITS[unit])


@dataclass(frozen=True)
class Setting:
    """One setting. ``type``: int, float, str or bool; ``default``: a value, or a callable
    ``(mode) -> value`` for mode-dependent defaults; ``unit``: shown in help (``"s"``, ``"MB"``,
    ``"bytes"``); ``commands``: the CLI commands that take its flag; ``choices``: allowed
    strings; ``nullable``: None allowed (empty string from env → None); ``minimum``/``maximum``:
    numeric bounds; ``size``: ints may be written ``"4.5MB"``; ``per_function``: also settable
    in ``[tool.fnserve.functions."<glob>"]``; ``pattern``: a regex a string must match."""

    name: str
    type: type
    default: Any
    help: str
    unit: str = ""
    commands: tuple[str, ...] = ("dev", "start")
    choices: tuple[str, ...] = ()
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    size: bool = False
    per_function: bool = False
    pattern: str | None = None

    @property
    def env(self) -> str:
        return "FNSERVE_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def file_key(self) -> str:
        return self.name.replace("_", "-")

    def default_for(self, mode: str) -> Any:
        """The default in ``mode`` ("dev", "start", "build")."""
        return self.default(mode) if callable(self.default) else self.default

    def allowed(self) -> str:
        """Human description of accepted values, for error messages and help."""
        if self.choices:
            text = "one of: " + ", ".join(self.choices)
        elif self.type is bool:
            text = "true or false (1/0, yes/no, on/off)"
        elif self.type in (int, float):
            noun = "an integer" if self.type is int else "a number"
            lo = "" if self.minimum is None else f">= {self.minimum:g}"
            hi = "" if self.maximum is None else f"<= {self.maximum:g}"
            bounds = " and ".join(b for b in (lo, hi) if b)
            text = f"{noun}{' ' + bounds if bounds else ''}{' ' + self.unit if self.unit else ''}"
            if self.size:
                text += " (or a size such as 4.5MB, 512KiB)"
        elif self.pattern == _ENTRYPOINT:
            text = "'module:attribute', e.g. 'app:app' or 'backend.server:application'"
        else:
            text = "a string"
        return text + (" (empty for none)" if self.nullable else "")

    def parse(self, value: Any, source: str) -> Any:
        """Convert ``value`` (a string from a flag/env, or a TOML/Python value) and validate it.
        ``source``: where it came from, named in the ``ConfigError`` raised on a bad value."""
        if value is None or (self.nullable and isinstance(value, str) and value.strip().lower() in ("", "none")):
            if self.nullable:
                return None
            raise self._bad(source, value)
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
                return value.strip().lower() in _TRUE
            raise self._bad(source, value)
        if self.type in (int, float):
            number = self._number(value, source)
            if self.minimum is not None and number < self.minimum:
                raise self._bad(source, value)
            if self.maximum is not None and number > self.maximum:
                raise self._bad(source, value)
            return number
        if not isinstance(value, str):
            raise self._bad(source, value)
        value = value.strip()
        if self.choices and value.lower() not in self.choices:
            raise self._bad(source, value)
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise self._bad(source, value)
        return value.lower() if self.choices else value

    def _number(self, value: Any, source: str) -> int | float:
        if isinstance(value, bool):  # True is an int in Python, never a number here
            raise self._bad(source, value)
        if isinstance(value, (int, float)):
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise self._bad(source, value)
            return self.type(value)
        if isinstance(value, str):
            try:
                if self.size:
                    return parse_size(value)
                return int(value.strip()) if self.type is int else float(value.strip())
            except ValueError:
                pass
        raise self._bad(source, value)

    def _bad(self, source: str, value: Any) -> ConfigError:
        return ConfigError(source, self.name, f"bad value {value!r}", self.allowed())


_ENTRYPOINT = r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*"
_ALL = ("dev", "start", "build", "routes", "config")
_SERVE = ("dev", "start")


def _cpu_default(mode: str) -> int:
    return max(1, os.cpu_count() or 1)


SETTINGS: tuple[Setting, ...] = (
    Setting("host", str, "127.0.0.1", "Interface to listen on.", commands=_SERVE),
    Setting("port", int, 3000, "Port to listen on (0: any free port).", minimum=0, maximum=65535, commands=_SERVE),
    Setting("entrypoint", str, None, "Serve one app at / from 'module:attr' (also [tool.vercel] entrypoint).",
            nullable=True, pattern=_ENTRYPOINT, commands=_ALL),
    Setting("framework", str, None, "Framework preset (vercel.json 'framework'); a Python preset forces "
            "the single-app mode.", nullable=True, commands=_ALL),
    Setting("log_format", str, "text", "Access and error log format.", choices=("text", "json"), commands=_SERVE),
    Setting("body_limit", int, 4718592, "Largest request body accepted (413 above it).", unit="bytes",
            minimum=0, size=True),
    Setting("max_duration", float, 300.0, "Longest a request may run (504 after it).", unit="s",
            minimum=0.001, per_function=True),
    Setting("memory", int, 1024, "Memory limit per function instance.", unit="MB", minimum=1, per_function=True),
    Setting("concurrency_sync", int, 16, "Requests at once per instance for handler/WSGI/lambda functions.",
            minimum=1, per_function=True),
    Setting("concurrency_asgi", int, 100, "Requests at once per instance for ASGI functions.", minimum=1,
            per_function=True),
    Setting("min_instances", int, 0, "Instances kept running per function.", minimum=0, per_function=True),
    Setting("max_instances", int, _cpu_default, "Most instances per function (default: CPU count).",
            minimum=1, per_function=True),
    Setting("idle_timeout", float, 60.0, "Idle time before an instance above min-instances stops.", unit="s",
            minimum=0, per_function=True),
    Setting("workers_per_function", int, None, "Run exactly this many instances per function (sets "
            "min-instances and max-instances where they are not set more specifically); empty: autoscale.",
            nullable=True, minimum=1, commands=("start",)),
    Setting("queue_size", int, 100, "Requests waiting per function before 503.", minimum=0, per_function=True),
    Setting("grace_period", float, 30.0, "On SIGTERM/SIGINT, time in-flight requests get to finish (then "
            "they are cut off); also what each instance gets to drain on reload.", unit="s", minimum=0,
            commands=("start",)),
    Setting("admin_port", int, None, "Serve /_fnserve/health and /_fnserve/metrics on this port "
            "(empty: on the main port).", nullable=True, minimum=0, maximum=65535, commands=("start",)),
    Setting("detect_imports", bool, True, "Add packages detected from imports to the requirements.",
            commands=("dev", "start", "build", "deps")),
    Setting("install", bool, True, "Install requirements into a per-project env with uv "
            "(false: run functions with the current interpreter).", commands=("dev", "start", "build", "deps")),
    Setting("python", str, None, "Python version request or interpreter path for the function env "
            "(e.g. 3.12).", nullable=True, commands=("dev", "start", "build", "deps")),
    Setting("reload", bool, lambda mode: mode == "dev", "Reload functions when files change "
            "(default: on in dev; fnserve start reloads on SIGHUP instead).", commands=("dev",)),
)

SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


def cli_options(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator adding the click options of the named settings (all when no name is given).

    Every option defaults to None, so only flags given on the command line become overrides:
    pass the command's keyword arguments through :func:`overrides_from`. Values stay strings
    (bools: ``--reload/--no-reload``) and are validated by ``load_config``. Raises ``KeyError``
    for an unknown name (a programming error)."""
    chosen = [SETTINGS_BY_NAME[n] for n in names] if names else list(SETTINGS)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for setting in reversed(chosen):
            text = f"{setting.help} [env {setting.env}; default: {_default_text(setting)}]"
            if setting.type is bool:
                flags = f"{setting.flag}/--no-{setting.flag[2:]}"
                func = click.option(flags, setting.name, default=None, help=text)(func)
            else:
                metavar = setting.unit.upper() if setting.unit else setting.type.__name__.upper()
                func = click.option(setting.flag, setting.name, default=None, metavar=metavar, help=text)(func)
        return func

    return decorate


def overrides_from(params: Mapping[str, Any]) -> dict[str, Any]:
    """The explicitly given flags among a command's parameters: setting name → raw value."""
    return {k: v for k, v in params.items() if k in SETTINGS_BY_NAME and v is not None}


def _default_text(setting: Setting) -> str:
    if setting.name == "max_instances":
        return "CPU count"
    if setting.name == "reload":
        return "on in dev"
    value = setting.default
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
