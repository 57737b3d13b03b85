"""``--target``: a name map of renderers (issue 11 item 3); unknown names are a usage error."""

from __future__ import annotations

import pytest
from buildsupport import handler, run_cli, write_project

from fnserve.build.exceptions import BuildError
from fnserve.build.output import build_output
from fnserve.build.targets import TARGETS, FnserveTarget, Target
from fnserve.config import load_config


def test_unknown_target_is_a_usage_error_listing_the_known_ones(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'")})
    result = run_cli("build", str(project), "--no-install", "--target", "fnserve", "--target", "vercel9")
    assert result.exit_code == 2
    assert "unknown target 'vercel9'; known targets: fnserve" in result.output
    assert not (project / ".fnserve" / "output").exists()


def test_the_registry_drives_build_output(tmp_path, monkeypatch):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'")})
    config = load_config(project, {"install": False}, {}, mode="build")
    with pytest.raises(BuildError, match="unknown target"):
        build_output(config, targets=("nope",))
    seen = []

    class Probe(Target):
        name = "probe"

        def render(self, output, manifest, say):
            seen.append((output.name, [f.id for f in manifest.functions]))
            return []

    monkeypatch.setitem(TARGETS, "probe", Probe)
    lines: list[str] = []
    build_output(config, targets=("fnserve", "probe"), say=lines.append)
    assert seen == [("output", ["api/a.py"])]
    assert any("fnserve start --from" in line for line in lines)
    assert TARGETS["fnserve"] is FnserveTarget
