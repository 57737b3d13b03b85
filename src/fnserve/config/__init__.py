"""fnserve's configuration: one frozen ``Config``, every setting declared once (SPEC §5).

Public API::

    load_config(project_dir, overrides={}, environ=os.environ, *, mode="dev") -> Config
    Config            frozen; one attribute per setting, .sources, .vercel, .function_env(),
                      .limits_for(function_id, *, asgi=False) -> FunctionLimits, .import_map,
                      .files (what to watch), .build_command, .warnings
    SETTINGS          the registry (Setting: name, type, default, env, flag, help, unit, commands)
    cli_options(*names)   decorator adding the click options; overrides_from(kwargs) -> overrides
    PathPattern, RegexPattern   path-to-regexp / legacy regex patterns (fnserve.project.pathpattern)

Precedence, highest first: CLI flags > ``FNSERVE_*`` > ``fnserve.toml`` / ``[tool.fnserve]`` >
``vercel.json`` / ``edgeone.json`` > defaults (``fnserve.config.loader``; per-function limits in
``fnserve.config.model``).
"""

from __future__ import annotations

from fnserve.config.loader import CONFIG_FILE_NAMES, MODES, load_config, watched_file_names
from fnserve.config.model import Config, FunctionLimits, FunctionRule
from fnserve.config.settings import SETTINGS, SETTINGS_BY_NAME, Setting, cli_options, overrides_from
from fnserve.project.pathpattern import PathPattern, RegexPattern
from fnserve.project.vercel_types import VercelConfig

__all__ = [
    "CONFIG_FILE_NAMES", "MODES", "Config", "FunctionLimits", "FunctionRule", "PathPattern", "RegexPattern",
    "SETTINGS", "SETTINGS_BY_NAME", "Setting", "VercelConfig", "cli_options", "load_config",
    "overrides_from", "watched_file_names",
]
