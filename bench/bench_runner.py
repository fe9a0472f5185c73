"""The local runner's own overhead per trial: everything but the trial process, against the trials' own time.

Two runs of the same experiment with a tiny trial program (a Python script that prints Katib-style metrics)
differ only in their number of trials, so fixed costs (server start, validation, report) cancel:

    overhead per trial = ((wall_B - trial_time_B) - (wall_A - trial_time_A)) / (trials_B - trials_A)

where a trial's time is its process lifetime (start to exit) as the runner records it, and parallelTrialCount
is 1 so trial times add up. The ratio to the mean trial time is printed too; with the real `katib-nas trial`
(several seconds on digits) the same absolute overhead is a far smaller fraction. Target: under 100 ms.

    .venv/bin/python bench/bench_runner.py [--small 5] [--large 35] [--real 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from katib_nas.suggestion.local.runner import RunOptions, run
from katib_nas.suggestion.local.store import Store

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "tests" / "data" / "nas-random-digits.yaml"
STUB = REPO / "tests" / "data" / "stub_trial.py"
TARGET_MS = 100.0


@dataclass(frozen=True)
class Measurement:
    trials: int
    wall: float
    trial_time: float


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
    durations = [t.duration for t in store.trials() if t.duration is not None]
    store.close()
    if len(durations) != trials:
        raise SystemExit(f"expected {trials} finished trials, found {len(durations)}")
    return Measurement(trials, wall, sum(durations))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=5)
    parser.add_argument("--large", type=int, default=35)
    parser.add_argument("--real", type=int, default=2, help="real digits trials for the ratio (0 to skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small, large = measure(folder, args.small), measure(folder, args.large)
        overhead = ((large.wall - large.trial_time) - (small.wall - small.trial_time)) / (large.trials - small.trials)
        stub_mean = large.trial_time / large.trials
        print(f"stub trials: {small.trials} in {small.wall:.2f} s (trials {small.trial_time:.2f} s), "
              f"{large.trials} in {large.wall:.2f} s (trials {large.trial_time:.2f} s)")
        print(f"fixed cost (server start, validation): {small.wall - small.trial_time - small.trials * overhead:.2f} s")
        print(f"runner overhead per trial: {overhead * 1000:.1f} ms; mean stub trial {stub_mean * 1000:.1f} ms; "
              f"overhead / stub trial = {overhead / stub_mean:.2f}")
        if args.real:
            real = measure(folder, args.real, real=True)
            real_mean = real.trial_time / real.trials
            print(f"real digits trials: mean {real_mean:.2f} s; overhead / real trial = {overhead / real_mean:.4f}")
    ok = overhead * 1000 < TARGET_MS
    print(f"target < {TARGET_MS:.0f} ms per trial: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
