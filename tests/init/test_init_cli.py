"""Issue 13 item 1: ``fnserve init`` writes a template, lists them, and never loses a file."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fnserve.cli import main
from fnserve.init import LAYOUTS, TEMPLATES, InitError, render, write_project


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["init", *args])
    return result.exit_code, result.output


def test_list_shows_every_template() -> None:
    code, out = run("--list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == ["handler", "flask", "fastapi", "django", "sanic", "mixed"]
    assert "catch-all" in out and "[vercel, edgeone]" in out


@pytest.mark.parametrize(("name", "layout"), [(n, lay) for n in TEMPLATES for lay in LAYOUTS])
def test_every_template_has_the_common_files(name: str, layout: str) -> None:
    files = render(TEMPLATES[name], layout, "demo")
    assert {".gitignore", "README.md", "requirements.txt", "public/index.html"} <= set(files)
    assert ".fnserve/" in files[".gitignore"].split()
    for command in ("fnserve dev", "fnserve start", "fnserve build"):
        assert command in files["README.md"]
    for line in TEMPLATES[name].requirements:
        assert line in files["requirements.txt"].splitlines()
    root = "api/" if layout == "vercel" else "cloud-functions/"
    assert any(f.startswith(root) and f.endswith(".py") for f in files)
    assert "{{" not in "".join(files.values())


def test_mixed_has_a_dynamic_route_and_a_catch_all_in_each_layout() -> None:
    assert {"api/users/[id].py", "api/files/[...path].py"} <= set(render(TEMPLATES["mixed"], "vercel", "m"))
    edge = set(render(TEMPLATES["mixed"], "edgeone", "m"))
    assert {"cloud-functions/api/users/[id].py", "cloud-functions/api/files/[[path]].py"} <= edge


def test_init_writes_a_new_folder_and_says_what_next(tmp_path: Path) -> None:
    target = tmp_path / "site"
    code, out = run(str(target), "--template", "flask", "--layout", "edgeone")
    assert code == 0, out
    assert (target / "cloud-functions/api/index.py").is_file()
    assert "created  cloud-functions/api/index.py" in out
    assert "fnserve dev" in out


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, out = run(str(tmp_path), "-t", "handler")
    assert code == 2
    assert "is not empty (notes.txt)" in out and "--force" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_git_folder_alone_counts_as_empty(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    assert run(str(tmp_path))[0] == 0
    assert (tmp_path / "api/hello.py").is_file()


def test_force_keeps_existing_files_and_names_them(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("my readme\n")
    (tmp_path / "requirements.txt").write_text("requests\n")
    (tmp_path / ".gitignore").write_text("node_modules/")
    code, out = run(str(tmp_path), "-t", "fastapi", "--force")
    assert code == 0, out
    assert (tmp_path / "README.md").read_text() == "my readme\n"
    assert (tmp_path / "requirements.txt").read_text() == "requests\n"
    assert "kept     README.md" in out and "kept     requirements.txt" in out
    assert (tmp_path / ".gitignore").read_text().splitlines()[0] == "node_modules/"
    assert ".fnserve/" in (tmp_path / ".gitignore").read_text().split()
    assert "appended .fnserve/ to .gitignore" in out
    assert "created  api/index.py" in out


def test_force_twice_changes_nothing(tmp_path: Path) -> None:
    first = write_project(tmp_path, "mixed", "vercel")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = write_project(tmp_path, "mixed", "vercel", force=True)
    assert again.written == [] and again.appended == [] and sorted(again.kept) == sorted(first.written)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_unknown_template_and_file_target(tmp_path: Path) -> None:
    code, out = run(str(tmp_path / "x"), "--template", "rails")
    assert code == 2 and "rails" in out
    with pytest.raises(InitError, match="unknown template 'rails'"):
        write_project(tmp_path / "y", "rails")
    (tmp_path / "file").write_text("")
    code, out = run(str(tmp_path / "file"))
    assert code == 2 and "is a file" in out


def test_templates_are_package_data() -> None:
    from importlib import resources

    base = resources.files("fnserve.init") / "templates"
    assert sorted(p.name for p in base.iterdir() if not p.name.startswith("_")) == sorted(TEMPLATES)
