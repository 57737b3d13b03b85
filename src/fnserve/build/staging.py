"""Folders written whole or not at all: what every build target does with its files.

``staged_folder(folder)`` yields an empty temporary folder beside ``folder`` (same file system,
so the final rename is atomic). When the ``with`` block ends normally, the temporary folder
replaces ``folder``: a previous ``folder`` is moved aside first and removed only once the new
one is in place. When the block raises, the temporary folder is removed and ``folder`` is left
as it was. So a failed or interrupted render never leaves a half-written folder that looks valid.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["staged_folder"]


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """Yield ``.<name>.tmp-<pid>`` beside ``folder`` (created empty, parents too); see the module
    docstring for what happens at the end. Raises whatever the block raises, and ``OSError``
    when the folders cannot be created or renamed."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not folder.exists():
            os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
