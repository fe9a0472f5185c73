"""What Katib's medianstop early stopping saves on nas-random: trials per CPU-hour at equal best accuracy.

examples/nas-random-medianstop-fashion-mnist.yaml (same seed, so the same architectures in the same order)
runs twice through `katib-nas run`, one trial at a time with one thread, on a Fashion-MNIST subset (1,000
training and 600 validation images, batches of 32): the
baseline with its spec.earlyStopping removed, then as written (Katib's medianstop, min_trials_required 3,
start_step 3). Each trial trains for the example's 8 epochs and reports its validation accuracy after every
epoch; medianstop stops a trial whose best accuracy after `start_step` epochs is below the mean of the
succeeded trials' averages over their first `start_step` epochs.

CPU time is the runner's and every trial's user + system time (getrusage of the waited children), so
other load on the machine does not change it; wall time is printed beside it. Peak memory is the largest
resident set of any one process of that run (runner, suggestion server or trial), measured by a small
wrapper process around each run. The result holds only if both runs find the same best accuracy: the
script prints both.

    .venv/bin/python bench/bench_medianstop.py [--trials 10] [--train 1000] [--batch-size 32] [--seeds 1 2]
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "examples" / "nas-random-medianstop-fashion-mnist.yaml"
#: 600 of Fashion-MNIST's 60,000 training images held out for validation (evaluated after every epoch).
VAL_FRACTION = 0.01


@dataclass(frozen=True)
class Run:
    label: str
    cpu_seconds: float
    wall_seconds: float
    peak_rss_mib: float
    conditions: dict[str, int]
    best_accuracy: float
    epochs_trained: int

    @property
    def trials(self) -> int:
        return sum(self.conditions.values())

    @property
    def trials_per_cpu_hour(self) -> float:
        return self.trials / (self.cpu_seconds / 3600)


def experiment(folder: Path, seed: int, trials: int, train: int, batch: int, early: bool) -> Path:
    document = yaml.safe_load(EXPERIMENT.read_text())
    spec = document["spec"]
    spec.update(maxTrialCount=trials, parallelTrialCount=1, maxFailedTrialCount=trials)
    settings = {s["name"]: s for s in spec["algorithm"]["algorithmSettings"]}
    settings["seed"]["value"] = str(seed)
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    kept = [arg for arg in container["command"]
            if not arg.startswith(("--max-train-samples", "--threads", "--batch-size"))]
    container["command"] = kept + [f"--max-train-samples={train}", f"--val-fraction={VAL_FRACTION}",
                                   f"--batch-size={batch}", "--threads=1"]
    if not early:
        del spec["earlyStopping"]
    path = folder / f"seed{seed}-{'medianstop' if early else 'baseline'}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


#: Runs a command and writes the largest resident set (KiB) of its waited descendants to argv[1].
PEAK_WRAPPER = ("import resource, subprocess, sys\n"
                "code = subprocess.call(sys.argv[2:], stdin=subprocess.DEVNULL)\n"
                "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
                "sys.exit(code)")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(label: str, path: Path, workdir: Path) -> Run:
    peak_file = workdir.with_suffix(".peak")
    cpu_before, wall_before = children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, str(peak_file), sys.executable, "-m", "katib_nas.cli",
                           "run", str(path), "--workdir", str(workdir), "--no-report"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    cpu, wall = children_cpu() - cpu_before, time.perf_counter() - wall_before
    if done.returncode != 0:
        raise SystemExit(f"{label}: katib-nas run failed:\n{done.stderr[-2000:]}")
    peak = int(peak_file.read_text()) / 1024  # ru_maxrss is in KiB on Linux
    with sqlite3.connect(workdir / "state.sqlite") as db:
        conditions = dict(db.execute("SELECT condition, COUNT(*) FROM trials GROUP BY condition").fetchall())
        values = [float(v) for (v,) in db.execute("SELECT max FROM observations WHERE metric = "
                                                   "'Validation-Accuracy' AND max != 'unavailable'")]
        epochs = db.execute("SELECT COUNT(*) FROM metric_logs WHERE metric = 'Validation-Accuracy'").fetchone()[0]
    return Run(label, cpu, wall, peak, conditions, max(values), epochs)


def row(result: Run, baseline: Run) -> str:
    counts = ", ".join(f"{n} {c}" for c, n in sorted(result.conditions.items()))
    return (f"| {result.label} | {result.trials} ({counts}) | {result.epochs_trained} | {result.cpu_seconds:.0f} s | "
            f"{result.wall_seconds:.0f} s | {result.trials_per_cpu_hour:.0f} | "
            f"{result.trials_per_cpu_hour / baseline.trials_per_cpu_hour:.2f}x | {result.best_accuracy:.4f} | "
            f"{result.peak_rss_mib:.0f} MiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--train", type=int, default=1000, help="training images per trial")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="32 gives 31 steps per epoch on 1,000 images, enough for BatchNorm's running statistics "
                             "to settle within the first epoch (the example's 128 gives 8)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    print("| run | trials | epochs reported | CPU time | wall time | trials per CPU-hour | ratio | best accuracy "
          "| peak RSS |\n|---|---|---|---|---|---|---|---|---|")
    ratios, equal = [], 0
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for seed in args.seeds:
            runs = []
            for early in (False, True):
                path = experiment(folder, seed, args.trials, args.train, args.batch_size, early)
                label = f"seed {seed}, {'medianstop' if early else 'baseline'}"
                runs.append(run(label, path, folder / path.stem))
            baseline, stopped = runs
            print(row(baseline, baseline), flush=True)
            print(row(stopped, baseline), flush=True)
            ratios.append(stopped.trials_per_cpu_hour / baseline.trials_per_cpu_hour)
            equal += stopped.best_accuracy == baseline.best_accuracy
    print(f"\nmedianstop / baseline trials per CPU-hour: mean {statistics.mean(ratios):.2f}x "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x); equal best accuracy in {equal} of {len(ratios)} seeds")


if __name__ == "__main__":
    main()
