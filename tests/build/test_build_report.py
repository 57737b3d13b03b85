"""The size report (SPEC §8.2, issue 11 item 4): per function total and largest contributors, a
warning naming them over 250 MB, on the terminal and in report.json."""

from __future__ import annotations

import json
import os

from buildsupport import handler, run_cli, write_project

from fnserve.build.sizes import SIZE_LIMIT, function_size, human, render_text

BIG = 300 * 1024 * 1024


def test_function_over_the_limit_is_a_warning_naming_its_largest_files(tmp_path):
    project = write_project(tmp_path / "p", {
        "api/heavy.py": handler("'heavy'"),
        "api/light.py": handler("'light'"),
        "models/small.txt": "s" * 100,
        "vercel.json": json.dumps({"functions": {"api/light.py": {"excludeFiles": "models/**"}}}),
    })
    huge = project / "models" / "weights.bin"
    with open(huge, "wb") as handle:  # sparse: 300 MB apparent, no disk blocks
        handle.truncate(BIG)
    result = run_cli("build", str(project), "--no-install")
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.output.splitlines() if line.strip().startswith("warning:"))
    assert "api/heavy.py is 300.0 MB" in warning and "250.0 MB" in warning and "models/weights.bin (300.0 MB)" in warning
    assert "api/light.py is" not in result.output.split("warning:", 1)[1]

    out = project / ".fnserve" / "output"
    report = {f["id"]: f for f in json.loads((out / "report.json").read_text())["functions"]}
    heavy, light = report["api/heavy.py"], report["api/light.py"]
    assert heavy["over_limit"] and heavy["bytes"] > BIG and heavy["limit_bytes"] == SIZE_LIMIT
    assert heavy["largest"][0] == {"kind": "file", "name": "models/weights.bin", "bytes": BIG}
    assert heavy["warning"].startswith("api/heavy.py is 300.0 MB")
    assert not light["over_limit"] and light["warning"] is None
    assert {"file": "models/weights.bin", "bytes": BIG} in light["excluded_files"]
    copied = out / "project" / "models" / "weights.bin"
    assert copied.stat().st_size == BIG and copied.stat().st_blocks * 512 < 1024 * 1024  # still sparse


def test_package_contributors_rank_with_files():
    size = function_size("api/x.py", {"api/x.py": 10, "data.csv": 5000},
                         {"numpy": 30_000_000, "six": 40_000, "pandas": 60_000_000}, [("big.bin", 7)])
    assert [(k, n) for k, n, _b in size.largest][:3] == [("package", "pandas"), ("package", "numpy"), ("package", "six")]
    assert size.total == 90_045_010 and not size.over_limit and size.warning() is None
    text = render_text([size])
    assert "api/x.py" in text and "pandas 57.2 MB" in text
    assert human(1536) == "1.5 KB" and human(12) == "12 B"


def test_sparse_copy_keeps_data_segments(tmp_path):
    from fnserve.build.collect import copy_file

    src = tmp_path / "s.bin"
    with open(src, "wb") as handle:
        handle.truncate(8 * 1024 * 1024)
        handle.seek(3 * 1024 * 1024)
        handle.write(b"middle")
        handle.seek(8 * 1024 * 1024 - 3)
        handle.write(b"end")
    dst = tmp_path / "d.bin"
    copy_file(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert dst.stat().st_mtime_ns == src.stat().st_mtime_ns
    assert dst.stat().st_blocks <= src.stat().st_blocks + 16
    os.unlink(dst)
