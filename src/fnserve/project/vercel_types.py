"""The value types of ``vercel.json`` / ``edgeone.json`` (SPEC §5), built by
``fnserve.project.vercel_json``. All frozen; patterns are compiled, so the server only matches
and substitutes: ``Rewrite``/``Redirect``/``HeaderRule.source`` is a ``PathPattern``
(``str(rule.source)`` is the text as written), ``LegacyRoute.pattern`` a ``RegexPattern`` (``src``
keeps the text). ``where`` is ``"<file>: <json path>"`` for messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnserve.project.pathpattern import PathPattern, RegexPattern

__all__ = [
    "FrozenMap", "Condition", "Rewrite", "Redirect", "HeaderRule", "LegacyRoute", "LegacyBuild",
    "FunctionConfig", "VercelConfig",
]


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable-free, picklable mapping (``MappingProxyType`` does not pickle, and
    a ``Config`` may cross a process boundary)."""

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __reduce__(self) -> tuple[type[FrozenMap], tuple[dict[str, Any]]]:
        return (FrozenMap, (self._data,))


@dataclass(frozen=True)
class Condition:
    """A ``has``/``missing`` item. ``type``: header|cookie|query|host; ``key``: the name (None
    for host); ``value``: a regex matched against the whole value, or None (presence is enough)."""

    type: str
    key: str | None
    value: str | None
    regex: re.Pattern[str] | None = None

    def test(self, actual: str | None) -> dict[str, str] | None:
        """``actual``: the request's header/cookie/query value (None when absent). Returns the
        named groups of ``value`` (params usable in the destination) when it holds, else None."""
        if actual is None:
            return None
        if self.regex is None:
            return {}
        found = self.regex.fullmatch(actual)
        return None if found is None else {k: v or "" for k, v in found.groupdict().items()}


@dataclass(frozen=True)
class Rewrite:
    """``rewrites[i]``: serve ``destination`` for ``source`` (URL unchanged for the client)."""

    source: PathPattern
    destination: str
    has: tuple[Condition, ...] = ()
    missing: tuple[Condition, ...] = ()
    where: str = ""  # "vercel.json: rewrites[0]"


@dataclass(frozen=True)
class Redirect:
    """``redirects[i]``: answer ``status_code`` with ``Location: destination``."""

    source: PathPattern
    destination: str
    status_code: int
    has: tuple[Condition, ...] = ()
    missing: tuple[Condition, ...] = ()
    where: str = ""


@dataclass(frozen=True)
class HeaderRule:
    """``headers[i]``: add ``headers`` (name, value) pairs to responses whose path matches."""

    source: PathPattern
    headers: tuple[tuple[str, str], ...]
    has: tuple[Condition, ...] = ()
    missing: tuple[Condition, ...] = ()
    where: str = ""


@dataclass(frozen=True)
class LegacyRoute:
    """Legacy ``routes[i]``: a regex ``src`` (``pattern``), ``dest`` with ``$1``, ``status``,
    ``headers``, ``methods`` (upper-case, None = all), ``continue_``, or a ``handle`` phase."""

    src: str | None
    pattern: RegexPattern | None
    dest: str | None = None
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    methods: tuple[str, ...] | None = None
    continue_: bool = False
    check: bool = False
    handle: str | None = None
    has: tuple[Condition, ...] = ()
    missing: tuple[Condition, ...] = ()
    where: str = ""


@dataclass(frozen=True)
class LegacyBuild:
    """Legacy ``builds[i]``: ``src`` glob and builder ``use`` (carried; fnserve detects itself)."""

    src: str
    use: str
    config: Mapping[str, Any] = field(default_factory=FrozenMap)


@dataclass(frozen=True)
class FunctionConfig:
    """``functions[glob]``: ``max_duration`` seconds, ``memory`` MB, ``include_files`` /
    ``exclude_files`` globs; None when not set. ``order``: position in the file."""

    glob: str
    max_duration: float | None = None
    memory: int | None = None
    include_files: str | None = None
    exclude_files: str | None = None
    runtime: str | None = None
    order: int = 0
    where: str = ""


@dataclass(frozen=True)
class VercelConfig:
    """Everything fnserve uses from ``vercel.json`` / ``edgeone.json``; empty when neither exists."""

    files: tuple[Path, ...] = ()
    functions: tuple[FunctionConfig, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    redirects: tuple[Redirect, ...] = ()
    headers: tuple[HeaderRule, ...] = ()
    routes: tuple[LegacyRoute, ...] = ()
    builds: tuple[LegacyBuild, ...] = ()
    clean_urls: bool = False
    trailing_slash: bool | None = None
    env: Mapping[str, str] = field(default_factory=FrozenMap)
    build_command: str | None = None
    install_command: str | None = None
    framework: str | None = None
    output_directory: str | None = None
    warnings: tuple[str, ...] = ()
