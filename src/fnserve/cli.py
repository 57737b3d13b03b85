"""The ``fnserve`` command line: click commands only.

Each command parses its arguments, builds one frozen ``Config`` (``fnserve.config``), calls one
function of the package that owns the work, and maps ``FnserveError`` to a message on stderr and
exit code 2. Nothing else lives here.
"""

from __future__ import annotations

import click

from fnserve import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fnserve")
def main() -> None:
    """Run Python serverless functions (Vercel api/, EdgeOne cloud-functions/) on your own machines."""


# Commands are added below, one block per command, each calling into its own package.
