"""fnserve's configuration: one frozen ``Config``, every setting declared once (SPEC §5).

Public API::

    load_config(project_dir, overrides={}, environ=os.environ, *, mode="dev", files=True) -> Config
    Config            frozen dataclass; one typed field per setting (port: int, entrypoint: str | None,
                      ...), .sources, .vercel, .function_env(), .import_map,
                      .limits_for(function_id, *, asgi=False) -> FunctionLimits,
                      .files (what to watch), .build_command, .warnings
    SETTINGS          the registry read off Config's fields (Setting: name, type, default, env,
                      flag, file_key, help, unit, commands, parse)
    command_options(command)   decorator adding the click options of a command's settings;
    cli_options(*names); overrides_from(kwargs) -> overrides
    PathPattern, RegexPattern   path-to-regexp / legacy regex patterns (fnserve.project.pathpattern)

Precedence, highest first: CLI flags > ``FNSERVE_*`` > ``fnserve.toml`` / ``[tool.fnserve]`` >
``vercel.json`` / ``edgeone.json`` > defaults (``fnserve.config.load``; per-function limits in
``fnserve.config.effective``).
"""

from __future__ import annotations

from fnserve.config.effective import SETTINGS, SETTINGS_BY_NAME, Config, FunctionLimits, FunctionRule
from fnserve.config.flags import cli_options, command_options, overrides_from
from fnserve.config.load import CONFIG_FILE_NAMES, MODES, load_config, watched_file_names
from fnserve.config.settings import Setting
from fnserve.project.pathpattern import PathPattern, RegexPattern
from fnserve.project.vercel_types import VercelConfig

__all__ = [
    "CONFIG_FILE_NAMES", "MODES", "Config", "FunctionLimits", "FunctionRule", "PathPattern", "RegexPattern",
    "SETTINGS", "SETTINGS_BY_NAME", "Setting", "VercelConfig", "cli_options", "command_options", "load_config",
    "overrides_from", "watched_file_names",
]
