"""Where a worker's bytecode goes (stdlib only, Python 3.9+).

Workers and zygotes start with ``-X pycache_prefix=<project>/.fnserve/pycache`` so that the
bytecode of the project's own modules never lands beside the user's files (issue 10 item 14).
That option alone applies to EVERY module: the standard library and the function env's packages
would be compiled from source into the prefix once per project, ignoring the ``__pycache__``
they already have (a fresh project's first FastAPI import took ~0.7 s more and ~4 MB more
memory). ``keep_installed_bytecode_in_place()`` narrows the prefix to what is not part of an
installation: a source under ``sys.prefix``, ``sys.base_prefix``, ``sys.exec_prefix`` or
``sys.base_exec_prefix`` (the standard library and the env's site-packages) keeps its bytecode
in its own ``__pycache__`` (PEP 3147), every other source (the project) goes to the prefix
(the layout of ``sys.pycache_prefix``, Python 3.8+).
"""

import os
import sys
from typing import Any, Optional

__all__ = ["keep_installed_bytecode_in_place"]


def keep_installed_bytecode_in_place() -> None:
    """Install the narrowed ``cache_from_source`` (module docstring) in this process; a no-op
    when no ``pycache_prefix`` is set or it is already installed. Forked children inherit it."""
    import importlib._bootstrap_external as external  # the loaders look the function up here

    original = external.cache_from_source
    if sys.pycache_prefix is None or getattr(original, "fnserve_narrowed", False):
        return
    installed = tuple(sorted({os.path.join(os.path.abspath(p), "") for p in
                              (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}))

    def cache_from_source(path: str, debug_override: Any = None, *, optimization: Optional[Any] = None) -> str:
        cached: str = original(path, debug_override, optimization=optimization)
        if os.path.abspath(path).startswith(installed):
            return os.path.join(os.path.dirname(path), "__pycache__", os.path.basename(cached))
        return cached

    cache_from_source.fnserve_narrowed = True  # type: ignore[attr-defined]
    # typeshed declares it with overloads; the replacement takes the same arguments
    external.cache_from_source = cache_from_source  # type: ignore[assignment]
    util = sys.modules.get("importlib.util")  # it holds its own reference (for callers, not loaders)
    if util is not None and getattr(util, "cache_from_source", None) is original:
        util.cache_from_source = cache_from_source  # type: ignore[attr-defined]  # typeshed re-exports it by name only
