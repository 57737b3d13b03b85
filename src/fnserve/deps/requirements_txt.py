"""``requirements.txt`` parsing (pip's format, the subset that matters for serverless projects).

Handled: comments (``#`` at line start or after whitespace), ``\\`` line continuations, ``-r`` /
``--requirement`` (relative to the including file), ``-c`` / ``--constraint``, ``-i`` /
``--index-url``, ``--extra-index-url``, ``-f`` / ``--find-links``, ``--pre``, markers, extras,
``name @ url`` and bare URLs with ``#egg=name``, ``-e`` of a URL (installed non-editable).
Other options (``--hash`` per line, ``--trusted-host``, ...) are ignored. Raises ``DependencyError``
naming ``file:line`` for a line that is not a valid requirement, and for include cycles.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from fnserve.errors import DependencyError

_EGG = re.compile(r"#egg=([A-Za-z0-9_.\-\[\],]+)")
_COMMENT = re.compile(r"(^|\s)#.*$")
_URL_SCHEMES = ("http://", "https://", "git+", "hg+", "svn+", "bzr+", "file:")


@dataclass(frozen=True)
class SourcedRequirement:
    """A requirement and where it was written. ``source``: ``"requirements.txt:3"`` (project-relative
    file and 1-based line) or ``"detected in api/x.py:3"``; ``line_text``: the text as given."""

    requirement: Requirement
    source: str
    declared: bool = True

    @property
    def file(self) -> str:
        return self.source.rsplit(":", 1)[0]


@dataclass
class ParsedRequirements:
    """What a requirements file (and its includes) contributed. Mutable while parsing only."""

    requirements: list[SourcedRequirement] = field(default_factory=list)
    constraints: list[SourcedRequirement] = field(default_factory=list)
    index_args: list[str] = field(default_factory=list)  # passed to uv as is
    files: list[Path] = field(default_factory=list)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join ``\\`` continuations; strip comments. Returns ``(first_line_number, text)`` pairs."""
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not buf:
            start = number
        line = raw.rstrip()
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        stripped = _COMMENT.sub("", buf).strip()
        if stripped:
            out.append((start, stripped))
        buf = ""
    if buf.strip():
        out.append((start, _COMMENT.sub("", buf).strip()))
    return out


def parse_requirement_line(text: str, where: str) -> Requirement:
    """One requirement specifier: PEP 508 (``flask[async]>=3; python_version>'3.8'``), ``name @ url``,
    or a bare URL carrying ``#egg=name``. Raises ``DependencyError`` naming ``where``."""
    text = text.split(" --hash", 1)[0].strip()
    if text.startswith(_URL_SCHEMES):
        egg = _EGG.search(text)
        if not egg:
            raise DependencyError(
                f"{where}: URL requirement without a name: {text}",
                "write it as `name @ URL` or add `#egg=name`",
            )
        text = f"{egg.group(1)} @ {text}"
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise DependencyError(f"{where}: not a valid requirement: {text!r} ({exc})",
                              "fix the line or remove it") from exc


def parse_requirements_file(
    path: Path, root: Path, result: ParsedRequirements | None = None, *, constraint: bool = False,
    _stack: tuple[Path, ...] = (),
) -> ParsedRequirements:
    """Parse ``path`` (and its ``-r``/``-c`` includes) into ``result``. ``root``: the project folder,
    for project-relative sources. ``constraint``: lines go to ``result.constraints``."""
    result = result if result is not None else ParsedRequirements()
    path = path.resolve()
    if path in _stack:
        raise DependencyError(f"{_rel(path, root)}: -r include cycle", "remove the circular -r line")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        where = _rel(_stack[-1], root) if _stack else _rel(path, root)
        raise DependencyError(f"{where}: cannot read {path}: {exc.strerror}",
                              "fix the -r/-c path") from exc
    result.files.append(path)
    rel = _rel(path, root)
    for number, line in _logical_lines(text):
        where = f"{rel}:{number}"
        if line.startswith("-"):
            _option(line, path, root, result, where, constraint, _stack + (path,))
            continue
        req = parse_requirement_line(line, where)
        target = result.constraints if constraint else result.requirements
        target.append(SourcedRequirement(req, where))
    return result


def _option(line: str, path: Path, root: Path, result: ParsedRequirements, where: str,
            constraint: bool, stack: tuple[Path, ...]) -> None:
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    opt, _, inline = words[0].partition("=")
    value = inline or (words[1] if len(words) > 1 else "")
    if opt in ("-r", "--requirement") or (opt.startswith("-r") and len(opt) > 2 and not inline):
        value = value if opt in ("-r", "--requirement") else opt[2:]
        parse_requirements_file(path.parent / value, root, result, constraint=constraint, _stack=stack)
    elif opt in ("-c", "--constraint"):
        parse_requirements_file(path.parent / value, root, result, constraint=True, _stack=stack)
    elif opt in ("-i", "--index-url", "--extra-index-url", "-f", "--find-links"):
        long = {"-i": "--index-url", "-f": "--find-links"}.get(opt, opt)
        if opt in ("-f", "--find-links") and not value.startswith(_URL_SCHEMES):
            value = str((path.parent / value).resolve())
        result.index_args += [long, value]
    elif opt == "--pre":
        result.index_args.append("--prerelease=allow")
    elif opt in ("-e", "--editable"):
        req = parse_requirement_line(value, where)
        (result.constraints if constraint else result.requirements).append(SourcedRequirement(req, where))
    # anything else (--hash, --trusted-host, --no-binary, ...) is ignored on purpose


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
