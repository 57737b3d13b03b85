"""The one rule for what an import is to the project (issue 12 item 2): ``ImportPath.resolve``.

An absolute import is searched along an import path the way Python's import system does: a
regular module or package (``x.py``, ``x/__init__.py``, an extension module) in any folder wins;
folders without ``__init__.py`` are namespace portions, which an installed package of the same
name shadows (PEP 420), so they are the project's only when an import reaches Python code inside
them (``is_local`` with the ``reached_namespaces`` of the imports considered together). Relative
imports are always local. ``Resolved.files`` are the project files the import runs (package
``__init__.py`` files included), what the hot-reload graph and the zygote preloads follow.

Each reader gives the import path that fits it: a function's own ``sys.path`` (import roots, then
the entry's folder) for zygote preloads; the union over all functions for the reload graph;
``project_import_path`` for the project as a whole (deps, which has no function list).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .importscan import ImportRef

#: Suffixes of modules Python can import besides ``.py`` (extension modules).
_EXTENSION_SUFFIXES = (".so", ".pyd")


@dataclass(frozen=True)
class Resolved:
    """What one import is for the project. ``kind``: ``"relative"``; ``"module"`` (a regular
    module or package of the project); ``"namespace"`` (only folders without ``__init__.py``:
    local if the import reaches into one, ``reaches``, or another import of the project does);
    ``"external"`` (stdlib or a distribution). ``files``: the project ``.py`` files importing it
    runs (absolute; package ``__init__.py`` files first)."""

    kind: str
    top: str
    files: tuple[Path, ...] = ()
    reaches: bool = False

    @property
    def local(self) -> bool:
        """Local on its own (a namespace import that reaches nothing may still be made local by
        others: use ``is_local``)."""
        return self.kind in ("relative", "module") or (self.kind == "namespace" and self.reaches)


def reached_namespaces(resolved: Iterable[Resolved]) -> frozenset[str]:
    """Top-level names of namespace folders that some of the ``resolved`` imports reach into."""
    return frozenset(r.top for r in resolved if r.kind == "namespace" and r.reaches)


def is_local(resolved: Resolved, reached: frozenset[str] = frozenset()) -> bool:
    """THE rule: the project serves this import itself (do not install it, do not preload it,
    follow its files). ``reached``: ``reached_namespaces`` of the imports considered together, so
    ``import app`` is local when ``from app.main import x`` is seen with ``app/`` a namespace folder."""
    return resolved.local or (resolved.kind == "namespace" and resolved.top in reached)


@dataclass(frozen=True)
class _Listing:
    """One folder: ``sources`` (stems of ``.py`` files), ``modules`` (those and extension
    modules), ``dirs`` (sub-folder names)."""

    sources: frozenset[str]
    modules: frozenset[str]
    dirs: frozenset[str]


class ImportPath:
    """The folders absolute imports are searched in, in ``sys.path`` order: ``front`` (import
    roots put before site-packages: project root, ``cloud-functions/``, ``src/``) and ``back``
    (folders appended after it: the entry file's own folder, for ``import sibling``). Folder
    listings are cached for the life of the object (make a new one per scan)."""

    def __init__(self, front: Iterable[Path], back: Iterable[Path] = ()) -> None:
        seen: dict[Path, None] = {}
        for folder in [*front, *back]:
            seen.setdefault(folder if isinstance(folder, Path) else Path(folder), None)
        self.folders = tuple(seen)
        self._listings: dict[Path, _Listing] = {}
        self._absolute: dict[tuple[str, tuple[str, ...]], Resolved] = {}

    def _listing(self, folder: Path) -> _Listing:
        """What ``folder`` holds (read once); empty when it cannot be read."""
        hit = self._listings.get(folder)
        if hit is None:
            sources: set[str] = set()
            extensions: set[str] = set()
            dirs: set[str] = set()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        try:
                            if entry.is_dir(follow_symlinks=True):
                                dirs.add(entry.name)
                            elif entry.name.endswith(".py"):
                                sources.add(entry.name[:-3])
                            elif entry.name.endswith(_EXTENSION_SUFFIXES):
                                extensions.add(entry.name.split(".", 1)[0])
                        except OSError:
                            continue
            except OSError:
                pass
            hit = self._listings[folder] = _Listing(frozenset(sources), frozenset(sources | extensions), frozenset(dirs))
        return hit

    def kind(self, folder: Path, name: str) -> str | None:
        """``"module"`` (``name.py`` / extension module), ``"package"`` (``name/__init__.py``),
        ``"folder"`` (a namespace portion) or None for what ``folder`` holds under ``name``."""
        listing = self._listing(folder)
        if name in listing.dirs and "__init__" in self._listing(folder / name).sources:
            return "package"  # a regular package wins over a module of the same name, as in Python
        if name in listing.modules:
            return "module"
        return "folder" if name in listing.dirs else None

    def top_level_names(self) -> frozenset[str]:
        """Names importable at top level from the path's folders: modules, packages and folders
        holding ``.py`` files directly (namespace portions)."""
        out: set[str] = set()
        for folder in self.folders:
            listing = self._listing(folder)
            out.update(listing.modules)
            for name in listing.dirs:
                if name.isidentifier() and (self.kind(folder, name) == "package" or self._holds_python(folder / name)):
                    out.add(name)
        return frozenset(out)

    def resolve(self, ref: ImportRef, file: Path) -> Resolved:
        """What ``ref``, written in ``file`` (absolute), imports (see ``Resolved``)."""
        parts = [p for p in ref.module.split(".") if p]
        if ref.level:
            base = file.parent
            for _ in range(ref.level - 1):
                base = base.parent
            found: list[Path] = []
            if self.kind(base.parent, base.name) == "package":
                found.append(base / "__init__.py")
            self._walk([base], parts, ref.names, found)
            return Resolved("relative", ref.top, tuple(dict.fromkeys(found)), True)
        return self.resolve_absolute(ref.module, ref.names)

    def resolve_absolute(self, module: str, names: tuple[str, ...] = ()) -> Resolved:
        """``resolve`` for ``import module`` / ``from module import names`` (level 0), which does
        not depend on the importing file; cached per ``(module, names)``."""
        hit = self._absolute.get((module, names))
        if hit is None:
            hit = self._absolute[(module, names)] = self._resolve_absolute([p for p in module.split(".") if p], names)
        return hit

    def _resolve_absolute(self, parts: list[str], names: tuple[str, ...]) -> Resolved:
        if not parts:
            return Resolved("external", "")
        top, rest = parts[0], parts[1:]
        portions: list[Path] = []
        for folder in self.folders:
            kind = self.kind(folder, top)
            if kind == "module":
                return Resolved("module", top, tuple(self._source(folder, top)), True)
            if kind == "package":
                found = [folder / top / "__init__.py"]
                self._walk([folder / top], rest, names, found)
                return Resolved("module", top, tuple(dict.fromkeys(found)), True)
            if kind == "folder":
                portions.append(folder / top)
        if not portions:
            return Resolved("external", top)
        found = []
        reaches = self._walk(portions, rest, names, found) and bool(rest or names)
        return Resolved("namespace", top, tuple(dict.fromkeys(found)), reaches)

    def _walk(self, folders: list[Path], parts: Sequence[str], names: Sequence[str], found: list[Path]) -> bool:
        """Follow dotted ``parts`` down from package ``folders`` (namespace portions: several),
        then ``names`` as possible submodules, appending the files run to ``found``. Returns
        whether the import reaches Python code: a module, a package, or a folder holding ``.py``
        files (False when a part is missing, or none of ``names`` is a submodule)."""
        packaged = False
        for part in parts:
            below: list[Path] = []
            packaged = False
            for folder in folders:
                kind = self.kind(folder, part)
                if kind == "module":
                    found.extend(self._source(folder, part))
                    return True  # a plain module: whatever follows is an attribute
                if kind == "package":
                    found.append(folder / part / "__init__.py")
                    below, packaged = [folder / part], True
                    break
                if kind == "folder":
                    below.append(folder / part)
            if not below:
                return False
            folders = below
        if not names:
            return packaged or any(self._holds_python(f) for f in folders)
        hit = False
        for name in names:
            for folder in folders:
                kind = self.kind(folder, name)
                if kind == "module":
                    found.extend(self._source(folder, name))
                elif kind == "package":
                    found.append(folder / name / "__init__.py")
                elif kind != "folder" or not self._holds_python(folder / name):
                    continue
                hit = True
        return hit

    def _source(self, folder: Path, name: str) -> list[Path]:
        """``[folder/name.py]`` if that file exists (not for an extension module)."""
        return [folder / f"{name}.py"] if name in self._listing(folder).sources else []

    def _holds_python(self, folder: Path) -> bool:
        return bool(self._listing(folder).sources)


def project_import_path(root: Path, files: Iterable[Path]) -> ImportPath:
    """The import path of a project as a whole, for readers without a function list (deps): the
    import roots a function can have (project root, ``cloud-functions/``, ``src/``), then the
    folder of every file in ``files`` (an entry's own folder is on its ``sys.path``)."""
    front = [root, *(root / name for name in ("cloud-functions", "src") if (root / name).is_dir())]
    return ImportPath(front, sorted({f.parent for f in files}))
