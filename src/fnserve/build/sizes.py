"""The size report of a build (SPEC §8.2, issue 11 item 4): ``report.json`` and the terminal.

Per function: its total bytes (its project files + its environment's site-packages), the largest
contributors (packages of the env, files of the project) and a warning naming them when the total
is over ``SIZE_LIMIT`` (Vercel's 250 MB for a Python function bundle, uncompressed), plus what its
``excludeFiles`` removed. Sizes are apparent sizes (``st_size``), as Vercel counts them: a sparse
file counts fully.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIZE_LIMIT = 250 * 1024 * 1024  # bytes: Vercel's limit for one function (uncompressed)
TOP = 5  # contributors listed per kind
_DIST = re.compile(r"^(.+?)-[^-]+\.(dist-info|egg-info)$")


def tree_bytes(path: Path) -> int:
    """Apparent size of a file or of every file under a folder (symlinks not followed), bytes."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def package_sizes(site_packages: Path) -> dict[str, int]:
    """Bytes per distribution-ish name of a site-packages folder: each top-level entry, with
    ``name-1.0.dist-info`` counted under ``name`` (lower case, ``-``→``_``)."""
    sizes: dict[str, int] = {}
    for entry in site_packages.iterdir():
        match = _DIST.match(entry.name)
        base = match.group(1) if match else entry.name.split(".")[0] if entry.is_file() else entry.name
        name = base.lower().replace("-", "_")
        sizes[name] = sizes.get(name, 0) + tree_bytes(entry)
    return sizes


def human(size: int) -> str:
    """``1536`` → ``"1.5 KB"`` (powers of 1024)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


@dataclass(frozen=True)
class FunctionSize:
    """``files_bytes``: its project files; ``env_bytes``: its env; ``largest``: ``(kind, name,
    bytes)`` with kind "package" or "file", largest first; ``excluded``: files its
    ``excludeFiles`` removed, with their bytes."""

    id: str
    files_bytes: int
    env_bytes: int
    largest: tuple[tuple[str, str, int], ...]
    excluded: tuple[tuple[str, int], ...] = ()

    @property
    def total(self) -> int:
        return self.files_bytes + self.env_bytes

    @property
    def over_limit(self) -> bool:
        return self.total > SIZE_LIMIT

    def warning(self) -> str | None:
        """The warning line naming the largest contributors, or None under the limit."""
        if not self.over_limit:
            return None
        names = ", ".join(f"{name} ({human(size)})" for _kind, name, size in self.largest)
        return (f"{self.id} is {human(self.total)}, over Vercel's {human(SIZE_LIMIT)} function limit; largest: "
                f"{names}. Remove unused packages or add an excludeFiles glob for this function in vercel.json")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "bytes": self.total, "files_bytes": self.files_bytes, "env_bytes": self.env_bytes,
                "over_limit": self.over_limit, "limit_bytes": SIZE_LIMIT,
                "largest": [{"kind": k, "name": n, "bytes": b} for k, n, b in self.largest],
                "excluded_files": [{"file": f, "bytes": b} for f, b in self.excluded],
                "warning": self.warning()}


def function_size(function_id: str, files: Mapping[str, int], packages: Mapping[str, int],
                  excluded: Iterable[tuple[str, int]] = ()) -> FunctionSize:
    """``files``: project file → bytes of this function; ``packages``: its env's package sizes."""
    ranked = sorted([("package", n, b) for n, b in packages.items()] + [("file", n, b) for n, b in files.items()],
                    key=lambda item: (-item[2], item[1]))
    return FunctionSize(function_id, sum(files.values()), sum(packages.values()), tuple(ranked[:TOP]),
                        tuple(sorted(excluded, key=lambda item: -item[1])))


def render_text(sizes: Iterable[FunctionSize]) -> str:
    """The terminal table: one line per function (total, files, env), its top contributors, warnings."""
    lines = ["function sizes (project files + dependencies):"]
    for size in sizes:
        top = ", ".join(f"{name} {human(b)}" for _kind, name, b in size.largest[:3])
        lines.append(f"  {size.id:<32} {human(size.total):>9}  (files {human(size.files_bytes)}, "
                     f"deps {human(size.env_bytes)}; largest: {top or '-'})")
        warning = size.warning()
        if warning:
            lines.append(f"  warning: {warning}")
    return "\n".join(lines)
