"""Atomic file writes: a reader, or a rerun after a crash, sees the old file or the new one.

Every file hpnet writes that another run reads back (checkpoints, pose-cache entries, text
embeddings, the rendered synthetic dataset) goes through :func:`write_atomic`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def temp_name(path: Path) -> Path:
    """The temp file that :func:`write_atomic` uses for ``path``: ``<path>.<pid>.tmp``."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, fsync, then rename onto ``path``.

    On any error (a full disk, a kill) the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        with tmp.open("wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
