"""Writes that survive a crash: a file's bytes synced to disk, and a file replaced whole or not at all."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_synced(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to `path` and flush it to the disk before returning."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_whole(path: Path, data: bytes | memoryview) -> None:
    """Replace `path` with `data` through a synced temporary file beside it, so that a reader (or a write that
    fails) finds the old file or the new one whole, also after a power loss (the folder's rename is synced).
    OSError when it cannot be written; no temporary is left, nor one a process killed outright left."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write_synced(temporary, data)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)
        raise
    sync_path(path.parent)
    for leftover in path.parent.glob(f".{path.name}.*.tmp"):
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink(missing_ok=True)


def sync_path(path: Path) -> None:
    """Flush a written file, or a folder's renames, to the disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def remove_leftover_folders(folder: Path, prefix: str) -> None:
    """Remove the hidden working folders (`prefix`*) that a process killed outright left in `folder`; a link of
    that name is not followed."""
    for leftover in folder.glob(f"{prefix}*"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
