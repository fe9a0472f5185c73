"""Restart run of the local runner: kill -9 of the suggestion server and of the runner mid-experiment, resumed.

The experiment is examples/proxylessnas-reinforce-fashion-mnist.yaml (or --algorithm nas-random's example)
with TRIALS trials, one at a time, and the trial command replaced by tests/data/stub_trial.py, whose
metrics are a fixed function of the architecture text. One trial at a time makes every GetSuggestions
request see the same history in every run, so with REINFORCE, whose proposals depend on the metrics of
earlier trials, an uninterrupted run and an interrupted one must propose the same networks in the same
order.

Baseline, in the same run: `katib-nas run` uninterrupted. Then the interrupted run, in a fresh workdir:
`katib-nas run`, SIGKILL of its suggestion server once KILL_SERVER_AFTER trials have succeeded (the runner
stops, saves the running trial and prints the resume command); `katib-nas run --resume`, SIGKILL of the
runner itself once KILL_RUNNER_AFTER trials have succeeded and another is running (its trials and
server die with it); `katib-nas run --resume` to the end. Compared: the assignments in suggestion order,
the trial count, that every trial succeeded, and that every trial ran to completion exactly once (an
attempt killed mid-run is run again under the same name and counts once, when it completes). Reported
beside them: wall time of each run and the peak RSS of the runner with its server and trials.

    .venv/bin/python bench/bench_restart.py [--trials 16] [--algorithm proxylessnas-reinforce]
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
STUB = REPO / "tests" / "data" / "stub_trial.py"
EXAMPLES = {
    "proxylessnas-reinforce": REPO / "examples" / "proxylessnas-reinforce-fashion-mnist.yaml",
    "nas-random": REPO / "examples" / "nas-random-fashion-mnist.yaml",
}
POLL_SECONDS = 0.05
HANG_GUARD_SECONDS = 1800.0


@dataclass(frozen=True)
class Trial:
    seq: int
    name: str
    condition: str
    attempts: int
    assignments: tuple[tuple[str, str], ...]
    completions: int


class PeakRss:
    """Peak RSS of a process and its descendants, sampled from a thread."""

    def __init__(self, process: subprocess.Popen):
        self.root = psutil.Process(process.pid)
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.is_set():
            try:
                tree = [self.root] + self.root.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            self.stop.wait(0.1)

    def finish(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak


def write_experiment(directory: Path, algorithm: str, trials: int) -> Path:
    document = yaml.safe_load(EXAMPLES[algorithm].read_text())
    document["metadata"]["name"] = "restart-bench"
    spec = document["spec"]
    spec.update(maxTrialCount=trials, parallelTrialCount=1, maxFailedTrialCount=0)
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", str(STUB), "--architecture=${trialParameters.architecture}", "--sleep=0.3"]
    path = directory / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def start_run(experiment: Path, workdir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "run", str(experiment), "--workdir",
                             str(workdir), "--no-report", *extra], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def read_trials(workdir: Path) -> list[Trial]:
    if not (workdir / "state.sqlite").exists():
        return []
    try:
        with sqlite3.connect(workdir / "state.sqlite") as db:
            rows = db.execute("SELECT name, seq, condition, attempts FROM trials ORDER BY seq").fetchall()
            values = db.execute("SELECT trial, name, value FROM assignments ORDER BY trial, name").fetchall()
            logs = db.execute("SELECT trial, text FROM logs").fetchall()
    except sqlite3.Error:
        return []
    assignments: dict[str, list[tuple[str, str]]] = {}
    for trial, name, value in values:
        assignments.setdefault(trial, []).append((name, value))
    completions = {name: sum("Validation-Accuracy=" in text for trial, text in logs if trial == name)
                   for name, *_ in rows}
    return [Trial(seq, name, condition, attempts, tuple(assignments.get(name, ())), completions[name])
            for name, seq, condition, attempts in rows]


def wait_until(process: subprocess.Popen, workdir: Path, succeeded: int, running: bool) -> None:
    """Poll the store until `succeeded` trials succeeded (and one is running, if asked)."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while time.monotonic() < deadline:
        trials = read_trials(workdir)
        done = sum(t.condition == "Succeeded" for t in trials)
        if done >= succeeded and (not running or any(t.condition == "Running" for t in trials)):
            return
        if process.poll() is not None:
            raise RuntimeError(f"the runner exited ({process.returncode}) early: {process.stderr.read()}")
        time.sleep(POLL_SECONDS)
    raise RuntimeError("the experiment made no progress")


def suggestion_server(runner: subprocess.Popen) -> psutil.Process:
    children = psutil.Process(runner.pid).children()
    return next(child for child in children if "serve" in child.cmdline())


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=HANG_GUARD_SECONDS)
    return process.returncode, stderr


def uninterrupted(experiment: Path, workdir: Path) -> dict[str, object]:
    start = time.perf_counter()
    process = start_run(experiment, workdir)
    peak = PeakRss(process)
    code, stderr = finish(process)
    return {"exit_code": code, "seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": mib(peak.finish()),
            "last_line": stderr.strip().splitlines()[-1] if stderr.strip() else ""}


def interrupted(experiment: Path, workdir: Path, kill_server_after: int, kill_runner_after: int) -> dict[str, object]:
    start, peaks, events = time.perf_counter(), [], []
    first = start_run(experiment, workdir)
    peak = PeakRss(first)
    wait_until(first, workdir, kill_server_after, running=True)
    suggestion_server(first).send_signal(signal.SIGKILL)
    code, stderr = finish(first)
    peaks.append(peak.finish())
    events.append({"killed": "suggestion server", "runner_exit_code": code, "runner_said": stderr.strip()[-300:]})

    second = start_run(experiment, workdir, "--resume")
    peak = PeakRss(second)
    wait_until(second, workdir, kill_runner_after, running=True)
    second.send_signal(signal.SIGKILL)
    second.wait()
    peaks.append(peak.finish())
    events.append({"killed": "runner", "runner_exit_code": second.returncode})

    third = start_run(experiment, workdir, "--resume")
    peak = PeakRss(third)
    code, stderr = finish(third)
    peaks.append(peak.finish())
    events.append({"resumed to the end": True, "runner_exit_code": code})
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": mib(max(peaks)), "events": events}


def mib(value: float) -> float:
    return round(value / 2**20, 1)


def compare(baseline: list[Trial], resumed: list[Trial], trials: int) -> dict[str, bool]:
    return {
        "same_proposals_in_the_same_order": [t.assignments for t in baseline] == [t.assignments for t in resumed],
        "no_trial_lost": len(resumed) == len(baseline) == trials,
        "every_trial_succeeded": all(t.condition == "Succeeded" for t in baseline + resumed),
        "every_trial_completed_exactly_once": all(t.completions == 1 for t in baseline + resumed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--algorithm", choices=list(EXAMPLES), default="proxylessnas-reinforce")
    parser.add_argument("--kill-server-after", type=int, default=4, help="succeeded trials before the server kill")
    parser.add_argument("--kill-runner-after", type=int, default=10, help="succeeded trials before the runner kill")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as root:
        directory = Path(root)
        experiment = write_experiment(directory, args.algorithm, args.trials)
        baseline_run = uninterrupted(experiment, directory / "uninterrupted")
        interrupted_run = interrupted(experiment, directory / "interrupted", args.kill_server_after,
                                      args.kill_runner_after)
        baseline, resumed = read_trials(directory / "uninterrupted"), read_trials(directory / "interrupted")
        checks = compare(baseline, resumed, args.trials)
        result = {
            "algorithm": args.algorithm, "trials": args.trials,
            "uninterrupted": baseline_run, "interrupted": interrupted_run,
            "wall_time_ratio_interrupted_to_uninterrupted": round(
                float(interrupted_run["seconds"]) / float(baseline_run["seconds"]), 2),  # type: ignore[arg-type]
            "trials_run_again_after_a_kill": sorted(t.name for t in resumed if t.attempts > 1),
            "attempts_interrupted": sum(t.attempts for t in resumed) - len(resumed),
            "checks": checks, "passed": all(checks.values()),
        }
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
