"""Making writes durable: fsync a file or a directory (what atomic replaces and checkpoints need)."""
from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: str | Path) -> None:
    """fsync a file, or a directory (so a rename inside it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: str | Path, final: str | Path) -> None:
    """Rename `tmp` over `final` with both the data and the rename on disk."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(Path(final).parent)
