"""Render a template for a layout and write it into a folder (``fnserve init``).

Template files are package data (``templates/<name>/**`` and ``templates/_common/**``, each
ending ``.tmpl``). Path parts and contents may hold placeholders:

=================  =========================================  ==============================
placeholder        vercel layout                              edgeone layout
=================  =========================================  ==============================
``{{fn}}``         ``api`` (path part)                        ``cloud-functions/api``
``{{lib}}``        (dropped: helper packages at the root)     ``cloud-functions``
``{{catchall}}``   ``[...path]`` (one or more segments)       ``[[path]]`` (zero or more)
``{{route}}``      ``/api``: the URL of the functions folder  ``/api``
``{{api}}``        ``/api``: what apps see before their paths ``""`` (EdgeOne strips it)
``{{mount}}``      per function file: its own route           ``""``
=================  =========================================  ==============================

plus ``{{name}}``, ``{{ident}}``, ``{{template}}``, ``{{layout}}`` and the README/index fields.
A file name starting ``dot-`` is written with a leading ``.``.

Writing (``write_project``) never loses a file: into a folder that has anything but ``.git`` it
refuses (``InitError``) unless ``force``; with ``force`` an existing file is **kept** and named in
``InitResult.kept`` — except ``.gitignore``, to which the missing ``.fnserve/`` line is appended
(``InitResult.appended``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from fnserve.errors import FnserveError
from fnserve.init.catalog import LAYOUTS, TEMPLATES, Template

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = ["InitError", "InitResult", "render", "write_project"]

_COMMON = "_common"
_SUFFIX = ".tmpl"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_FOLDERS = {"vercel": ("api", ""), "edgeone": ("cloud-functions/api", "cloud-functions")}
_CATCHALL = {"vercel": "[...path]", "edgeone": "[[path]]"}
_LAYOUT_NOTE = {
    "vercel": "Vercel layout: every `.py` file under `api/` is a function; its route is its path "
              "(`api/hello.py` → `/api/hello`, `[id]` matches one segment, `[...path]` the rest). "
              "Frameworks see the full request path. Static files come from `public/`.",
    "edgeone": "EdgeOne Pages layout: every `.py` file under `cloud-functions/` is a function; its route "
               "is its path below that folder (`cloud-functions/api/hello.py` → `/api/hello`, `[[path]]` "
               "matches any rest). Frameworks see the path below their route. Static files come from `public/`.",
}


class InitError(FnserveError):
    """``fnserve init`` cannot write the project: unknown template or layout, a non-empty folder
    without ``--force``, or a path that is not a folder. Exit code 2."""


@dataclass
class InitResult:
    """What ``write_project`` did: project-relative POSIX paths ``written`` (new files),
    ``kept`` (existed; left as they were), ``appended`` (existing ``.gitignore`` given the
    ``.fnserve/`` line)."""

    root: Path
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)


def _walk(node: Traversable, prefix: PurePosixPath) -> Iterator[tuple[PurePosixPath, Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            yield from _walk(child, prefix / child.name)
        elif child.name.endswith(_SUFFIX):
            yield prefix / child.name[: -len(_SUFFIX)], child


def _fill(text: str, values: dict[str, str], where: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template file {where}: unknown placeholder {m.group(0)}")
        return values[m.group(1)]

    return _PLACEHOLDER.sub(one, text)


def _target_path(raw: PurePosixPath, values: dict[str, str]) -> str:
    parts: list[str] = []
    for part in raw.parts:
        filled = _fill(part, values, str(raw))
        if filled.startswith("dot-"):
            filled = "." + filled[4:]
        parts.extend(p for p in filled.split("/") if p)
    return "/".join(parts)


def _mount(rel: str, layout: str) -> str:
    """The route of the function file ``rel`` in the vercel layout (what its app sees as its own
    path), ``""`` in the edgeone layout (the platform strips it)."""
    if layout != "vercel":
        return ""
    route = "/" + rel.removesuffix(".py")
    return route.removesuffix("/index") or "/"


def render(template: Template, layout: str, name: str) -> dict[str, str]:
    """The files of ``template`` in ``layout`` for a project called ``name``: project-relative
    POSIX path → text. Raises ``InitError`` for a layout the template does not support."""
    if layout not in template.layouts:
        raise InitError(f"template {template.name!r} has no {layout} layout",
                        f"use --layout {' or '.join(template.layouts)}")
    fn, lib = _FOLDERS[layout]
    links = "\n".join(f'    <li><a href="{p.path}"><code>{p.path}</code></a></li>' for p in template.probes)
    values = {
        "fn": fn, "lib": lib, "catchall": _CATCHALL[layout], "route": "/api",
        "api": "/api" if layout == "vercel" else "", "name": name,
        "ident": re.sub(r"\W", "_", name).strip("_") or "app", "template": template.name, "layout": layout,
        "summary": template.summary, "about": template.about, "layout_note": _LAYOUT_NOTE[layout],
        "requirements": "\n".join(template.requirements) or "# (none yet: the handler classes use the standard library)",
        "links": links,
    }
    base = resources.files("fnserve.init") / "templates"
    sources = {_target_path(raw, values): source
               for raw, source in [*_walk(base / template.name, PurePosixPath()), *_walk(base / _COMMON, PurePosixPath())]}
    readme = {
        "files": "\n".join(f"- `{rel}`" for rel in sorted(sources) if not rel.startswith(".")),
        "links": "\n".join(f"- http://127.0.0.1:3000{p.path}" for p in template.probes),
    }
    files: dict[str, str] = {}
    for rel, source in sources.items():
        own = {"mount": _mount(rel, layout) if rel.startswith(fn + "/") else ""}
        if rel == "README.md":
            own.update(readme)
        files[rel] = _fill(source.read_text(encoding="utf-8"), {**values, **own}, rel)
    return files


def _occupied(root: Path) -> list[str]:
    """The entries of ``root`` that make it "not empty" (anything but ``.git``)."""
    return sorted(p.name for p in root.iterdir() if p.name != ".git")


def write_project(root: Path, template_name: str, layout: str | None = None, *, force: bool = False) -> InitResult:
    """Write template ``template_name`` (a key of ``TEMPLATES``) in ``layout`` (default: the
    template's first) into folder ``root`` (created when missing). Returns what was written,
    kept and appended (see the module docstring). Raises ``InitError`` for an unknown template
    or layout, when ``root`` is a file, or when it is not empty and ``force`` is False."""
    template = TEMPLATES.get(template_name)
    if template is None:
        raise InitError(f"unknown template {template_name!r}", f"choose one of: {', '.join(TEMPLATES)} "
                        "(fnserve init --list describes them)")
    layout = layout or template.layouts[0]
    if layout not in LAYOUTS:
        raise InitError(f"unknown layout {layout!r}", f"use --layout {' or '.join(LAYOUTS)}")
    if root.exists() and not root.is_dir():
        raise InitError(f"{root} is a file, not a folder", "give a new or existing folder as DIR")
    files = render(template, layout, root.resolve().name)
    if root.is_dir() and not force:
        found = _occupied(root)
        if found:
            shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
            raise InitError(f"{root} is not empty ({shown})",
                            "use an empty or new folder, or pass --force to add the template's files "
                            "(existing files are kept as they are and listed)")
    result = InitResult(root=root)
    for rel, text in sorted(files.items()):
        path = root / rel
        if path.exists():
            if rel == ".gitignore" and ".fnserve/" not in path.read_text(encoding="utf-8", errors="replace").split():
                with path.open("a", encoding="utf-8") as out:
                    out.write(("" if path.read_text(encoding="utf-8", errors="replace").endswith("\n") else "\n")
                              + "# fnserve's own folder\n.fnserve/\n")
                result.appended.append(rel)
            else:
                result.kept.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        result.written.append(rel)
    return result
