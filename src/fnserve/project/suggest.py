""""Did you mean" for unknown keys in vercel.json, edgeone.json and ``[tool.fnserve]`` (difflib).

``unknown_key(source, path, key, known, allowed)`` is the one ``ConfigError`` for an unknown key:
``problem`` stays ``"unknown key"`` and ``allowed`` lists the keys; the hint puts the closest
known key first (``did you mean 'rewrites'? allowed: one of: ...``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from fnserve.errors import ConfigError

__all__ = ["closest", "unknown_key"]


def _norm(key: str) -> str:
    """``maxDuration`` / ``max-duration`` / ``max_duration`` → ``maxduration`` (case and separators
    do not count against a suggestion)."""
    return re.sub(r"[-_]", "", key).lower()


def closest(key: str, known: Iterable[str]) -> str | None:
    """The known key most like ``key`` (difflib ratio >= 0.6 on the normalised spelling), or None."""
    by_norm = {_norm(k): k for k in known}
    found = difflib.get_close_matches(_norm(key), list(by_norm), n=1, cutoff=0.6)
    return by_norm[found[0]] if found else None


def unknown_key(source: str, path: str, key: str, known: Iterable[str], allowed: str) -> ConfigError:
    """The ``ConfigError`` for ``key`` (found at JSON path or table key ``path`` of ``source``)
    that is not one of ``known``; ``allowed`` is the text listing them."""
    error = ConfigError(source, path, "unknown key", allowed)
    guess = closest(key, known)
    if guess is not None:
        error.hint = f"did you mean {guess!r}? allowed: {allowed}"
    return error
