"""`katib-nas run`: load the Experiment, open (or resume) its workdir, run the loop, write the report.

A workdir holds one experiment. A fresh run refuses a workdir that already
has trials; `--resume` continues it, provided the Experiment is the same
except for parallelTrialCount, maxTrialCount and maxFailedTrialCount (the
fields Katib lets a user edit on a running Experiment). On resume the
stored budget and trial arguments apply unless new ones are given (new trial arguments replace all the
stored ones, with a note naming both).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from katib_nas.contract.errors import InvalidInput
from katib_nas.proto import api_pb2

from . import katib_messages
from .controller import Controller, Interrupted, LoopConfig, StartDirectoryGone, requeue_unfinished
from .manifest import ExperimentError, ExperimentSpec, check_runs_locally, experiment_from_document, load_experiment
from .progress import ProgressView
from .status import Outcome, outcome, summarize_trials
from .store import (
    DB_NAME,
    LOCK_NAME,
    SUGGESTION_LOG,
    TRIALS_FOLDER,
    DiskFull,
    ExperimentRow,
    Store,
    StoreError,
    as_disk_full,
)
from .suggestion_process import SuggestionClient, SuggestionFailure
from .trial_processes import STOP_GRACE
from .trial_template import check_runnable
from .workdir_run import resume_command

DEFAULT_RUNS_DIR = Path("runs")


@dataclass(frozen=True)
class RunOptions:
    experiment_path: Path
    workdir: Path | None = None
    max_trials: int | None = None
    parallel: int | None = None
    max_failed: int | None = None
    resume: bool = False
    trial_args: tuple[str, ...] | None = None
    live: bool | None = None
    stop_grace: float = STOP_GRACE
    report: bool = True


@dataclass(frozen=True)
class RunResult:
    workdir: Path
    outcome: Outcome
    report: Path | None


def run(options: RunOptions, stream: TextIO | None = None) -> RunResult:
    """Run (or resume) an experiment to completion; raises InvalidInput for anything the user must fix and
    DiskFull when the workdir's disk is full (the run then resumes once there is space)."""
    stream = stream or sys.stderr
    spec = load_experiment(options.experiment_path)
    check_runs_locally(spec)
    workdir = options.workdir or DEFAULT_RUNS_DIR / spec.name
    try:
        return _run(options, spec, workdir, stream)
    except (DiskFull, sqlite3.Error, OSError) as err:
        full = as_disk_full(err, workdir / DB_NAME)
        if full is None:
            raise
        full.workdir = workdir
        raise full from None


def _run(options: RunOptions, spec: ExperimentSpec, workdir: Path, stream: TextIO) -> RunResult:
    existed, had_store = _present(workdir), Store.exists(workdir)
    store = Store.open(workdir)
    try:
        stored = store.experiment()
        trials = store.trials() if stored else []
        has_trials = bool(trials)
        if has_trials and not options.resume:
            raise StoreError(f"{workdir} already holds experiment {stored.name!r} with trials; pass --resume to "
                             "continue it, or choose another --workdir")
        resuming = bool(stored and options.resume and has_trials)
        if options.resume and not resuming:
            print(f"nothing to resume in {workdir}; starting the experiment", file=stream)
        spec, trial_args, notes = _effective(spec, stored if resuming else None, options)
        for note in notes:
            print(f"note: {note}", file=stream)
        if stored is not None and resuming:
            _check_start_directory(stored.cwd, options.experiment_path, workdir)
        check_dir = workdir / CHECK_FOLDER
        for flag, value, local in check_runnable(spec, trial_args, check_dir).own_folders:
            own = workdir / TRIALS_FOLDER / "<trial>" / Path(local).relative_to(check_dir)
            print(f"note: each trial writes its {flag} {value} into {own}: trials here share one file system, where "
                  "on a cluster each has its own", file=stream)
        summary = summarize_trials(trials if resuming else [], spec.objective)  # what the run starts from
        if resuming:
            finished = outcome(summary, spec)
            if finished is not None:
                store.update_run_config(_budget(spec), trial_args)
                store.set_experiment_condition(finished.condition, finished.reason, finished.message)
                print(f"experiment {spec.name} is already complete: {finished.message}", file=stream)
                return _finish(store, spec, finished, options, stream)
        return _run_loop(store, spec, summary.completed, resuming, trial_args, options, stream)
    except InvalidInput:
        if not had_store and store.experiment() is None:  # refused before anything was recorded
            store.close()
            _discard(workdir, existed)
        raise
    finally:
        store.close()


def _check_start_directory(cwd: str, experiment_path: Path, workdir: Path) -> None:
    """Trials run where the run was started: refuse to resume (one line) when that directory is gone."""
    if not Path(cwd).is_dir():
        raise StoreError(f"{StartDirectoryGone(cwd)} and continue with: {resume_command(workdir, experiment_path)}")


def _current_directory() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise InvalidInput("the current directory no longer exists; change to an existing one and run again") \
            from None


#: What a run may add to a workdir before it records anything (files, then folders, relative to the workdir).
RUN_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", LOCK_NAME, SUGGESTION_LOG)
#: Where a run checks the folders its trial commands write before any trial exists.
CHECK_FOLDER = f"{TRIALS_FOLDER}/check"
RUN_FOLDERS = (CHECK_FOLDER, TRIALS_FOLDER)


def _present(workdir: Path) -> dict[str, int] | None:
    """None for a workdir that does not exist yet, else the size of each of RUN_FILES and RUN_FOLDERS (-1 for a
    folder) already in it: what a refused run must leave as it found it."""
    if not workdir.exists():
        return None
    present = {name: (workdir / name).stat().st_size for name in RUN_FILES if (workdir / name).is_file()}
    present.update({name: -1 for name in RUN_FOLDERS if (workdir / name).is_dir()})
    return present


def _discard(workdir: Path, existed: dict[str, int] | None) -> None:
    """Remove what a refused run created: the whole workdir if it was new, else the files and folders it added
    (a log that was there is cut back to what it held)."""
    if existed is None:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for name in RUN_FILES:
        path = workdir / name
        try:
            if name not in existed:
                path.unlink(missing_ok=True)
            elif name == SUGGESTION_LOG and path.stat().st_size > existed[name]:
                os.truncate(path, existed[name])  # the service appended to it; nothing else that was there is touched
        except OSError:
            pass
    for name in RUN_FOLDERS:
        if name in existed:
            continue
        if name == CHECK_FOLDER:
            shutil.rmtree(workdir / name, ignore_errors=True)
            continue
        try:
            (workdir / name).rmdir()  # only when the run left it empty
        except OSError:
            pass


def _run_loop(store: Store, spec: ExperimentSpec, completed: int, resuming: bool, trial_args: tuple[str, ...],
              options: RunOptions, stream: TextIO) -> RunResult:
    with SuggestionClient(store.workdir / SUGGESTION_LOG) as service:
        service.validate(katib_messages.experiment_message(api_pb2, spec))
        if resuming:
            store.update_run_config(_budget(spec), trial_args)
            requeued = requeue_unfinished(store)
            if requeued:
                print(f"resuming: {len(requeued)} interrupted trial(s) will run again", file=stream)
            store.set_experiment_condition("Running")
        else:
            store.create_experiment(spec.name, spec.document, str(options.experiment_path), _budget(spec),
                                    trial_args, _current_directory())
        view = ProgressView(spec.max_trial_count, spec.objective.metric, completed, stream, options.live)
        cwd = store.experiment().cwd  # type: ignore[union-attr]
        controller = Controller(spec, store, service, LoopConfig(trial_args, cwd, options.stop_grace), view)
        try:
            finished = controller.run()
        except Interrupted:
            raise Interrupted(store.workdir) from None
        except SuggestionFailure as err:
            raise SuggestionFailure(f"{err}. Running trials were stopped and saved; continue with: "
                                    f"{resume_command(store.workdir, options.experiment_path)}") from None
        except StartDirectoryGone as err:
            raise StoreError(f"{err} and continue with: {resume_command(store.workdir, options.experiment_path)}") \
                from None
        finally:
            view.close()
    return _finish(store, spec, finished, options, stream)


def _finish(store: Store, spec: ExperimentSpec, finished: Outcome, options: RunOptions, stream: TextIO) -> RunResult:
    from .report import read_local, write_report

    # the trials as they ended, summarised once for this line and the report
    report = read_local(store.workdir) if options.report else None
    summary = report.summary if report else summarize_trials(store.trials(), spec.objective)
    best = f"; best trial {summary.best.name} {spec.objective.metric}={summary.best_value}" if summary.best else ""
    print(f"experiment {spec.name} {finished.condition.lower()} ({finished.reason}){best}", file=stream)
    report_path = write_report(store.workdir, report=report) if report else None
    if report_path is not None:
        print(f"report: {report_path} (all of it on one page: {report_path.with_name('report.html')})", file=stream)
    return RunResult(store.workdir, finished, report_path)


def _effective(spec: ExperimentSpec, stored: ExperimentRow | None,
               options: RunOptions) -> tuple[ExperimentSpec, tuple[str, ...], tuple[str, ...]]:
    """The spec with budget overrides applied, the trial arguments to use, and a note per count lowered to fit
    --max-trials."""
    if stored is None:
        spec, notes = spec.fitted_budget(options.max_trials, options.parallel, options.max_failed)
        return spec, tuple(options.trial_args or ()), notes
    previous = experiment_from_document(stored.document)
    difference = _first_difference(previous.identity(), spec.identity())
    if difference:
        raise ExperimentError(f"{options.experiment_path} differs from the experiment stored in the workdir at "
                              f"{difference}; on resume only parallelTrialCount, maxTrialCount and "
                              "maxFailedTrialCount may change")
    budget = stored.budget
    spec = spec.with_budget(budget.get("maxTrialCount"), budget.get("parallelTrialCount"),
                            budget.get("maxFailedTrialCount"))
    if budget.get("maxTrialCount") is None:
        spec = _without_max_trials(spec)
    spec, notes = spec.fitted_budget(options.max_trials, options.parallel, options.max_failed)
    trial_args = tuple(options.trial_args) if options.trial_args is not None else tuple(stored.trial_args)
    if stored.trial_args and trial_args != tuple(stored.trial_args):
        notes += (f"the stored trial arguments {shlex.join(stored.trial_args)} are dropped; trials now get "
                  f"{shlex.join(trial_args) or 'none'}",)
    return spec, trial_args, notes


def _without_max_trials(spec: ExperimentSpec) -> ExperimentSpec:
    return dataclasses.replace(spec, max_trial_count=None)


def _budget(spec: ExperimentSpec) -> dict[str, int | None]:
    return {"maxTrialCount": spec.max_trial_count, "parallelTrialCount": spec.parallel_trial_count,
            "maxFailedTrialCount": spec.max_failed_trial_count}


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    """Dotted path of the first place two JSON-like values differ, or "" if they are equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return ""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new)):
            found = _first_difference(a, b, f"{path}[{index}]")
            if found:
                return found
        return ""
    return "" if old == new else (path or "the top level")
