"""``fnserve init``: start a project from a template (issue 13 item 1).

``TEMPLATES`` (name → ``Template``, in ``catalog``) lists them; ``write_project(root, name,
layout, force=...)`` writes one (``scaffold``); ``render`` returns its files without writing.
"""

from fnserve.init.catalog import LAYOUTS, TEMPLATES, Probe, Template
from fnserve.init.scaffold import InitError, InitResult, render, write_project

__all__ = ["LAYOUTS", "TEMPLATES", "InitError", "InitResult", "Probe", "Template", "render", "write_project"]
