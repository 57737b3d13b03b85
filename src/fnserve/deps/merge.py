"""Merging declared and detected requirements by canonical name (SPEC §7, issue 5 item 2).

Rules:

- Names are compared with ``packaging.utils.canonicalize_name`` (``Flask`` = ``flask``,
  ``python_dateutil`` = ``python-dateutil``).
- Declared requirements of one name are combined: extras united, specifiers intersected. Entries
  whose marker is false for the target Python are kept for uv but left out of the conflict check.
- Two declared specifiers that cannot both hold (``flask==2.0`` vs ``flask>=3``; ``<2`` vs ``>=2``;
  two different URLs) raise ``DependencyError`` naming both ``file:line``.
- A detected import whose distribution is declared adds nothing (declared always wins); otherwise it
  becomes a bare requirement with source ``"detected in api/x.py:3"``. Optional imports (under
  ``except ImportError``) are reported, never installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from fnserve.deps.detect import DetectedImport
from fnserve.deps.mapping import ImportMap
from fnserve.deps.requirements_txt import SourcedRequirement
from fnserve.errors import DependencyError


@dataclass(frozen=True)
class ResolvedRequirement:
    """One line of the resolved set. ``name``: canonical; ``line``: what uv is given
    (``flask[async]>=3,<4``); ``sources``: every place it came from (``"requirements.txt:3"``,
    ``"detected in api/x.py:3"``); ``declared``: from a manifest; ``modules``: import names seen."""

    name: str
    line: str
    sources: tuple[str, ...]
    declared: bool
    modules: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class MergedSet:
    """``requirements``: what gets installed, sorted by name; ``constraints``: ``-c`` lines;
    ``optional``: detected optional imports (not installed); ``undeclared``: detected-only names."""

    requirements: tuple[ResolvedRequirement, ...]
    constraints: tuple[str, ...]
    optional: tuple[ResolvedRequirement, ...]

    @property
    def undeclared(self) -> tuple[ResolvedRequirement, ...]:
        return tuple(r for r in self.requirements if not r.declared)

    def lines(self) -> list[str]:
        """The requirement lines in a stable order (the env key is computed from these)."""
        return [r.line for r in self.requirements]


def merge(
    declared: Sequence[SourcedRequirement],
    constraints: Sequence[SourcedRequirement],
    detected: Iterable[DetectedImport],
    import_map: ImportMap,
    markers: Mapping[str, str] | None = None,
) -> MergedSet:
    """Merge (see module docstring). ``markers``: the target Python's marker environment.
    Raises ``DependencyError`` for conflicting declared specifiers."""
    groups: dict[str, list[SourcedRequirement]] = {}
    for item in declared:
        groups.setdefault(canonicalize_name(item.requirement.name), []).append(item)
    resolved: dict[str, ResolvedRequirement] = {}
    for name, items in groups.items():
        check_conflicts(name, items, markers)
        for line in _combine(items):
            key = name if name not in resolved else f"{name}#{len(resolved)}"
            resolved[key] = ResolvedRequirement(name, line, tuple(i.source for i in items), True)
    optional: dict[str, ResolvedRequirement] = {}
    for imp in detected:
        dist, _prefix = import_map.distribution_for(imp.module)
        if not dist:
            continue
        name = canonicalize_name(dist)
        where = f"detected in {imp.where}"
        target = optional if imp.optional else resolved
        if name in resolved:
            prev = resolved[name]
            if not prev.declared or imp.module not in prev.modules:
                resolved[name] = _add_detection(prev, where, imp.module)
            continue
        seen = target.get(name)
        target[name] = (_add_detection(seen, where, imp.module) if seen else
                        ResolvedRequirement(name, dist, (where,), False, (imp.module,), imp.optional))
    for name in resolved:
        optional.pop(name, None)
    return MergedSet(
        requirements=tuple(sorted(resolved.values(), key=lambda r: (r.name, r.line))),
        constraints=tuple(sorted({str(c.requirement) for c in constraints})),
        optional=tuple(sorted(optional.values(), key=lambda r: r.name)),
    )


def _add_detection(prev: ResolvedRequirement, where: str, module: str) -> ResolvedRequirement:
    sources = prev.sources if prev.declared else prev.sources + (where,)
    modules = prev.modules if module in prev.modules else prev.modules + (module,)
    return ResolvedRequirement(prev.name, prev.line, sources, prev.declared, modules, prev.optional)


def _combine(items: Sequence[SourcedRequirement]) -> list[str]:
    """One line per distinct marker: extras united, specifiers intersected, the URL kept."""
    by_marker: dict[str, list[Requirement]] = {}
    for item in items:
        by_marker.setdefault(str(item.requirement.marker or ""), []).append(item.requirement)
    lines = []
    for marker, reqs in by_marker.items():
        first = reqs[0]
        extras = sorted(set().union(*(r.extras for r in reqs)))
        url = next((r.url for r in reqs if r.url), None)
        spec = SpecifierSet()
        for r in reqs:
            spec &= r.specifier
        text = first.name + (f"[{','.join(extras)}]" if extras else "")
        text += f" @ {url}" if url else str(spec)
        if marker:
            text += f" ; {marker}"
        lines.append(text)
    return lines


def check_conflicts(
    name: str, items: Sequence[SourcedRequirement], markers: Mapping[str, str] | None
) -> None:
    """Raise ``DependencyError`` when two applicable declarations of ``name`` cannot both hold."""
    live = [i for i in items if _applies(i.requirement, markers)]
    for a_index, a in enumerate(live):
        for b in live[a_index + 1:]:
            ra, rb = a.requirement, b.requirement
            if ra.url and rb.url and ra.url != rb.url:
                _conflict(name, a, b, "two different URLs")
            if not ra.url and not rb.url and not satisfiable(ra.specifier & rb.specifier):
                _conflict(name, a, b, "no version satisfies both")


def _applies(req: Requirement, markers: Mapping[str, str] | None) -> bool:
    if req.marker is None or markers is None:
        return True
    try:
        return req.marker.evaluate({**markers, "extra": ""})
    except Exception:  # an unknown marker variable: keep it in the check
        return True


def _conflict(name: str, a: SourcedRequirement, b: SourcedRequirement, why: str) -> None:
    raise DependencyError(
        f"conflicting requirements for {name}: {a.requirement} ({a.source}) and "
        f"{b.requirement} ({b.source}): {why}",
        f"make {a.file} and {b.file} agree on {name}",
    )


def satisfiable(spec: SpecifierSet) -> bool:
    """Heuristic: is there a version in ``spec``? Tries every version the specifiers mention and
    its neighbours (next micro/minor/major, a ``.1`` sub-release, pre/post forms); exact for pins,
    disjoint bounds and ``!=`` exclusions, which is what real manifests contain."""
    if not len(spec):
        return True
    candidates: set[str] = {"0", "0.0.1", "9999"}
    for s in spec:
        raw = s.version.rstrip(".*").rstrip(".")
        try:
            v = Version(raw)
        except InvalidVersion:
            return True  # arbitrary equality (===) or odd strings: let uv decide
        r = list(v.release) + [0] * (3 - len(v.release))
        candidates.update({
            str(v), f"{raw}.1", f"{raw}.0.1", f"{r[0]}.{r[1]}.{r[2] + 1}", f"{r[0]}.{r[1] + 1}",
            f"{r[0] + 1}", f"{raw}.post1", f"{raw}rc1", f"{raw}.dev0",
        })
        if r[-1] > 0 or r[1] > 0:
            prev = [x for x in r]
            for i in range(len(prev) - 1, -1, -1):
                if prev[i] > 0:
                    prev[i] -= 1
                    break
            candidates.add(".".join(map(str, prev)) + ".9999")
    for text in candidates:
        try:
            if spec.contains(Version(text), prereleases=True):
                return True
        except InvalidVersion:
            continue
    return False
