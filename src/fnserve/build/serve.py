"""``fnserve start --from OUTPUT``: serve a build output without scanning or installing anything.

``FromOutputServer`` is ``fnserve.server.start.StartServer`` with its loading steps replaced:

- config: ``load_config(OUTPUT/project, flags, mode="start")`` — the configuration files were
  copied into the output (``vercel.json`` rules, ``[tool.fnserve]`` settings, ``.env*``), and the
  flags / ``FNSERVE_*`` of this run still apply (host, port, limits...);
- project: ``project_from_manifest`` — functions and routes from ``manifest.json``, paths under
  ``OUTPUT/project`` (no file is parsed);
- interpreter: the output's own env ``OUTPUT/envs/<key>/bin/python`` (a relocatable venv holding
  the build's site-packages); no env in the manifest (built with ``install = false``) → fnserve's
  own interpreter, as ``fnserve start --no-install`` does;
- static files: ``OUTPUT/static``.

Everything else (supervisor, signals, SIGHUP reload — which re-reads the manifest and the copied
configuration —, admin endpoints, logs) is ``StartServer``'s. Raises ``OutputFormatError`` for an
output of an unknown format and ``BuildError`` when the env's interpreter is missing (the output
was built on another machine): both exit 2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fnserve.build.exceptions import BuildError
from fnserve.build.manifest import Manifest, project_from_manifest, read_manifest
from fnserve.config import Config
from fnserve.server.app import Site
from fnserve.server.rules import from_config
from fnserve.server.start import StartServer
from fnserve.server.static import StaticFiles


def project_dir_of(output: Path) -> Path:
    """The project copy inside a build output (what config is loaded from)."""
    return Path(output).resolve() / "project"


class FromOutputServer(StartServer):
    """``fnserve start --from output``: see the module docstring. ``overrides``: the flags."""

    collects_django_static = False  # fnserve build put Django's collected files in static/

    def __init__(self, output: Path, overrides: Mapping[str, Any] | None = None,
                 *, say: Callable[[str], None] | None = None) -> None:
        self.output = Path(output).resolve()
        self.manifest: Manifest = read_manifest(self.output)  # refuses unknown formats at once
        super().__init__(project_dir_of(self.output), overrides, say=say)

    def load_project(self, config: Config) -> Any:
        self.manifest = read_manifest(self.output)
        return project_from_manifest(self.manifest, self.root)

    async def environment(self, config: Config) -> Path | None:
        keys = {f.env for f in self.manifest.functions if f.env is not None}
        if not keys:
            return None
        env = self.manifest.envs[sorted(keys)[0]]
        python = self.output / env.python
        if not python.exists():  # a dangling symlink: the base interpreter is not on this machine
            raise BuildError("output", f"{python}: the build's Python {env.python_version} ({env.base_python}) "
                             "is not on this machine", "build the project on this machine (fnserve build) "
                             "or install that Python at the same path")
        return python

    def site(self) -> Site:
        rules = from_config(self.config.vercel)
        return Site(routes=self.project.routes, rules=rules,
                    static=StaticFiles(self.output / "static", clean_urls=rules.clean_urls),
                    body_limit=self.config.body_limit)

    def reserved_conflicts(self) -> list[str]:
        found = super().reserved_conflicts()
        if (self.output / "static" / "_fnserve").exists():
            found.append("static/_fnserve")
        return found
