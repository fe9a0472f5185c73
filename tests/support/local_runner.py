"""`katib-nas run` with stub trials (tests/data/stub_trial.py): the command, the Experiment, the run's state."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..conftest import REPO, load_yaml

STUB = REPO / "tests" / "data" / "stub_trial.py"
DIGITS = REPO / "tests" / "data" / "nas-random-digits.yaml"


#: Only keeps a broken test from hanging the suite; no test asserts on durations.
HANG_GUARD_SECONDS = 600.0


def katib_nas(*args: str | Path, cwd: Path | None = None, timeout: float = HANG_GUARD_SECONDS
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "katib_nas.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def stub_experiment(tmp_path: Path, *stub_args: str, max_trials: int = 4, parallel: int = 2,
                    max_failed: int | None = 2, changes: dict[str, Any] | None = None) -> Path:
    document = load_yaml(DIGITS)
    spec = document["spec"]
    spec["maxTrialCount"], spec["parallelTrialCount"] = max_trials, parallel
    if max_failed is None:
        del spec["maxFailedTrialCount"]
    else:
        spec["maxFailedTrialCount"] = max_failed
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", str(STUB), "--architecture=${trialParameters.architecture}", *stub_args]
    spec.update(changes or {})
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def trials(workdir: Path) -> list[tuple[str, str, int, str]]:
    with sqlite3.connect(workdir / "state.sqlite") as db:
        return db.execute("SELECT name, condition, attempts, message FROM trials ORDER BY seq").fetchall()


def observation(workdir: Path, trial: str) -> dict[str, tuple[str, str, str]]:
    with sqlite3.connect(workdir / "state.sqlite") as db:
        rows = db.execute("SELECT metric, min, max, latest FROM observations WHERE trial = ?", (trial,)).fetchall()
    return {row[0]: row[1:] for row in rows}


def experiment_condition(workdir: Path) -> tuple[str, str]:
    with sqlite3.connect(workdir / "state.sqlite") as db:
        return db.execute("SELECT condition, reason FROM experiment").fetchone()


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def wait_for(predicate, timeout: float = HANG_GUARD_SECONDS) -> None:  # noqa: ANN001 - a zero-argument callable
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def trials_so_far(workdir: Path) -> list[tuple[str, str, int, str]]:
    """The trials, or none while the runner is still creating its store (the file exists before its tables)."""
    try:
        return trials(workdir) if (workdir / "state.sqlite").exists() else []
    except sqlite3.Error:
        return []


def slow_running_trial(workdir: Path) -> str | None:
    """A running trial that has printed that it went slow (the stub prints it once it sees the marker)."""
    running = [row[0] for row in trials_so_far(workdir) if row[1] == "Running"]
    for name in running:
        log = workdir / "trials" / name / "output.log"
        if log.exists() and "slow: sleeping while" in log.read_text():
            return name
    return None


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
