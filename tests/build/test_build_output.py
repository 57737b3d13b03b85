"""``fnserve build``: the output folder, its manifest and what it holds (SPEC §8.2, issue 11)."""

from __future__ import annotations

import json

import pytest
from buildsupport import handler, run_cli, scenario, snapshot, write_project

from fnserve.build.exceptions import OutputFormatError
from fnserve.build.manifest import FORMAT, project_from_manifest, read_manifest


def test_build_writes_manifest_project_static_and_report(tmp_path):
    project = scenario(tmp_path / "proj")
    before = snapshot(project)
    result = run_cli("build", str(project), "--no-install")
    assert result.exit_code == 0, result.output
    out = project / ".fnserve" / "output"
    assert "function sizes" in result.output and str(out) in result.output
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "project", "report.json", "static"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".output")]  # no temporary folder left
    assert (out.parent / ".gitignore").read_text().endswith("*\n")  # .fnserve/ is never committed

    data = json.loads((out / "manifest.json").read_text())
    assert data["format"] == FORMAT and data["fnserve"]
    assert data["source"] == str(project.resolve())
    assert data["config"]["files"] == [".env", "vercel.json"]
    assert data["rules"]["redirects"] == [{"source": "/old", "destination": "/api/hello", "permanent": False}]
    assert [r["pattern"] for r in data["routes"]][:3] == ["/api/hello", "/api/hello.py", "/api/page"]
    users = next(r for r in data["routes"] if r["pattern"] == "/api/users/[id]")
    assert users["segments"] == [["literal", "api"], ["literal", "users"], ["param", "id"]]
    assert users["function"] == "api/users/[id].py" and users["kind"] == "handler"

    functions = {f["id"]: f for f in data["functions"]}
    assert sorted(functions) == ["api/hello.py", "api/page.py", "api/users/[id].py"]
    hello = functions["api/hello.py"]
    assert (hello["module"], hello["attr"], hello["kind"], hello["layout"]) == ("api.hello", "handler", "handler", "vercel")
    assert hello["import_roots"] == ["."] and hello["env"] is None and hello["methods"] == ["GET"]
    assert hello["limits"]["max_duration"] == 7 and functions["api/page.py"]["limits"]["max_duration"] != 7
    # excludeFiles removed data/ for hello only; includeFiles brought back a file of tests/
    assert "data/big.bin" not in hello["files"] and "tests/fixture.json" in hello["files"]
    page = functions["api/page.py"]["files"]
    assert "data/big.bin" in page and "templates/page.html" in page and "api/_lib/names.py" in page
    assert not any(f.startswith(("tests/", "scripts/", "public/")) for f in page)
    assert hello["bytes"] == sum((out / "project" / f).stat().st_size for f in hello["files"])

    kept = sorted(p.relative_to(out / "project").as_posix() for p in (out / "project").rglob("*") if p.is_file())
    assert "tests/fixture.json" in kept and "tests/test_x.py" not in kept and "scripts/tool.py" not in kept
    assert ".env" in kept and "templates/page.html" in kept and "data/big.bin" in kept
    assert sorted(p.relative_to(out / "static").as_posix() for p in (out / "static").rglob("*") if p.is_file()) == [
        "css/site.css", "index.html"]
    assert data["static"] == {"dir": "static", "files": 2, "bytes": (project / "public/index.html").stat().st_size
                              + (project / "public/css/site.css").stat().st_size}

    report = json.loads((out / "report.json").read_text())
    sizes = {f["id"]: f for f in report["functions"]}
    assert sizes["api/hello.py"]["excluded_files"] == [{"file": "data/big.bin", "bytes": 2000}]
    assert sizes["api/page.py"]["largest"][0] == {"kind": "file", "name": "data/big.bin", "bytes": 2000}
    assert report["dropped_files"]["scripts/tool.py"].startswith("excluded")

    # the project model can be rebuilt from the manifest alone
    model = project_from_manifest(read_manifest(out), out / "project")
    match = model.routes.match("/api/users/42")
    assert match is not None and match.params == {"id": "42"} and match.function.path == out / "project/api/users/[id].py"
    # nothing the user wrote changed
    assert snapshot(project) == before


def test_edgeone_layout_and_out_outside_the_project(tmp_path):
    project = write_project(tmp_path / "eo", {
        "cloud-functions/api/hello.py": handler("'hi'"),
        "cloud-functions/api/[[default]].py": handler("'fallback'"),
    })
    out = tmp_path / "built"
    result = run_cli("build", str(project), "--no-install", "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    fn = manifest.function("cloud-functions/api/hello.py")
    assert fn is not None and fn.layout == "edgeone" and fn.module == "api.hello"
    assert fn.import_roots == (".", "cloud-functions")
    assert not (project / ".fnserve" / "output").exists()


def test_failed_build_leaves_no_output_and_keeps_the_previous_one(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'")})
    assert run_cli("build", str(project), "--no-install").exit_code == 0
    out = project / ".fnserve" / "output"
    first = (out / "manifest.json").read_text()
    (project / "api" / "b.py").write_text("class handler(:\n")  # a syntax error: the build refuses
    result = run_cli("build", str(project), "--no-install")
    assert result.exit_code == 2
    assert "api/b.py" in result.output and "cannot be built" in result.output
    assert (out / "manifest.json").read_text() == first
    assert not [p.name for p in out.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_read_manifest_refuses_unknown_formats(tmp_path):
    with pytest.raises(OutputFormatError, match="no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT + 1, "fnserve": "9.0"}))
    with pytest.raises(OutputFormatError) as info:
        read_manifest(tmp_path)
    assert f"format {FORMAT + 1}" in str(info.value) and "fnserve build" in str(info.value)
    assert info.value.exit_code == 2
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT}))
    with pytest.raises(OutputFormatError, match="malformed"):
        read_manifest(tmp_path)
