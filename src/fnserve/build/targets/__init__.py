"""Build targets: what ``fnserve build --target NAME`` renders from the target-neutral output.

``TARGETS`` maps a name to a ``Target`` subclass (STYLE: strategies behind a small base class and
a name map). ``fnserve`` is the output itself (served by ``fnserve start --from``); ``vercel``,
``container``, ``knative``, ``kubernetes`` and ``lambda`` plug in here later (issue 11).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fnserve.build.manifest import Manifest


class Target:
    """One engine's rendering of a build. ``render(output, manifest, say)`` writes whatever the
    engine needs from the finished output folder ``output`` (absolute, already in place) and
    returns the paths it wrote (empty when the output itself is the deliverable). It writes its
    own files atomically (temporary folder + rename), so a failed render leaves nothing that looks
    valid. Raises ``BuildError``."""

    name = "base"
    description = ""

    def render(self, output: Path, manifest: Manifest, say: Callable[[str], None]) -> list[Path]:
        raise NotImplementedError


class FnserveTarget(Target):
    """The output folder as it is: ``fnserve start --from OUTPUT`` serves it."""

    name = "fnserve"
    description = "the output folder itself, served by `fnserve start --from OUTPUT`"

    def render(self, output: Path, manifest: Manifest, say: Callable[[str], None]) -> list[Path]:
        say(f"target fnserve: serve it with `fnserve start --from {output}`")
        return []


from fnserve.build.targets.lambda_target import LambdaTarget  # noqa: E402 - it subclasses Target, defined above

TARGETS: dict[str, type[Target]] = {"fnserve": FnserveTarget, "lambda": LambdaTarget}
DEFAULT_TARGET = "fnserve"
