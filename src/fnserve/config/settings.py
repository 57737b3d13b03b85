"""How a setting is declared and parsed (STYLE: "declare each setting once").

Each setting is one field of the frozen :class:`fnserve.config.effective.Config`, declared with
:func:`setting`::

    port: int = setting(3000, "Port to listen on.", minimum=0, maximum=65535, commands=SERVE)

The field's annotation gives the Python type (``int``, ``float``, ``str``, ``bool``; ``X | None``
makes the setting nullable); :func:`setting` keeps the rest (help, unit, bounds, choices, the
commands that take its flag) in the field's metadata. :func:`settings_of` reads the fields back
into :class:`Setting` records, from which the environment variable (``FNSERVE_<NAME>``), the CLI
flag (``--<name-with-dashes>``), the file key (``name-with-dashes`` or ``name_with_underscores``
in ``[tool.fnserve]``), the click options (``fnserve.config.flags``) and the ``fnserve config``
table are derived.

``Setting.parse(value, source)`` converts a flag/env string or a TOML value and validates it,
raising ``ConfigError(source, name, problem, allowed)`` (e.g. ``FNSERVE_PORT: port: bad value
'abc'``; allowed: ``an integer >= 0 and <= 65535``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NewType, TypeVar

from fnserve.errors import ConfigError

__all__ = ["COMMANDS", "ENTRYPOINT_PATTERN", "Setting", "Strings", "parse_size", "setting", "settings_of"]

T = TypeVar("T")

Strings = NewType("Strings", tuple[str, ...])
"""The annotation of a multi-valued setting (``env_file: Strings = setting(Strings(()), ...)``):
a tuple of strings from a repeatable flag, an ``os.pathsep``-separated variable or a file array.
A plain ``tuple[str, ...]`` annotation is not a setting type (``settings_of`` rejects it)."""

COMMANDS = ("dev", "start", "build", "routes", "config", "deps")
"""Every command a setting's ``commands`` may name (``build`` is reserved for the build step)."""

ENTRYPOINT_PATTERN = r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*"
_METADATA_KEY = "fnserve.setting"
_TYPES = (bool, int, float, str)
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
    """One setting, read off a ``Config`` field by :func:`settings_of`.

    ``name``: the field name; ``type``: int, float, str or bool (from the annotation);
    ``nullable``: None allowed (the annotation is ``X | None``; an empty string from env → None);
    ``default``: the value when no source sets it; ``mode_default``: when set, ``(mode) ->
    value`` decides the default per mode instead; ``default_text``: how help shows the default
    (else the value); ``unit``: shown in help (``"s"``, ``"MB"``, ``"bytes"``); ``commands``: the
    CLI commands that take its flag (see :data:`COMMANDS`); ``choices``: allowed strings
    (lower-case); ``minimum``/``maximum``: numeric bounds; ``size``: ints may be written
    ``"4.5MB"``; ``per_function``: also settable in ``[tool.fnserve.functions."<glob>"]``;
    ``pattern``: a regex a string must match; ``multiple``: the value is a tuple of strings
    (annotation :data:`Strings`; the flag is repeatable, the variable separates items with
    ``os.pathsep``, the file takes an array); ``short``: a one-letter flag alias (``-p``)."""

    name: str
    type: type
    default: Any
    help: str
    unit: str = ""
    commands: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    size: bool = False
    per_function: bool = False
    pattern: str | None = None
    mode_default: Callable[[str], Any] | None = None
    default_text: str | None = None
    multiple: bool = False
    short: str | None = None

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
        return self.mode_default(mode) if self.mode_default is not None else self.default

    def show_default(self) -> str:
        """The default as help shows it (``"3000"``, ``"none"``, ``"CPU count"``)."""
        if self.default_text is not None:
            return self.default_text
        value = self.default
        if self.multiple:
            return ", ".join(value) or "none"
        return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    def allowed(self) -> str:
        """Human description of accepted values, for error messages and help."""
        if self.multiple:
            return (f"strings (repeat the flag; in {self.env} separate them with {os.pathsep!r}; "
                    "in a file, an array)")
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
        elif self.pattern == ENTRYPOINT_PATTERN:
            text = "'module:attribute', e.g. 'app:app' or 'backend.server:application'"
        else:
            text = "a string"
        return text + (" (empty for none)" if self.nullable else "")

    def parse(self, value: Any, source: str) -> Any:
        """Convert ``value`` (a string from a flag/env, or a TOML/Python value) and validate it.
        ``source``: where it came from, named in the ``ConfigError`` raised on a bad value."""
        if self.multiple:
            return self._strings(value, source)
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

    def _strings(self, value: Any, source: str) -> Strings:
        """A ``multiple`` setting: a tuple/list of non-empty strings, or one string (an
        environment variable: items separated by ``os.pathsep``)."""
        items = value.split(os.pathsep) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise self._bad(source, value)
        return Strings(tuple(i.strip() for i in items if i.strip()))

    def _number(self, value: Any, source: str) -> int | float:
        if isinstance(value, bool):  # True is an int in Python, never a number here
            raise self._bad(source, value)
        if isinstance(value, (int, float)):
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise self._bad(source, value)
            return int(value) if self.type is int else float(value)
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


def setting(
    default: T,
    help: str,
    *,
    commands: tuple[str, ...],
    unit: str = "",
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    size: bool = False,
    per_function: bool = False,
    pattern: str | None = None,
    mode_default: Callable[[str], T] | None = None,
    default_text: str | None = None,
    short: str | None = None,
) -> T:
    """Declare one ``Config`` field as a setting: a ``dataclasses.field(default=default)`` whose
    metadata holds the rest (see :class:`Setting` for each argument). Typed as returning
    ``default``'s type, like ``dataclasses.field``, so mypy checks the default against the
    field's annotation. Raises ``ValueError`` for a command not in :data:`COMMANDS`."""
    unknown = [c for c in commands if c not in COMMANDS]
    if unknown:
        raise ValueError(f"unknown command(s) {unknown} in a setting; known: {', '.join(COMMANDS)}")
    spec = Setting(
        name="", type=object, default=default, help=help, unit=unit, commands=commands, choices=choices,
        minimum=minimum, maximum=maximum, size=size, per_function=per_function, pattern=pattern,
        mode_default=mode_default, default_text=default_text, short=short,
    )  # name, type, nullable and multiple come from the field (settings_of)
    return dataclasses.field(default=default, metadata={_METADATA_KEY: spec})


def settings_of(cls: type) -> tuple[Setting, ...]:
    """The :class:`Setting` of every field of dataclass ``cls`` declared with :func:`setting`,
    in field order, with ``name``, ``type``, ``nullable`` and ``multiple`` taken from the field.
    Raises ``TypeError`` for an annotation that is not bool, int, float or str (optionally
    ``| None``), or :data:`Strings`."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(_METADATA_KEY)
        if not isinstance(spec, Setting):
            continue
        hint = hints[field.name]
        if hint is Strings:
            found.append(dataclasses.replace(spec, name=field.name, type=str, multiple=True))
            continue
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
            else (hint,)
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1 or kinds[0] not in _TYPES:
            raise TypeError(f"setting {field.name}: annotation {hint!r} is not one of bool, int, float, str [| None]")
        found.append(dataclasses.replace(spec, name=field.name, type=kinds[0], nullable=len(args) > 1))
    return tuple(found)
