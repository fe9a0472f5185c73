"""Where `katib-nas demo` may run: a new folder, its own earlier run, and nothing else a user keeps.

An earlier demo run that no runner is using is replaced (only the files a run writes are removed); a run of
any other experiment, a demo still running, or an experiment file that is not the demo's is left as it is,
with one line that names what was found and how to keep it or make room.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TextIO

import yaml

from .demo import is_demo_document
from .store import DB_NAME, LOCK_NAME, SUGGESTION_LOG, StoreError, lock_workdir, unlock_workdir
from .workdir_run import WorkdirRun, read_run

EXPERIMENT_FILE = "experiment.yaml"
#: What a run writes into its workdir (and `katib-nas demo` its experiment file).
RUN_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", SUGGESTION_LOG, EXPERIMENT_FILE)
RUN_FOLDERS = ("trials", "report")


def prepare_demo_workdir(workdir: Path, resume: bool, stream: TextIO) -> None:
    """Make `workdir` ready for the demo, or raise StoreError (one line) for anything the demo must not touch."""
    run = read_run(workdir)
    if run is not None:
        _check_replaceable(run)
        if not resume:
            print(f"katib-nas demo: replacing the earlier demo run in {workdir} ({run.describe()})", file=stream)
            _remove_run(workdir)
        return
    experiment = workdir / EXPERIMENT_FILE
    if experiment.exists() and not _is_demo_file(experiment):
        raise StoreError(f"{experiment} is not the demo's experiment and the demo would overwrite it; it is left "
                         "as it is: run the demo in another --workdir")


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
    """Remove the files of the earlier demo run, holding the workdir's lock so no runner starts meanwhile."""
    lock = lock_workdir(workdir)
    try:
        for name in RUN_FILES:
            (workdir / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            shutil.rmtree(workdir / name, ignore_errors=True)
    finally:
        unlock_workdir(lock)
        (workdir / LOCK_NAME).unlink(missing_ok=True)
