"""The pure project model (SPEC §1–§3, §8.3): reads files, parses them with ``ast``, imports no
user code, opens no socket.

Public API: ``load_project(root, *, entrypoint=None, framework=None) -> Project``, the value types
of ``fnserve.project.types``, ``RouteTable`` and, for reuse by ``deps``/``build``,
``fnserve.project.layout.EXCLUDED_DIRS`` and ``iter_python_files``.
"""

from __future__ import annotations

from .layout import EXCLUDED_DIRS, iter_python_files
from .matcher import RouteTable
from .model import Project, load_project
from .types import Entry, EntryKind, Function, HelperModule, Layout, Problem, Route, RouteMatch, Segment

__all__ = [
    "EXCLUDED_DIRS",
    "Entry",
    "EntryKind",
    "Function",
    "HelperModule",
    "Layout",
    "Problem",
    "Project",
    "Route",
    "RouteMatch",
    "RouteTable",
    "Segment",
    "iter_python_files",
    "load_project",
]
