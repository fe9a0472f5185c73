"""End to end: the test Experiment on digits, real gRPC to `katib-nas serve`, real `katib-nas trial` subprocesses.

Also: the runner killed with SIGKILL mid-experiment takes its trials and server with it, and --resume finishes
the experiment without running any completed trial again.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

from katib_nas.contract.codec import decode

from .conftest import REPO

DIGITS = REPO / "tests" / "data" / "nas-random-digits.yaml"
#: Only keeps a broken test from hanging the suite; no test asserts on durations.
HANG_GUARD_SECONDS = 600.0


def katib_nas(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "katib_nas.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=HANG_GUARD_SECONDS)


def rows(workdir: Path, query: str) -> list[tuple]:
    with sqlite3.connect(workdir / "state.sqlite") as db:
        return db.execute(query).fetchall()


def test_four_trial_nas_random_experiment_on_digits(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    result = katib_nas("run", DIGITS, "--workdir", workdir)
    assert result.returncode == 0, result.stderr
    trials = rows(workdir, "SELECT name, condition FROM trials ORDER BY seq")
    assert [t[1] for t in trials] == ["Succeeded"] * 4
    architectures = [r[0] for r in rows(workdir, "SELECT value FROM assignments WHERE name = 'architecture'")]
    assert len(set(architectures)) == 4
    for text in architectures:
        assert decode(text).input_shape == (8, 8, 1)
    metrics = dict(((t, m), v) for t, m, v in rows(workdir, "SELECT trial, metric, latest FROM observations"))
    for name, _ in trials:
        assert 0.0 < float(metrics[(name, "Validation-Accuracy")]) <= 1.0
        assert int(float(metrics[(name, "params")])) > 0 and float(metrics[(name, "latency-ms")]) > 0
    # Katib's request pattern: first as many trials as parallel slots, then one per finished trial.
    requests = [line for line in (workdir / "suggestion.log").read_text().splitlines()
                if "GetSuggestions experiment=" in line]  # the line each call ends with
    assert "requested=2 trials=0" in requests[0]
    assert all("outcome=ok" in line for line in requests)
    report = workdir / "report"
    assert (report / "best_architecture.txt").read_text().strip() in architectures
    assert (report / "pareto.png").stat().st_size > 0 and (report / "best_network.svg").stat().st_size > 0


def trial_processes(architectures: list[str]) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if any(f"--architecture={text}" in cmdline for text in architectures):
            found.append(process)
    return found


def objective_printed(workdir: Path, trial: str) -> bool:
    return "Validation-Accuracy=" in (workdir / "trials" / trial / "output.log").read_text()


def test_sigkill_then_resume_loses_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    runner = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "run", str(DIGITS), "--workdir",
                               str(workdir), "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def running_architectures() -> list[str]:
        return [r[0] for r in rows(workdir, "SELECT a.value FROM assignments a JOIN trials t ON a.trial = t.name "
                                            "WHERE t.condition = 'Running' AND a.name = 'architecture'")]

    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        assert time.monotonic() < deadline and runner.poll() is None
        if (workdir / "state.sqlite").exists():
            try:
                conditions = [r[0] for r in rows(workdir, "SELECT condition FROM trials")]
            except sqlite3.OperationalError:  # the file exists before the runner has created its tables
                conditions = []
            # stop while a trial runs whose process the check below can see (so that check is not vacuous)
            if "Succeeded" in conditions and "Running" in conditions and trial_processes(running_architectures()):
                break
        time.sleep(0.1)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    before = {r[0]: r[1:] for r in rows(workdir, "SELECT name, condition, attempts, completed_at FROM trials")}
    running = [name for name, row in before.items() if row[0] == "Running"]
    architectures = [r[0] for r in rows(workdir, "SELECT value FROM assignments")]
    finished_at_kill = {name: objective_printed(workdir, name) for name in running}
    psutil.wait_procs(trial_processes(architectures), timeout=HANG_GUARD_SECONDS)
    assert trial_processes(architectures) == []
    # The trials died with the runner: none went on to finish (a survivor would print its objective).
    assert {name: objective_printed(workdir, name) for name in running} == finished_at_kill
    resumed = katib_nas("run", DIGITS, "--workdir", workdir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {len(running)} interrupted trial(s) will run again" in resumed.stderr
    after = {r[0]: r[1:] for r in rows(workdir, "SELECT name, condition, attempts, completed_at FROM trials")}
    assert len(after) == 4 and all(row[0] == "Succeeded" for row in after.values())
    for name, row in before.items():
        if row[0] == "Succeeded":
            assert after[name] == row  # not run again: same attempt, same completion time
    for name in running:
        assert after[name][1] == 2


def test_a_trial_refusing_the_data_says_why_on_the_runners_line(tmp_path: Path) -> None:
    """The Experiment's trials pointed at a file of 28x28 images while its nasConfig says 8x8: every trial exits
    2 before training, and the runner's line for it carries the trial's one-line reason, not only its exit code
    (before: `failed in 1.2s: exited with code 2`, the reason only in trials/NAME/output.log)."""
    import numpy as np

    data = tmp_path / "mine.npz"
    np.savez(data, x=np.zeros((20, 28, 28), np.uint8), y=np.arange(20) % 10)
    result = katib_nas("run", DIGITS, "--workdir", tmp_path / "run", "--max-trials", "2", "--parallel", "1",
                       "--trial-arg=--dataset=npz", f"--trial-arg=--data-dir={data}")
    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("trial ")]
    assert len(failed) == 2, result.stderr
    reason = ("exited with code 2: katib-nas trial: error: architecture input 8x8x1 does not match the images of "
              "npz (28x28x1); change the 'in' part of the architecture text (in an Experiment: graphConfig's "
              "inputSizes [H, W, C])")
    assert all(" failed in " in line and reason in line for line in failed), failed
    assert rows(tmp_path / "run", "SELECT message FROM trials") == [("exited with code 2",)] * 2
