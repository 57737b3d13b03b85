"""Errors raised inside a function's worker process (stdlib only; crosses Python versions).

::

    RuntimeFailure                 base of everything the runtime raises on purpose
    ├── LoadError                  the function could not be imported or is not a servable entry:
    │                              ``.file``, ``.attr``, ``.found``, ``.traceback``, ``.hint``
    └── BodyTooLarge               the request body is over ``body_limit`` (adapters answer 413)

``LoadError.to_dict()`` / ``LoadError.from_dict()`` give a JSON-able form so the worker can send a
load failure to the front server (which shows it as a 500 for the function's routes, SPEC §3.5).
"""

from typing import Any, Dict, Optional


class RuntimeFailure(Exception):
    """Base class of the runtime's own exceptions."""


class LoadError(RuntimeFailure):
    """A function failed to load (SPEC §2, §2.1, §4).

    ``file``: the entrypoint's path as given in the function spec (project-relative when known);
    ``attr``: the attribute that was looked up (or None when the import itself failed);
    ``found``: what was found instead, in words (``"a dict"``, ``"nothing"``, ``"ImportError"``);
    ``traceback``: the formatted original traceback (a string, ``""`` when there was none);
    ``hint``: what the user should do.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        attr: Optional[str] = None,
        found: Optional[str] = None,
        traceback: str = "",
        hint: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.attr = attr
        self.found = found
        self.traceback = traceback
        self.hint = hint

    def __str__(self) -> str:
        return self.message + ("\n  hint: " + self.hint if self.hint else "")

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-able form: ``{"message", "file", "attr", "found", "traceback", "hint"}``."""
        return {
            "message": self.message,
            "file": self.file,
            "attr": self.attr,
            "found": self.found,
            "traceback": self.traceback,
            "hint": self.hint,
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "LoadError":
        """Rebuild a ``LoadError`` from ``to_dict()`` output (e.g. on the front server's side)."""
        return cls(
            data.get("message", "the function failed to load"),
            file=data.get("file", "?"),
            attr=data.get("attr"),
            found=data.get("found"),
            traceback=data.get("traceback") or "",
            hint=data.get("hint"),
        )


class BodyTooLarge(RuntimeFailure):
    """The request body exceeded ``limit`` bytes (SPEC §3.5: 413). ``received``: bytes seen so far
    (or the declared ``Content-Length``)."""

    def __init__(self, limit: int, received: int) -> None:
        super().__init__(f"request body is {received} bytes or more, over the limit of {limit} bytes")
        self.limit = limit
        self.received = received
