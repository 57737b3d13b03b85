"""Every ``SPEC §N`` / ``SPEC §N.M`` the code cites is a section heading of docs/SPEC.md, so
the citations in docstrings, comments and ``--help`` texts keep pointing at something."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "docs" / "SPEC.md"

#: ``SPEC §1–§3, §8.3``, ``SPEC §8.2/8.3``, ``SPEC §5/§9``: the run of section numbers after "SPEC".
_CITATION = re.compile(r"SPEC\s+§\d+(?:\.\d+)?(?:\s*(?:,|/|–|-|and)\s*§?\d+(?:\.\d+)?)*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_RANGE = re.compile(r"§(\d+)\s*[–-]\s*§?(\d+)(?!\.)")
_HEADING = re.compile(r"^#{2,4}\s+(\d+(?:\.\d+)?)\.?\s", re.MULTILINE)


def cited_sections(text: str) -> set[str]:
    """Section numbers cited in ``text``; a range ``§1–§3`` cites every section in it."""
    found: set[str] = set()
    for citation in _CITATION.findall(text):
        found.update(_NUMBER.findall(citation))
        for low, high in _RANGE.findall(citation):
            found.update(str(n) for n in range(int(low), int(high) + 1))
    return found


def spec_headings() -> set[str]:
    return set(_HEADING.findall(SPEC.read_text(encoding="utf-8")))


def citations() -> dict[str, list[str]]:
    """Section number → files (repo-relative) that cite it, over src/, tests/, bench/ and docs/."""
    out: dict[str, list[str]] = {}
    files = [p for folder in ("src", "tests", "bench", "docs") for p in sorted((REPO / folder).rglob("*"))]
    for path in files:
        if path.suffix not in (".py", ".md") or path == SPEC or "projects" in path.relative_to(REPO).parts:
            continue
        for number in cited_sections(path.read_text(encoding="utf-8", errors="replace")):
            out.setdefault(number, []).append(path.relative_to(REPO).as_posix())
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(SPEC §3.5: 504)", {"3.5"}),
        ("SPEC §1–§3, §8.3", {"1", "2", "3", "8.3"}),
        ("SPEC §8.2/§8.3 and SPEC §5/§9", {"8.2", "8.3", "5", "9"}),
        ("SPEC §8.2/8.3", {"8.2", "8.3"}),
        ("SPEC §3.3 step 1/4", {"3.3"}),
        ("PEP 3333 §environ, RFC 9112 §6.3", set()),
    ],
)
def test_citation_parsing(text: str, expected: set[str]) -> None:
    assert cited_sections(text) == expected


def test_spec_has_numbered_headings() -> None:
    headings = spec_headings()
    assert {"1", "2", "2.1", "3", "3.1", "3.5", "4", "9"} <= headings


def test_every_citation_in_the_code_is_a_spec_heading() -> None:
    cited = citations()
    assert len(cited) >= 15, cited  # the code cites most sections: the scan must have found them
    missing = {number: files for number, files in cited.items() if number not in spec_headings()}
    assert not missing, f"cited but not a heading in docs/SPEC.md: {missing}"
