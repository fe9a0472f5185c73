"""Crash-safe writes: a file replaced whole or not at all, its folder's rename synced, no temporary left."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from katib_nas.trial_image import durable


def test_a_write_that_fails_keeps_the_old_file_whole_and_leaves_nothing(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(durable.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space left"):
        durable.replace_whole(target, b"new")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_temporaries_of_processes_killed_outright_go_with_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    (tmp_path / f".checkpoint.pt.{os.getpid()}.tmp").write_bytes(b"half")  # the same pid, reused in a container
    (tmp_path / ".checkpoint.pt.99999.tmp").write_bytes(b"half of another")
    (tmp_path / ".other.1.tmp").write_bytes(b"someone else's")
    durable.replace_whole(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.1.tmp", "checkpoint.pt"]


def test_the_rename_is_synced_in_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(durable, "sync_path", synced.append)
    durable.replace_whole(tmp_path / "checkpoint.pt", b"new")
    assert synced == [tmp_path]
