"""Fixtures shared across test modules (the helpers themselves live in ``devserver.py`` and
``runtime_harness.py`` beside this file)."""

import os

from runtime_harness import load  # noqa: F401 - the ``load`` fixture of the runtime adapter tests

# The dev/start subprocesses the tests run inherit this environment: the runner's own colour
# wishes (a CI that sets FORCE_COLOR) must not change what the tests read (issue 13 item 4;
# tests/server/test_terminal_e2e.py sets them explicitly where they are the subject).
for _name in ("FORCE_COLOR", "NO_COLOR"):
    os.environ.pop(_name, None)
