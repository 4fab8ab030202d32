"""Writing files so that a killed process never leaves a half-written one under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _temporary_beside(path: Path) -> Path:
    """A temporary file beside ``path`` (same file system, so os.replace is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    return Path(name)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temp_path)``, then move the finished file into place; a crash leaves ``path`` untouched."""
    temp = _temporary_beside(path)
    try:
        write(temp)
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
