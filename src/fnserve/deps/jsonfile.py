"""The JSON state files of the dependency step (``.fnserve/imports.json``, ``pythons.json``, an
env's marker): read as one object, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json_object(path: Path | None) -> dict[str, Any]:
    """The JSON object in ``path``; {} when ``path`` is None, missing, unreadable, not JSON or
    not an object (a state file is a cache: a bad one is rebuilt, never an error)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and ``os.replace`` (readers
    never see half a file), creating the folder. Raises ``OSError`` (read-only project, ...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
