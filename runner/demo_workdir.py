"""Where `katib-nas demo` may run: a new folder, its own earlier run, and nothing else a user keeps.

An earlier demo run that no runner is using is replaced (only the files a run writes are removed: its state,
its trials' folders, its report's files); a run of any other experiment, a demo still running, or an
experiment file that is not the demo's (also beside a demo run) is left as it is, with one line that names
what was found and how to keep it or make room.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import TextIO

import yaml

from katib_nas.contract.kubernetes_names import is_dns1123_label

from .demo import EXPERIMENT_FILE, is_demo_document
from .report import REPORT_FILES, STAGING_PREFIX
from .store import (
    DB_NAME,
    LOCK_NAME,
    REPORT_FOLDER,
    SUGGESTION_LOG,
    TRIALS_FOLDER,
    Store,
    StoreError,
    lock_workdir,
    unlock_workdir,
)
from .workdir_run import WorkdirRun, read_run

#: What a run writes into its workdir (and `katib-nas demo` its experiment file).
RUN_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", SUGGESTION_LOG, EXPERIMENT_FILE)


def prepare_demo_workdir(workdir: Path, resume: bool, stream: TextIO) -> None:
    """Make `workdir` ready for the demo, or raise StoreError (one line) for anything the demo must not touch."""
    run = read_run(workdir)
    if run is not None:
        _check_replaceable(run)
    experiment = workdir / EXPERIMENT_FILE
    if experiment.exists() and not _is_demo_file(experiment):
        raise StoreError(f"{experiment} is not the demo's experiment and the demo would overwrite it; it is left "
                         "as it is: run the demo in another --workdir")
    if run is not None and not resume:
        print(f"katib-nas demo: replacing the earlier demo run in {workdir} ({run.describe()})", file=stream)
        _remove_run(workdir)


def _check_replaceable(run: WorkdirRun) -> None:
    if run.in_use_by is not None:
        raise StoreError(f"{run.workdir} holds the run of {run.describe()}, in use by a running katib-nas "
                         f"(pid {run.in_use_by}); it is left as it is: wait for it to finish or stop it with Ctrl-C, "
                         "or run the demo in another --workdir")
    if not run.is_demo:
        raise StoreError(f"{run.workdir} holds the run of {run.describe()}, which is not a demo run; it is left as "
                         f"it is: run the demo in another --workdir, continue it with: {run.resume_command()}, or "
                         "remove the folder yourself to make room")


def _is_demo_file(path: Path) -> bool:
    try:
        return is_demo_document(yaml.safe_load(path.read_text()))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False


def _remove_run(workdir: Path) -> None:
    """Remove the files of the earlier demo run, holding the workdir's lock so no runner starts meanwhile: its
    trials' folders and its report's files first (named from its state), then its state; the trials and report
    folders go only when nothing else is left in them."""
    lock = lock_workdir(workdir)
    try:
        trials, report = workdir / TRIALS_FOLDER, workdir / REPORT_FOLDER
        for name in _trial_names(workdir):
            shutil.rmtree(trials / name, ignore_errors=True)
        for name in REPORT_FILES:
            (report / name).unlink(missing_ok=True)
        for leftover in report.glob(f"{STAGING_PREFIX}*"):  # of a report killed before it could clean up
            shutil.rmtree(leftover, ignore_errors=True)
        for name in RUN_FILES:
            (workdir / name).unlink(missing_ok=True)
        for folder in (trials, report):
            with contextlib.suppress(OSError):
                folder.rmdir()
    finally:
        unlock_workdir(lock)
        (workdir / LOCK_NAME).unlink(missing_ok=True)


def _trial_names(workdir: Path) -> list[str]:
    """The run's trial names that can name a folder under trials/ (every name the runner gives one)."""
    store = Store.open_existing(workdir)
    try:
        return [trial.name for trial in store.trials() if is_dns1123_label(trial.name)]
    finally:
        store.close()
