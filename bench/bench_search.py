"""Search quality on a fair protocol: every method, its same-space random control and a hand-designed CNN.

Protocol (per method and seed):
- Search: proposals come from the suggestion engine (the code path of `katib-nas serve`), one trial at a time,
  and every trial runs the trial image's own code (`katib-nas trial`, `katib-nas proxyless-search`, in
  process) on the search split: N_SEARCH Fashion-MNIST training images, scored on the fixed 6,000-image
  validation split. The test set is not read during the search.
- Budget: every method gets the same search budget in CPU-seconds of this process (all threads). nas-random,
  REINFORCE and uniform sampling propose trials until it is spent (the last trial is charged whole);
  envelopenet runs its construction (which costs what its iterations cost) and one-shot ProxylessNAS one
  supernet training; both are charged what they used, reported beside the budget.
- Final network, by each method's own rule: nas-random its best trial by validation accuracy, envelopenet
  its constructed network, proxylessnas one-shot the derived network it reports, REINFORCE its best trial by
  reward, uniform sampling its best by validation accuracy, the hand-designed CNN itself.
- Final training: the same budget for every final network (FINAL_EPOCHS epochs on N_FINAL training images,
  `katib-nas trial --test`): validation accuracy, then the 10,000 test images, read once per network.
- Reported per method and seed: final test and validation accuracy, search and total CPU-seconds, measured
  and predicted latency, parameters, multiply-accumulates; best-so-far validation accuracy against
  CPU-seconds for the plot.
- Latency-constrained variant (--target-fraction): T = fraction x the measured latency of the largest network of
  the proxylessnas space; every latency-aware method reads one latency table per seed, profiled on this machine;
  one-shot searches with the hardware loss, REINFORCE rewards accuracy * (T / predicted latency)^w,
  nas-random keeps its best trial measured at or under T (its networks are outside the table's space). Score: test accuracy of the final network when its measured
  latency is at most 1.05 T, else a miss.

Every (method, seed) runs in its own subprocess with one torch thread; --jobs of them run side by side.
Results go to OUT/results.json (one record per run), OUT/summary.md and OUT/best_so_far.png.

    .venv/bin/python bench/bench_search.py --seeds 1 2 3            # the full protocol
    .venv/bin/python bench/bench_search.py --quick --seeds 1        # about 30 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from katib_nas.contract.assignments import final_architecture
from katib_nas.contract.codec import decode, encode
from katib_nas.contract.cost import count_macs
from katib_nas.contract.metric_format import BEST_ARCHITECTURE_REGEX, BRANCH_STATS_REGEX, KATIB_DEFAULT_REGEX
from katib_nas.contract.supernet import derive
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.envelopenet import EnvelopeNet
from katib_nas.suggestion.core.experiment import ExperimentInfo, TrialRecord, make_trial

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
#: A plain CNN of about the size and latency of the searched networks: 3x3 conv-BN-ReLU layers, two per stage.
HAND_DESIGNED = "in28x28x1-cls10-stem16/w16:c3:c3/w32s2:c3:c3/w64s2:c3:c3"
METHODS = ("nas-random", "envelopenet", "envelopenet-random-prune", "envelopenet-worst-case",
           "envelopenet-mean-square", "proxylessnas-oneshot", "proxylessnas-reinforce", "proxylessnas-uniform",
           "hand-designed")
CONSTRAINED = ("nas-random", "proxylessnas-oneshot", "proxylessnas-reinforce", "proxylessnas-uniform")
#: Methods that rank their trials by the REINFORCE reward, accuracy * (T / predicted latency)^w.
REWARD_RANKED = ("proxylessnas-reinforce", "proxylessnas-uniform")


@dataclass(frozen=True)
class Budget:
    """The protocol's sizes: search split, search CPU budget, final training."""

    search_images: int
    search_cpu_s: float
    final_images: int
    final_epochs: int
    oneshot_epochs: int
    oneshot_warmup: int

    @classmethod
    def of(cls, quick: bool) -> "Budget":
        if quick:
            return cls(search_images=5000, search_cpu_s=150.0, final_images=10000, final_epochs=1,
                       oneshot_epochs=3, oneshot_warmup=1)
        return cls(search_images=12000, search_cpu_s=600.0, final_images=20000, final_epochs=2,
                   oneshot_epochs=6, oneshot_warmup=2)


@dataclass
class Run:
    """One method on one seed: its search trials, its final network and what the final training measured."""

    method: str
    seed: int
    constrained: bool
    target_ms: float | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    search_cpu_s: float = 0.0
    final_architecture: str = ""
    final: dict[str, float] = field(default_factory=dict)
    final_cpu_s: float = 0.0
    note: str = ""


# --- experiments --------------------------------------------------------------------------------------

def example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


def experiment_info(document: dict[str, Any], settings: dict[str, str], name: str) -> ExperimentInfo:
    spec = document["spec"]
    base = {s["name"]: str(s["value"]) for s in spec["algorithm"].get("algorithmSettings") or []}
    objective = spec["objective"]
    return ExperimentInfo(name=name, algorithm=spec["algorithm"]["algorithmName"], settings={**base, **settings},
                          objective_metric=objective["objectiveMetricName"],
                          additional_metrics=tuple(objective.get("additionalMetricNames") or ())
                          + ("predicted-latency-ms", "latency-ms"),
                          parallel_trial_count=1, nas_config=spec["nasConfig"])


def method_experiment(method: str, seed: int, budget: Budget, target_ms: float | None) -> ExperimentInfo | None:
    """The Experiment a method's search runs, as its example writes it, with the run's seed."""
    name = f"{method}-{seed}"
    latency = {"latency_target_ms": f"{target_ms:.4f}"} if target_ms else {"latency_target_ms": "0"}
    if method == "nas-random":
        return experiment_info(example("nas-random-fashion-mnist"), {"seed": str(seed)}, name)
    if method.startswith("envelopenet"):
        control = {"envelopenet-random-prune": {"random_prune": "true"},
                   "envelopenet-worst-case": {"worst_case": "true"},
                   "envelopenet-mean-square": {"statistic": "mean-square"}}.get(method, {})
        return experiment_info(example("envelopenet-fashion-mnist"), {"seed": str(seed), **control}, name)
    if method == "proxylessnas-oneshot":
        return experiment_info(example("proxylessnas-oneshot-fashion-mnist"),
                               {"seed": str(seed), "epochs": str(budget.oneshot_epochs),
                                "warmup_epochs": str(budget.oneshot_warmup), **latency}, name)
    if method in ("proxylessnas-reinforce", "proxylessnas-uniform"):
        uniform = {"reinforce_lr": "0"} if method == "proxylessnas-uniform" else {}
        return experiment_info(example("proxylessnas-reinforce-fashion-mnist"),
                               {"seed": str(seed), **latency, **uniform}, name)
    return None


# --- trials in process ----------------------------------------------------------------------------------

def read_metrics(text: str) -> dict[str, str]:
    """Latest value of every metric in trial output: numbers by Katib's default regex, then the string ones."""
    metrics = {m.group(1): m.group(2) for m in re.finditer(KATIB_DEFAULT_REGEX, text) if m.group(2)}
    for pattern in (BRANCH_STATS_REGEX, BEST_ARCHITECTURE_REGEX):
        metrics.update((m.group(1), m.group(2)) for m in re.finditer(pattern, text))
    return metrics


def run_network_trial(architecture: str, seed: int, epochs: int, images: int, table: str | None,
                      branch_stats: bool = False, test: bool = False, statistic: str = "taylor") -> dict[str, str]:
    """`katib-nas trial` in this process; its metric lines, parsed."""
    from katib_nas.trial_image.trial import TrialOptions, run_trial

    stream = io.StringIO()
    options = TrialOptions(architecture=architecture, dataset="fashion-mnist", epochs=epochs, seed=seed,
                           threads=1, max_train_samples=images, branch_stats=branch_stats, test=test,
                           latency_table=table, branch_statistic=statistic)
    code = run_trial(options, stream)
    metrics = read_metrics(stream.getvalue())
    if code != 0 or "Validation-Accuracy" not in metrics:
        return {}
    return metrics


def run_oneshot_trial(assignments: dict[str, str], images: int, table: str | None) -> dict[str, str]:
    """`katib-nas proxyless-search` in this process."""
    from katib_nas.trial_image.proxyless.search_trial import SearchOptions, run_proxyless_search

    stream = io.StringIO()
    options = SearchOptions(supernet=assignments["architecture"], search=assignments["search"],
                            latency_table=table, dataset="fashion-mnist", max_train_samples=images, threads=1)
    code = run_proxyless_search(options, stream)
    metrics = read_metrics(stream.getvalue())
    return metrics if code == 0 and "Validation-Accuracy" in metrics else {}


# --- search ---------------------------------------------------------------------------------------------

def cpu_seconds() -> float:
    return time.process_time()


def search(run: Run, info: ExperimentInfo, budget: Budget, table: str | None) -> list[TrialRecord]:
    """Propose and train trials until the method is done or its budget is spent; the history."""
    history: list[TrialRecord] = []
    started = cpu_seconds()
    while cpu_seconds() - started < budget.search_cpu_s or not history:
        proposal = engine.suggest(info, history, 1, len(history))
        assignments = proposal.assignments[0]
        labels = proposal.labels[0] if proposal.labels else {}
        if info.algorithm == "envelopenet" and labels.get("katib-nas-envelopenet-phase") == "final":
            break  # the construction is complete: its network goes to the final training
        before = cpu_seconds()
        trial_table = table if info.algorithm == "proxylessnas" else None
        if "search" in assignments:
            metrics = run_oneshot_trial(assignments, budget.search_images, trial_table)
        else:
            epochs = int(assignments.get("epochs", "1"))
            metrics = run_network_trial(assignments["architecture"], int(assignments.get("seed", run.seed)), epochs,
                                        budget.search_images, trial_table, branch_stats=info.algorithm == "envelopenet",
                                        statistic=info.settings.get("statistic", "taylor"))
        condition = "SUCCEEDED" if metrics else "FAILED"
        history.append(make_trial(f"{run.method}-{len(history)}", assignments, condition,
                                  sorted(metrics.items()), labels))
        run.trials.append({"index": len(history) - 1, "cpu_s": cpu_seconds() - started,
                           "trial_cpu_s": cpu_seconds() - before, "assignments": assignments,
                           "metrics": {k: v for k, v in metrics.items() if k not in ("Branch-Stats", "Skip-Gates")}})
        if "search" in assignments:
            break  # one supernet training is the whole one-shot search
    run.search_cpu_s = cpu_seconds() - started
    return history


def pick_final(run: Run, info: ExperimentInfo | None, history: list[TrialRecord]) -> str:
    """The method's own rule for its final network."""
    if info is None:
        return HAND_DESIGNED
    if info.algorithm == "envelopenet":
        construction = EnvelopeNet().construction(info, history, len(history))
        if not construction.final:
            run.note = f"budget ran out in iteration {construction.current.number}; its network is final"
        return encode(construction.networks[-1])
    if run.method == "proxylessnas-oneshot":
        reported = [trial.texts.get("Best-Architecture") for trial in history if trial.succeeded]
        if not reported:
            raise RuntimeError(f"{run.method}: the search trial failed")
        return reported[-1]
    scored = [(score(run, trial, info), trial) for trial in history if trial.succeeded]
    scored = [(value, trial) for value, trial in scored if value is not None]
    if not scored:
        raise RuntimeError(f"{run.method}: no successful trial")
    best = max(scored, key=lambda pair: pair[0])[1]
    text = final_architecture(best.assignments, best.texts)
    assert text is not None
    return text


def score(run: Run, trial: TrialRecord, info: ExperimentInfo) -> float | None:
    """How a method ranks its own trials: REINFORCE and its uniform control by the reward, the others by
    validation accuracy (under a latency target: only networks predicted at or under it)."""
    accuracy = trial.numbers.get("Validation-Accuracy")
    latency = trial.numbers.get("predicted-latency-ms", trial.numbers.get("latency-ms"))
    if accuracy is None:
        return None
    if run.method in REWARD_RANKED and run.target_ms:
        exponent = float(info.settings.get("latency_exponent", "0.07"))
        return accuracy * (run.target_ms / latency) ** exponent if latency else None
    if run.constrained and run.target_ms and (latency is None or latency > run.target_ms):
        return None
    return accuracy


# --- latency -----------------------------------------------------------------------------------------------

def latency_table(seed: int, folder: Path) -> tuple[str, float]:
    """The latency table of the proxylessnas example's supernet (one thread, this machine) and the measured
    latency of the largest network of that space (the slowest candidate in every block)."""
    from katib_nas.cli.profile import experiment_supernet
    from katib_nas.trial_image.proxyless.profiler import Timing, profile_supernet
    from katib_nas.trial_image.proxyless.table import load_table
    from katib_nas.trial_image.runtime import resolve_device

    path = folder / f"latency-table-seed{seed}.json"
    largest_path = folder / f"largest-latency-seed{seed}.json"
    supernet = experiment_supernet(EXAMPLES / "proxylessnas-oneshot-fashion-mnist.yaml")
    if not path.is_file():
        profile_supernet(supernet, resolve_device("cpu"), Timing()).save(path)
    if not largest_path.is_file():
        table = load_table(path)
        slowest = [max(range(len(row)), key=lambda i: row[i]) for row in table.block_options_ms(supernet)]
        largest = encode(derive(supernet, slowest))
        largest_path.write_text(json.dumps({"architecture": largest, "ms": measured_latency_ms(largest)}))
    return str(path), json.loads(largest_path.read_text())["ms"]


def measured_latency_ms(architecture: str) -> float:
    """Batch-1 latency on one thread with the latency table's clock and statistic."""
    from katib_nas.trial_image.proxyless.profiler import Timing, time_network_ms
    from katib_nas.trial_image.runtime import resolve_device

    return time_network_ms(decode(architecture), resolve_device("cpu"), Timing())


def predicted_latency_ms(architecture: str, table: str | None) -> float | None:
    from katib_nas.contract.errors import InvalidInput
    from katib_nas.trial_image.proxyless.table import load_table

    if table is None:
        return None
    try:
        return load_table(table).predict_ms(decode(architecture))
    except InvalidInput:
        return None  # not a network of the proxylessnas space


# --- one job -------------------------------------------------------------------------------------------------

def run_job(method: str, seed: int, budget: Budget, constrained: bool, fraction: float, folder: Path) -> Run:
    import torch

    torch.set_num_threads(1)
    table, largest_ms = latency_table(seed, folder)
    target = fraction * largest_ms if constrained else None
    run = Run(method, seed, constrained, target)
    info = method_experiment(method, seed, budget, target)
    history = search(run, info, budget, table) if info is not None else []
    run.final_architecture = pick_final(run, info, history)
    before = cpu_seconds()
    metrics = run_network_trial(run.final_architecture, seed, budget.final_epochs, budget.final_images, None,
                                test=True)
    run.final_cpu_s = cpu_seconds() - before
    run.final = {name: float(metrics[name]) for name in ("Validation-Accuracy", "Test-Accuracy", "params")
                 if name in metrics}
    run.final["macs"] = float(count_macs(decode(run.final_architecture)))
    run.final["measured-latency-ms"] = measured_latency_ms(run.final_architecture)
    predicted = predicted_latency_ms(run.final_architecture, table)
    if predicted is not None:
        run.final["predicted-latency-ms"] = predicted
    return run


# --- driver -------------------------------------------------------------------------------------------------

def jobs_to_run(methods: list[str], seeds: list[int], constrained: bool) -> list[tuple[str, int, bool]]:
    jobs = [(m, s, False) for s in seeds for m in methods]
    if constrained:
        jobs += [(m, s, True) for s in seeds for m in methods if m in CONSTRAINED]
    return jobs


def run_all(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Every job in a subprocess, `args.jobs` side by side; results in the order the jobs were listed."""
    pending = jobs_to_run(args.methods, args.seeds, args.target_fraction > 0)
    for seed in args.seeds:
        latency_table(seed, folder)  # profiled once per seed, before the jobs that read it start
    running: list[tuple[subprocess.Popen, Path]] = []
    outputs = []
    while pending or running:
        while pending and len(running) < args.jobs:
            method, seed, constrained = pending.pop(0)
            out = folder / f"run-{method}-seed{seed}{'-constrained' if constrained else ''}.json"
            outputs.append(out)
            if out.is_file():
                continue  # finished in an earlier invocation
            command = [sys.executable, __file__, "--job", method, "--seed", str(seed), "--out", str(folder),
                       "--target-fraction", str(args.target_fraction)] + (["--quick"] if args.quick else []) \
                + (["--constrained"] if constrained else [])
            running.append((subprocess.Popen(command, stdout=subprocess.DEVNULL), out))
            print(f"started {method} seed {seed}{' (latency target)' if constrained else ''}", flush=True)
        for process, out in list(running):
            if process.poll() is not None:
                running.remove((process, out))
                print(f"finished {out.name}: exit {process.returncode}", flush=True)
        time.sleep(2)
    return [json.loads(out.read_text()) for out in outputs if out.is_file()]


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ({sd:.2f})"


def summary(records: list[dict[str, Any]], budget: Budget, seeds: list[int], wall_s: float) -> str:
    """The Markdown tables: unconstrained results per method, then the latency-constrained variant."""
    lines = [f"Search split {budget.search_images} images, search budget {budget.search_cpu_s:.0f} CPU-s, final "
             f"training {budget.final_epochs} epoch(s) on {budget.final_images} images, seeds {seeds}, wall time "
             f"{wall_s / 60:.0f} min.", "",
             "| method | test acc % mean (sd) | val acc % mean (sd) | search CPU-s | total CPU-s | measured ms "
             "| predicted ms | params | M MACs | test acc % per seed |", "|---|---|---|---|---|---|---|---|---|---|"]
    free = [r for r in records if not r["constrained"]]
    for method in METHODS:
        runs = [r for r in free if r["method"] == method]
        if runs:
            lines.append(method_row(method, runs))
    constrained = [r for r in records if r["constrained"]]
    if constrained:
        target = statistics.mean(r["target_ms"] for r in constrained)
        lines += ["", f"Latency-constrained: T = {target:.3f} ms (mean over seeds); a final network counts when its "
                      "measured latency is at most 1.05 T.", "",
                  "| method | met 1.05 T | test acc % of those that met it | measured latency / T per seed |",
                  "|---|---|---|---|"]
        for method in METHODS:
            runs = [r for r in constrained if r["method"] == method]
            if runs:
                lines.append(constrained_row(method, runs))
    return "\n".join(lines + reward_lines(records)) + "\n"


def trial_reward(trial: dict[str, Any], target_ms: float | None, exponent: float) -> float | None:
    """The REINFORCE reward of a finished search trial: accuracy, times (T / predicted latency)^w under a target."""
    metrics = trial["metrics"]
    if "Validation-Accuracy" not in metrics:
        return None
    accuracy = float(metrics["Validation-Accuracy"])
    if not target_ms:
        return accuracy
    latency = float(metrics.get("predicted-latency-ms", "nan"))
    return accuracy * (target_ms / latency) ** exponent if latency > 0 else None


def reward_lines(records: list[dict[str, Any]]) -> list[str]:
    """REINFORCE against its uniform control on what it optimises: the reward of the trials it samples."""
    exponent = float(experiment_info(example("proxylessnas-reinforce-fashion-mnist"), {}, "reward")
                     .settings.get("latency_exponent", "0.07"))
    lines = ["", f"REINFORCE and the same space sampled uniformly, scored on the reward of their search trials "
                 f"(validation accuracy; under the target, accuracy x (T / predicted latency)^{exponent:g}): mean "
                 "over all trials of a run, over its second half, and its best; mean (sd) over seeds.", "",
             "| method | target | trials per run | mean reward % | second-half mean reward % | best reward % |",
             "|---|---|---|---|---|---|"]
    for method in REWARD_RANKED:
        for constrained in (False, True):
            runs = [r for r in records if r["method"] == method and r["constrained"] == constrained]
            rewards = [[value for t in r["trials"] if (value := trial_reward(t, r["target_ms"], exponent)) is not None]
                       for r in runs]
            rewards = [values for values in rewards if values]
            if not rewards:
                continue
            lines.append("| " + " | ".join([
                method, "T" if constrained else "none", f"{statistics.mean(len(v) for v in rewards):.1f}",
                mean_sd([statistics.mean(v) * 100 for v in rewards]),
                mean_sd([statistics.mean(v[len(v) // 2:]) * 100 for v in rewards]),
                mean_sd([max(v) * 100 for v in rewards])]) + " |")
    return lines


def method_row(method: str, runs: list[dict[str, Any]]) -> str:
    finals = [r["final"] for r in runs]
    predicted = [f["predicted-latency-ms"] for f in finals if "predicted-latency-ms" in f]
    cells = [method, mean_sd([f["Test-Accuracy"] * 100 for f in finals]),
             mean_sd([f["Validation-Accuracy"] * 100 for f in finals]),
             f"{statistics.mean(r['search_cpu_s'] for r in runs):.0f}",
             f"{statistics.mean(r['search_cpu_s'] + r['final_cpu_s'] for r in runs):.0f}",
             f"{statistics.mean(f['measured-latency-ms'] for f in finals):.3f}",
             f"{statistics.mean(predicted):.3f}" if predicted else "-",
             f"{statistics.mean(f['params'] for f in finals) / 1000:.0f}k",
             f"{statistics.mean(f['macs'] for f in finals) / 1e6:.1f}",
             ", ".join(f"{f['Test-Accuracy'] * 100:.2f}" for f in finals)]
    return "| " + " | ".join(cells) + " |"


def constrained_row(method: str, runs: list[dict[str, Any]]) -> str:
    ratios = [r["final"]["measured-latency-ms"] / r["target_ms"] for r in runs]
    met = [r["final"]["Test-Accuracy"] * 100 for r, ratio in zip(runs, ratios) if ratio <= 1.05]
    cells = [method, f"{len(met)}/{len(runs)}", mean_sd(met), ", ".join(f"{ratio:.2f}" for ratio in ratios)]
    return "| " + " | ".join(cells) + " |"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Best-so-far validation accuracy against search CPU-seconds, mean and spread over seeds, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method in METHODS:
        runs = [r for r in records if r["method"] == method and not r["constrained"] and r["trials"]]
        if not runs:
            continue
        grid = sorted({t["cpu_s"] for r in runs for t in r["trials"]})
        columns = [[value for r in runs if not math.isnan(value := best_so_far(r["trials"], x))] for x in grid]
        mean = [statistics.mean(column) if column else math.nan for column in columns]
        low = [min(column, default=math.nan) for column in columns]
        high = [max(column, default=math.nan) for column in columns]
        line, = ax.step(grid, mean, where="post", label=method)
        ax.fill_between(grid, low, high, step="post", alpha=0.15, color=line.get_color())
    ax.set_xlabel("search CPU-seconds")
    ax.set_ylabel("best validation accuracy so far (truncated trials)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def best_so_far(trials: list[dict[str, Any]], cpu_s: float) -> float:
    values = [float(t["metrics"]["Validation-Accuracy"]) for t in trials
              if t["cpu_s"] <= cpu_s and "Validation-Accuracy" in t["metrics"]]
    return max(values) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--quick", action="store_true", help="the small budget (one seed: about 30 min, 2 cores)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--jobs", type=int, default=2, help="runs side by side, one thread each (default 2)")
    parser.add_argument("--target-fraction", type=float, default=0.6,
                        help="latency-constrained variant: T = this x the largest network's latency (0: skip it)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_search"))
    parser.add_argument("--job", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--constrained", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    budget = Budget.of(args.quick)
    if args.job:
        run = run_job(args.job, args.seed, budget, args.constrained, args.target_fraction, args.out)
        name = f"run-{args.job}-seed{args.seed}{'-constrained' if args.constrained else ''}.json"
        (args.out / name).write_text(json.dumps(dataclasses.asdict(run), indent=1))
        return
    started = time.monotonic()
    records = run_all(args, args.out)
    wall = time.monotonic() - started
    (args.out / "results.json").write_text(json.dumps({"budget": dataclasses.asdict(budget), "seeds": args.seeds,
                                                       "wall_s": wall, "runs": records}, indent=1))
    text = summary(records, budget, args.seeds, wall)
    (args.out / "summary.md").write_text(text)
    plot(records, args.out / "best_so_far.png")
    print(text)


if __name__ == "__main__":
    main()
