"""Issue 13 item 1: every ``fnserve init`` template, in each layout it supports, is served and
probed over a real loopback socket under ``fnserve dev`` and ``fnserve start`` (``--no-install``:
this venv's flask, fastapi, django and sanic)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from devserver import DevServer
from startserver import StartServer

from fnserve.init import TEMPLATES, write_project

CASES = [(name, layout) for name, t in TEMPLATES.items() for layout in t.layouts]


def probe_all(url: str, name: str) -> None:
    template = TEMPLATES[name]
    with httpx.Client(base_url=url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for probe in template.probes:
            assert f'href="{probe.path}"' in page.text
            answer = client.get(probe.path)
            assert answer.status_code == 200, (probe.path, answer.text)
            assert answer.json()[probe.field] == probe.value, (probe.path, answer.text)


@pytest.mark.parametrize(("name", "layout"), CASES)
@pytest.mark.parametrize("server", [DevServer, StartServer], ids=["dev", "start"])
def test_template_serves_its_probes(tmp_path: Path, name: str, layout: str, server: type[DevServer]) -> None:
    project = tmp_path / f"{name}-{layout}"
    write_project(project, name, layout)
    srv = server(project, tmp_path, *(["--no-install"] if server is DevServer else []))
    try:
        srv.start(timeout=60)
        probe_all(srv.url, name)
    finally:
        srv.stop()
