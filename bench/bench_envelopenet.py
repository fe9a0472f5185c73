"""EnvelopeNet construction against its own start, its worst-case ablation and nas-random, on Fashion-MNIST.

Every run goes through `katib-nas run` (real suggestion service, real trial
processes) with the same trainer for every trial: the truncated budget
(`--epochs`, `--max-train-samples`) of examples/envelopenet-fashion-mnist.yaml.
Per seed:
  - envelopenet: `iterations` construction trials, then the constructed network
    trained once more with final_epochs = iteration_epochs (the same trainer);
  - envelopenet worst_case=true: the same, pruning the strongest branches;
  - nas-random over the same operations, given as many trials.
Reported: the starting network's validation accuracy, the constructed network's,
the worst-case ablation's, the best nas-random trial's, and the wall time of the
construction.

    .venv/bin/python bench/bench_envelopenet.py --seeds 1 2 3 --iterations 5 --max-train-samples 10000
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "envelopenet-fashion-mnist.yaml"


def container(document: dict[str, Any]) -> dict[str, Any]:
    return document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]


def set_settings(document: dict[str, Any], **values: Any) -> None:
    settings = document["spec"]["algorithm"].setdefault("algorithmSettings", [])
    for name, value in values.items():
        settings[:] = [s for s in settings if s["name"] != name] + [{"name": name, "value": str(value)}]


def envelopenet_document(seed: int, iterations: int, worst_case: bool, width: int) -> dict[str, Any]:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["name"] = f"bench-envelopenet-{'worst' if worst_case else 'normal'}-{seed}"
    set_settings(document, seed=seed, iterations=iterations, worst_case=str(worst_case).lower(),
                 final_epochs=_setting(document, "iteration_epochs"), width=width)
    document["spec"]["maxTrialCount"] = iterations + 1
    return document


def nas_random_document(seed: int, trials: int, width: int) -> dict[str, Any]:
    """nas-random over the example's operations, with widths (the envelope's stage widths) and strides to
    choose, as many trials."""
    base = yaml.safe_load(EXAMPLE.read_text())
    document = copy.deepcopy(base)
    document["metadata"]["name"] = f"bench-nas-random-{seed}"
    document["spec"]["algorithm"] = {"algorithmName": "nas-random",
                                     "algorithmSettings": [{"name": "seed", "value": str(seed)}]}
    document["spec"]["objective"]["additionalMetricNames"] = ["Validation-Loss", "params", "flops"]
    document["spec"].pop("metricsCollectorSpec", None)
    document["spec"]["maxTrialCount"] = trials
    document["spec"]["nasConfig"]["graphConfig"]["numLayers"] = 6
    widths = [str(width * 2 ** i) for i in range(3)]
    choices = [{"name": "num_filter", "parameterType": "categorical", "feasibleSpace": {"list": widths}},
               {"name": "stride", "parameterType": "categorical", "feasibleSpace": {"list": ["1", "2"]}}]
    for operation in document["spec"]["nasConfig"]["operations"]:
        operation["parameters"] = operation["parameters"] + copy.deepcopy(choices)
    document["spec"]["trialTemplate"]["trialParameters"] = [
        {"name": "architecture", "description": "Candidate network", "reference": "architecture"}]
    command = container(base)["command"]
    epochs = _setting(base, "iteration_epochs")
    container(document)["command"] = [arg for arg in command if not arg.startswith(("--seed=", "--epochs=",
                                                                                   "--branch-stats"))]
    container(document)["command"] += [f"--epochs={epochs}", f"--seed={seed}"]
    return document


def _setting(document: dict[str, Any], name: str) -> str:
    return next(s["value"] for s in document["spec"]["algorithm"]["algorithmSettings"] if s["name"] == name)


def run(document: dict[str, Any], workdir: Path, trial_args: list[str]) -> tuple[list[dict[str, str]], float]:
    """Run one experiment locally; its trials (from the report's CSV, in suggestion order) and wall time."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "experiment.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    command = [str(Path(sys.executable).with_name("katib-nas")), "run", str(path), "--workdir", str(workdir / "run")]
    command += [f"--trial-arg={arg}" for arg in trial_args]
    start = time.perf_counter()
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{document['metadata']['name']} failed: {done.stderr[-2000:]}")
    with open(workdir / "run" / "report" / "trials.csv") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: int(row["seq"]))
    return rows, elapsed


def accuracy(row: dict[str, str]) -> float:
    return float(row["Validation-Accuracy"]) if row.get("Validation-Accuracy") else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 4),
            "stdev": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "values": [round(v, 4) for v in values]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--max-train-samples", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per trial")
    parser.add_argument("--width", type=int, default=32,
                        help="envelope width of the first stage (doubled per stage); nas-random's widths follow")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-envelopenet")
    args = parser.parse_args()
    trial_args = [f"--max-train-samples={args.max_train_samples}", f"--threads={args.threads}"]
    results: dict[str, list[float]] = {"start": [], "constructed": [], "worst_case": [], "nas_random_best": [],
                                       "construction_seconds": []}
    for seed in args.seeds:
        normal, seconds = run(envelopenet_document(seed, args.iterations, False, args.width),
                              args.workdir / f"normal-{seed}", trial_args)
        worst, _ = run(envelopenet_document(seed, args.iterations, True, args.width), args.workdir / f"worst-{seed}",
                       trial_args)
        randoms, _ = run(nas_random_document(seed, len(normal), args.width), args.workdir / f"random-{seed}",
                         trial_args)
        results["start"].append(accuracy(normal[0]))
        results["constructed"].append(accuracy(normal[-1]))
        results["worst_case"].append(accuracy(worst[-1]))
        results["nas_random_best"].append(max(accuracy(row) for row in randoms))
        results["construction_seconds"].append(seconds)
        print(json.dumps({"seed": seed, **{k: v[-1] for k, v in results.items()},
                          "constructed_architecture": normal[-1].get("architecture", "")}), flush=True)
    print(json.dumps({"iterations": args.iterations, "max_train_samples": args.max_train_samples,
                      "width": args.width,
                      "trials_per_run": args.iterations + 1,
                      **{name: summary(values) for name, values in results.items()}}, indent=2))


if __name__ == "__main__":
    main()
