"""What a workdir's run is, read without changing anything: its experiment, whether a runner is using it, whether
it is the demo's, and the command that continues it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .demo import is_demo_document
from .store import ExperimentRow, Store, runner_pid

FINAL_CONDITIONS = ("Succeeded", "Failed")


@dataclass(frozen=True)
class WorkdirRun:
    """The run a workdir holds, as a user needs to know it before touching the workdir."""

    workdir: Path
    name: str
    condition: str
    source: str
    cwd: str
    trials: int
    is_demo: bool
    in_use_by: int | None

    @classmethod
    def of(cls, workdir: Path, experiment: ExperimentRow, trials: int) -> "WorkdirRun":
        return cls(workdir, experiment.name, experiment.condition, experiment.source, experiment.cwd, trials,
                   is_demo_document(experiment.document), runner_pid(workdir))

    @property
    def interrupted(self) -> bool:
        """Stopped before it finished (Ctrl-C, SIGTERM, a crash, a full disk) and no runner is using it."""
        return self.in_use_by is None and self.condition not in FINAL_CONDITIONS

    def experiment_path(self) -> Path:
        """The Experiment file the run was started with, as a path that works from anywhere."""
        source = Path(self.source)
        return source if source.is_absolute() else Path(self.cwd) / source

    def resume_command(self) -> str:
        return resume_command(self.workdir, self.experiment_path(), demo=self.is_demo)

    def describe(self) -> str:
        """`experiment 'name' (3 trials)`."""
        trials = "1 trial" if self.trials == 1 else f"{self.trials} trials"
        return f"experiment {self.name!r} ({trials})"


def resume_command(workdir: Path, experiment_path: Path | None, demo: bool = False) -> str:
    """The command that continues a run: the demo's own, or `katib-nas run` of its Experiment file."""
    if demo:
        return f"katib-nas demo --workdir {workdir} --resume"
    return f"katib-nas run {experiment_path} --workdir {workdir} --resume"


def read_run(workdir: Path) -> WorkdirRun | None:
    """The run in `workdir`, or None when it holds none; StoreError for a state file that cannot be read."""
    if not Store.exists(workdir):
        return None
    store = Store.open_existing(workdir)
    try:
        experiment = store.experiment()
        if experiment is None:
            return None
        count = len(store.trials())
    finally:
        store.close()
    return WorkdirRun.of(workdir, experiment, count)
