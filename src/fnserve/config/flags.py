"""The click options of the settings, derived from the registry (``fnserve.config.SETTINGS``).

``command_options("dev")`` adds the flag of every setting whose ``commands`` include ``dev``;
``cli_options("host", "port")`` adds named ones. Non-bool flags stay strings (``Setting.parse``
validates them in ``load_config``, so a bad ``--port`` and a bad ``FNSERVE_PORT`` get the same
message naming the setting, its source and what is allowed). Settings with choices use a
``click.Choice`` for help and completion (``--log-format [text|json]``) that leaves the check to
``Setting.parse`` too. Bools are ``--x/--no-x``; ``tuple[str, ...]`` settings are repeatable
flags; a setting's ``short`` alias (``-p``) is added beside its flag. Every option defaults to None: pass
the command's keyword arguments through :func:`overrides_from` to get only the flags given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import click

from fnserve.config.effective import SETTINGS, SETTINGS_BY_NAME
from fnserve.config.settings import COMMANDS, Setting

__all__ = ["cli_options", "command_options", "overrides_from"]

F = TypeVar("F", bound=Callable[..., Any])


def cli_options(*names: str) -> Callable[[F], F]:
    """A decorator adding the click options of the named settings (all when no name is given).
    Raises ``KeyError`` for an unknown name (a programming error)."""
    return _decorator([SETTINGS_BY_NAME[n] for n in names] if names else list(SETTINGS))


def command_options(command: str) -> Callable[[F], F]:
    """A decorator adding the options of every setting whose ``commands`` include ``command``
    (one of ``fnserve.config.settings.COMMANDS``; else ``ValueError``)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    return _decorator([s for s in SETTINGS if command in s.commands])


def overrides_from(params: Mapping[str, Any]) -> dict[str, Any]:
    """The explicitly given flags among a command's parameters: setting name → raw value (a
    repeatable flag given no time, ``()``, counts as not given)."""
    return {k: v for k, v in params.items() if k in SETTINGS_BY_NAME and v is not None and v != ()}


class _Choices(click.Choice[str]):
    """``click.Choice`` for help (``[text|json]``) and shell completion; the value passes through
    unchanged so that ``Setting.parse`` reports a bad one like any other source."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value


def _decorator(chosen: Iterable[Setting]) -> Callable[[F], F]:
    options = [_option(s) for s in chosen]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _option(setting: Setting) -> Callable[[F], F]:
    text = f"{setting.help} [env {setting.env}; default: {setting.show_default()}]"
    if setting.multiple:
        return click.option(setting.flag, setting.name, multiple=True, metavar=setting.type.__name__.upper(),
                            help=text)
    if setting.type is bool:
        return click.option(f"{setting.flag}/--no-{setting.file_key}", setting.name, default=None, help=text)
    if setting.choices:
        return click.option(setting.flag, setting.name, default=None, help=text,
                            type=_Choices(setting.choices, case_sensitive=False))
    metavar = setting.unit.upper() if setting.unit else setting.type.__name__.upper()
    names = (setting.flag, setting.short) if setting.short else (setting.flag,)
    return click.option(*names, setting.name, default=None, metavar=metavar, help=text)
