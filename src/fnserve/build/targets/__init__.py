"""Build targets: what ``fnserve build --target NAME`` renders from the target-neutral output.

``TARGETS`` maps a name to a ``Target`` subclass (STYLE: strategies behind a small base class and
a name map). ``fnserve`` is the output itself (served by ``fnserve start --from``); ``knative`` and
``kubernetes`` render manifests for those engines (``kube``); ``vercel``, ``container`` and
``lambda`` plug in here later (issue 11). Every target is built with the build's
``TargetOptions`` (``fnserve build --image NAME``) and reads what it needs from them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fnserve.build.manifest import Manifest


#: A container image reference: ``[host[:port]/]path[:tag][@sha256:digest]`` (lower-case path
#: components, as the OCI distribution spec and docker require).
IMAGE_RE = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                      r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
                      r"(?:@sha256:[0-9a-f]{64})?$")


def check_image(name: str) -> str:
    """``name`` when it is a container image reference (``IMAGE_RE``); raises ``ValueError``
    saying what is expected otherwise (``--image`` turns it into a usage error)."""
    if not IMAGE_RE.match(name):
        raise ValueError(f"{name!r} is not a container image reference; expected [registry/]name[:tag], "
                         "lower-case, e.g. ghcr.io/me/site:1.0")
    return name


@dataclass(frozen=True)
class TargetOptions:
    """What ``fnserve build`` passes to every target. ``image``: the container image reference
    (``--image``), None for the target's default (``fnserve-<project folder>:latest`` for the
    ``container``, ``knative`` and ``kubernetes`` targets)."""

    image: str | None = None


class Target:
    """One engine's rendering of a build. ``render(output, manifest, say)`` writes whatever the
    engine needs from the finished output folder ``output`` (absolute, already in place) and
    returns the paths it wrote (empty when the output itself is the deliverable). It writes its
    own files atomically (temporary folder + rename), so a failed render leaves nothing that looks
    valid. Raises ``BuildError``."""

    name = "base"
    description = ""

    def __init__(self, options: TargetOptions | None = None) -> None:
        self.options = options or TargetOptions()

    def render(self, output: Path, manifest: Manifest, say: Callable[[str], None]) -> list[Path]:
        raise NotImplementedError

    def is_current(self, output: Path, manifest: Manifest) -> bool:
        """False when an unchanged build must render this target again (its files are missing
        or older than the build's manifest); the build then calls ``render`` without rebuilding."""
        return True


def written_after_manifest(path: Path, output: Path) -> bool:
    """True when ``path`` exists and was written after ``output``'s manifest (``is_current`` of
    the targets that write one file or folder)."""
    from fnserve.build.manifest import MANIFEST_NAME

    try:
        return path.stat().st_mtime_ns >= (output / MANIFEST_NAME).stat().st_mtime_ns
    except OSError:
        return False


class FnserveTarget(Target):
    """The output folder as it is: ``fnserve start --from OUTPUT`` serves it."""

    name = "fnserve"
    description = "the output folder itself, served by `fnserve start --from OUTPUT`"

    def render(self, output: Path, manifest: Manifest, say: Callable[[str], None]) -> list[Path]:
        say(f"target fnserve: serve it with `fnserve start --from {output}`")
        return []


from fnserve.build.targets.container import ContainerTarget  # noqa: E402 (it subclasses Target)
from fnserve.build.targets.kube import KnativeTarget, KubernetesTarget  # noqa: E402 (they subclass Target)
from fnserve.build.targets.lambda_target import LambdaTarget  # noqa: E402
from fnserve.build.targets.vercel import VercelTarget  # noqa: E402

TARGETS: dict[str, type[Target]] = {
    "fnserve": FnserveTarget,
    "vercel": VercelTarget,
    "knative": KnativeTarget,
    "kubernetes": KubernetesTarget,
    "container": ContainerTarget,
    "lambda": LambdaTarget,
}
DEFAULT_TARGET = "fnserve"
