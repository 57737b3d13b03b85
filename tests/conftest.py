"""Fixtures shared across test modules (the helpers themselves live in ``devserver.py`` and
``runtime_harness.py`` beside this file)."""

from runtime_harness import load  # noqa: F401 - the ``load`` fixture of the runtime adapter tests
