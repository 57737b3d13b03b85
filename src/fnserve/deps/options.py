"""The settings the dependency step reads, as one frozen value (STYLE: one Config passed down).

``DepsOptions.from_config(config, environ)`` adapts fnserve's ``Config`` (``fnserve.config``):
``detect_imports``, ``install``, ``python`` and the ``[tool.fnserve.import-map]`` table (attribute
``import_map``). ``environ`` is read once by the caller (the CLI or the dev server) and carried
here; nothing below reads ``os.environ``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fnserve.config import Config


@dataclass(frozen=True)
class DepsOptions:
    """``detect_imports``: scan imports (SPEC §7; ``detect-imports = false`` turns it off);
    ``install``: create/refresh the env (False: plan only); ``python``: an explicit version
    (``"3.12"``) or interpreter path overriding the project's requests; ``import_map``: import name
    → distribution overrides; ``environ``: the process environment (``PATH``, ``HOME``,
    ``PYENV_ROOT``, ``UV_CACHE_DIR``...); ``uv_binary``: uv to run (default: the ``uv`` package's);
    ``uv_cache_dir``: ``--cache-dir`` for uv; ``state_dir``: default ``<project>/.fnserve``;
    ``keep_envs``: completed envs kept per project (the current one and its predecessors);
    ``python_fallback``: when no Python satisfies the project's request and uv cannot fetch one,
    build the env with the nearest installed Python (``PythonChoice.warning``) instead of raising
    ``DependencyError`` (``fnserve dev`` sets it; ``fnserve start --python-fallback``)."""

    detect_imports: bool = True
    install: bool = True
    python: str | None = None
    import_map: Mapping[str, str] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    uv_binary: str | None = None
    uv_cache_dir: Path | None = None
    state_dir: Path | None = None
    keep_envs: int = 3
    python_fallback: bool = False

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None, **changes: object) -> DepsOptions:
        """Read the dependency settings off a ``fnserve.config.Config`` (``detect_imports``,
        ``install``, ``python``, ``python_fallback``, ``import_map``); ``environ``: the process environment, read once
        by the caller. ``changes`` override fields."""
        values: dict[str, object] = {
            "detect_imports": config.detect_imports,
            "install": config.install,
            "python": config.python or None,
            "python_fallback": config.python_fallback,
            "import_map": dict(config.import_map),
            "environ": dict(environ or {}),
        }
        values.update(changes)
        return cls(**values)  # type: ignore[arg-type]


def as_options(value: object, environ: Mapping[str, str] | None = None) -> DepsOptions:
    """Accept ``DepsOptions``, a ``Config`` or None (defaults, with ``environ``)."""
    if isinstance(value, DepsOptions):
        return value
    if value is None:
        return DepsOptions(environ=dict(environ or {}))
    from fnserve.config import Config

    if not isinstance(value, Config):
        raise TypeError(f"expected DepsOptions, Config or None, got {type(value).__name__}")
    return DepsOptions.from_config(value, environ)
