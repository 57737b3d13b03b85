"""``.env`` files: the variables a function process gets (SPEC §5), parsed with python-dotenv.

Order, later wins: ``vercel.json`` ``env`` (the committed project config, lowest), then ``.env``,
``.env.local``, then the mode's files — in ``dev``: ``.env.development``,
``.env.development.local``; in ``start``/``build``: ``.env.production``,
``.env.production.local`` — then the extra files given with ``--env-file`` (``extra``), in
order. Local files beat the committed ``vercel.json`` ``env`` because they
carry the developer's (or the machine's) own values, as with ``vercel dev``.

``${NAME}`` and ``${NAME:-default}`` are interpolated by fnserve (not by python-dotenv, whose
interpolation reads ``os.environ``): from the variables merged so far, then from ``environ`` (the
base environment given by the caller). A name without a value (``FOO`` alone) is skipped.
These files are loaded into each **function's** environment only, never into fnserve's own, and
``os.environ`` is never read or written here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from dotenv import dotenv_values

__all__ = ["env_file_names", "load_env_files"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def env_file_names(mode: str) -> tuple[str, ...]:
    """The ``.env`` file names read for ``mode`` ("dev", "start" or "build"), lowest first."""
    stage = "development" if mode == "dev" else "production"
    return (".env", ".env.local", f".env.{stage}", f".env.{stage}.local")


def load_env_files(
    project_dir: Path,
    mode: str = "dev",
    base: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    extra: Sequence[Path] = (),
) -> tuple[dict[str, str], tuple[Path, ...]]:
    """Merge ``base`` (vercel.json ``env``), the project's ``.env`` files for ``mode``, then the
    ``extra`` files (absolute paths, applied in order after the standard ones; later wins).

    Returns ``(variables, files_read)``; ``files_read`` lists the existing files in the order
    applied. ``environ`` is only used to resolve ``${NAME}`` references. Unreadable or malformed
    lines are skipped by python-dotenv (it warns on its own logger)."""
    merged: dict[str, str] = dict(base or {})
    read: list[Path] = []
    for path in [*(project_dir / name for name in env_file_names(mode)), *extra]:
        if not path.is_file():
            continue
        read.append(path)
        for key, value in dotenv_values(path, interpolate=False).items():
            if value is None:
                continue
            merged[key] = _interpolate(value, merged, environ or {})
    return merged, tuple(read)


def _interpolate(value: str, merged: Mapping[str, str], environ: Mapping[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        found = merged.get(name, environ.get(name))
        return found if found else (default or "")

    return _VAR.sub(repl, value)
