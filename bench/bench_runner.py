"""The local runner's own overhead per trial: everything but the trial process, against the trials' own time.

An experiment with parallelTrialCount 1 runs through `katib-nas run`'s code path (real `katib-nas serve` over
loopback gRPC, real trial subprocesses). With one trial at a time, the runner's work for a trial happens
between one trial's exit being noticed and the next trial's start: recording its metrics and observation,
GetSuggestions, rendering the template, SQLite transactions, scheduling. So the overhead per trial is the gap
`started_at[i+1] - completed_at[i]` the runner records (both from the same clock), and the baseline is the
trials' own time (process start to exit) in the same run. The trial program is tests/data/stub_trial.py
(a short Python script printing Katib-style metrics); a few real `katib-nas trial` runs on digits give the
ratio for real trials. Target: under 100 ms.

    .venv/bin/python bench/bench_runner.py [--trials 30] [--real 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from katib_nas.runner.local_run import RunOptions, run
from katib_nas.runner.store import Store

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "tests" / "data" / "nas-random-digits.yaml"
STUB = REPO / "tests" / "data" / "stub_trial.py"
TARGET_MS = 100.0


@dataclass(frozen=True)
class Measurement:
    wall: float
    trial_times: list[float]
    gaps: list[float]


def experiment(folder: Path, trials: int, real: bool) -> Path:
    document = yaml.safe_load(EXPERIMENT.read_text())
    spec = document["spec"]
    spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"] = trials, 1, trials
    spec["nasConfig"]["graphConfig"]["numLayers"] = 6  # a space large enough for distinct suggestions
    if not real:
        container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
        container["command"] = ["python3", str(STUB), "--architecture=${trialParameters.architecture}"]
    path = folder / f"experiment-{trials}-{'real' if real else 'stub'}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def measure(folder: Path, trials: int, real: bool = False) -> Measurement:
    workdir = folder / f"run-{trials}-{'real' if real else 'stub'}"
    with open(os.devnull, "w") as quiet:
        start = time.perf_counter()
        result = run(RunOptions(experiment(folder, trials, real), workdir, report=False, live=False), quiet)
        wall = time.perf_counter() - start
    if result.outcome.condition != "Succeeded":
        raise SystemExit(f"benchmark run failed: {result.outcome}")
    store = Store.open_existing(workdir)
    rows = sorted(store.trials(), key=lambda t: t.started_at or 0.0)
    store.close()
    if len(rows) != trials or any(t.duration is None for t in rows):
        raise SystemExit(f"expected {trials} finished trials")
    gaps = [b.started_at - a.completed_at for a, b in zip(rows, rows[1:])]  # type: ignore[operator]
    return Measurement(wall, [t.duration for t in rows], gaps)  # type: ignore[misc]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--real", type=int, default=2, help="real digits trials for the ratio (0 to skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stub = measure(folder, args.trials)
        overhead = statistics.mean(stub.gaps)
        stub_mean = statistics.mean(stub.trial_times)
        print(f"{args.trials} stub trials in {stub.wall:.2f} s, of which trials {sum(stub.trial_times):.2f} s")
        print(f"runner overhead per trial: mean {overhead * 1000:.1f} ms, median "
              f"{statistics.median(stub.gaps) * 1000:.1f} ms, max {max(stub.gaps) * 1000:.1f} ms")
        print(f"mean stub trial {stub_mean * 1000:.1f} ms; overhead / stub trial = {overhead / stub_mean:.3f}")
        print(f"fixed cost (start-up, validation, shutdown): "
              f"{stub.wall - sum(stub.trial_times) - sum(stub.gaps):.2f} s")
        if args.real:
            real = measure(folder, args.real, real=True)
            real_mean = statistics.mean(real.trial_times)
            print(f"real digits trials: mean {real_mean:.2f} s, runner gap mean "
                  f"{statistics.mean(real.gaps) * 1000:.1f} ms; overhead / real trial = {overhead / real_mean:.5f}")
    ok = overhead * 1000 < TARGET_MS
    print(f"target < {TARGET_MS:.0f} ms per trial: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
