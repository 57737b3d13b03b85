"""Dependencies (SPEC §7, issue 5): import scan, requirement merge, Python selection, uv env cache.

Public API::

    ensure_env(project_dir, options=None, *, progress=None) -> Environment
        the function env (a real venv under .fnserve/envs/<key>/); give ``env.python`` to workers.
        Unchanged set: no process started, ``changed=False``. Raises DependencyError.
    ensure_env_async(...)             the same in a thread, for "reinstall in the background, then swap"
    plan_deps(project_dir, options=None) -> DepsPlan   everything but the install
    affects_dependencies(project_dir, path, plan=None) -> bool   for the dev watcher: re-run ensure_env?
    DepsOptions / DepsOptions.from_config(config, environ)

Modules: ``detect`` (third-party imports, read from the project model's ``importscan``),
``mapping`` (+ vendored ``_pipreqs_mapping``), ``requirements_txt`` and ``manifests`` (declared
sources), ``merge``, ``pythons``, ``uv``, ``envs``, ``plan``, ``report``.
"""

from fnserve.deps.envs import Environment
from fnserve.deps.options import DepsOptions
from fnserve.deps.plan import DepsPlan, affects_dependencies, ensure_env, ensure_env_async, plan_deps

__all__ = ["DepsOptions", "DepsPlan", "Environment", "affects_dependencies", "ensure_env", "ensure_env_async",
           "plan_deps"]
