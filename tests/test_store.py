"""The local runner's state file: logs kept per attempt, damage found in one line, the workdir's lock."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from katib_nas.runner.store import (
    DB_NAME,
    MAX_LOG_CHARS,
    Store,
    StoreError,
    lock_workdir,
    runner_pid,
    unlock_workdir,
)


def store_with_trials(workdir: Path, count: int = 1) -> Store:
    store = Store.open(workdir)
    store.create_experiment("e", {}, "x", {}, [], "/")
    store.add_trials([(f"t-{k}", {"architecture": "x" * 200}, {}) for k in range(count)], [])
    return store


def test_the_stored_log_is_the_outputs_end_and_the_latest_attempts(tmp_path: Path) -> None:
    store = store_with_trials(tmp_path)
    store.mark_running("t-0", 1.0)
    store.requeue(["t-0"], "interrupted", {"t-0": "first attempt"})
    store.mark_running("t-0", 2.0)
    store.finish_trial("t-0", "Failed", 1, "", 3.0, [], [], "a" * MAX_LOG_CHARS + "TRACEBACK")
    log = store.trial_log("t-0")
    assert log.endswith("TRACEBACK") and len(log) == MAX_LOG_CHARS  # the end of the output, where errors are
    store.close()


def test_a_state_file_with_damaged_pages_is_refused_in_one_line(tmp_path: Path) -> None:
    """The schema still reads, a data page does not: quick_check's several lines become one."""
    store = store_with_trials(tmp_path, 300)
    store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    path = tmp_path / DB_NAME
    with sqlite3.connect(path) as connection:
        page_size, pages = (connection.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_size", "page_count"))
    data = bytearray(path.read_bytes())
    offset = (pages - 2) * page_size + 8
    data[offset:offset + 192] = b"\xff" * 192
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="is damaged") as refused:
        Store.open_existing(tmp_path)
    assert "\n" not in str(refused.value) and "***" not in str(refused.value)
    assert path.read_bytes() == bytes(data)


def test_a_workdir_locked_by_a_run_is_refused_naming_its_pid(tmp_path: Path) -> None:
    held = lock_workdir(tmp_path)
    try:
        assert runner_pid(tmp_path) == os.getpid()
        with pytest.raises(StoreError, match=f"is in use by another katib-nas run \\(pid {os.getpid()}\\)"):
            lock_workdir(tmp_path)
    finally:
        unlock_workdir(held)
    unlock_workdir(lock_workdir(tmp_path))  # free again once released
