"""Search quality on a fair, paired protocol: every method, its same-space random control and a hand-designed CNN.

Protocol (per method and seed s; every method of a seed is paired with every other on the same data):
- Data: the seed picks the training/validation split (`--split-seed s`): the search trains on SEARCH_IMAGES of
  its training part and scores on its 6,000 validation images. The 10,000 test images are read only by the
  final trainings, once per trained network.
- Search: proposals come from the suggestion engine (the code path of `katib-nas serve`), one trial at a time;
  every trial runs the trial image's own code (`katib-nas trial`, `katib-nas proxyless-search`, in process).
- Budget: the same search budget in CPU-seconds of this process for every method. Trial-sampling methods
  (nas-random, REINFORCE, uniform, the envelope-family best-of-k) stop at the budget: a trial that ends past it
  is discarded and the search is charged the budget. envelopenet runs its construction until it is complete or
  the budget is spent (then its best evaluated iteration is final); one-shot runs one supernet training and is
  charged what it used (the path ranking below is not charged).
- Same random stream: REINFORCE and uniform sampling of its space draw from the same random numbers (same
  experiment name and seed; uniform is REINFORCE with a zero learning rate), so their first batch is the
  same networks; envelopenet and random pruning share their start network and first trial.
- Final network, by each method's own rule: nas-random and uniform sampling their best trial by validation
  accuracy, REINFORCE its best by reward, envelopenet the network its construction chose (the best-scoring
  iteration), best-of-k its best network, one-shot the derived network it reports, the hand-designed CNN itself.
- Final training: every final network is trained RETRAINS times from fresh seeds (never a seed of the search),
  FINAL_EPOCHS epochs on FINAL_IMAGES training images, then scored once on the test set; reported is the mean
  over the retrains.
- One-shot also ranks its derived network among RANK_PATHS uniformly sampled paths on the same supernet
  weights, after BatchNorm recalibration (`--rank-paths`).
- Latency-constrained variant: T = fraction x the measured latency of the largest network of the proxylessnas
  space; one-shot searches with the hardware loss and derives within T by the latency table (profiled once per
  seed on this machine). A constrained final network counts when its measured latency is at most 1.05 T.
- Latency is measured separately (`--latency`), batch 1, one thread, median of LATENCY_REPEATS runs, when the
  machine is otherwise idle.

Resumable: every finished (method, seed, constrained) cell is appended to OUT/results.jsonl as soon as it ends,
and a rerun skips the cells already there. Within a cell, every finished search trial, the end of the search and
every finished retrain go to OUT/jobs/<cell>.journal.jsonl: a stopped cell resumes after its last finished step
(trials are seeded, so the resumed search proposes what the uninterrupted one would; the CPU-seconds of the
finished steps stay charged, the step cut short is run again). Results and journals record their budget: a
folder holding another budget's cells (a --quick run's, say) stops the run with one line before anything runs.
A run holds OUT/run.lock and each cell job OUT/jobs/<cell>.lock, so a second run on the same folder stops with
one line instead of writing beside the first. Without Fashion-MNIST the run stops with one line before any cell
starts; a cell that fails leaves its output in OUT/jobs/<cell>.log, the others go on, and the run ends non-zero
naming the failed cells (the same command retries them).
The summary (search_report.py) and OUT/search.json (every cell, measured latencies merged, in the shape of
the earlier quick run's JSON: runs[].method, seed, constrained, final["Test-Accuracy"]) are rewritten after
every cell.

    .venv/bin/python bench/bench_search.py --quick --seeds 1           # a smoke run
    .venv/bin/python bench/bench_search.py --out bench/results/search-standard --seeds 1 2 3 4 5 6 7 8
    .venv/bin/python bench/bench_search.py --out bench/results/search-standard --latency   # on a quiet machine
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from katib_nas.contract.assignments import final_architecture
from katib_nas.contract.codec import decode, encode
from katib_nas.contract.cost import architecture_macs
from katib_nas.contract.metric_format import read_metric_lines
from katib_nas.contract.supernet import derive
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.envelopenet import EnvelopeNet
from katib_nas.suggestion.core.algorithms.envelopenet.config import EnvelopeNetConfig, resolve
from katib_nas.suggestion.core.algorithms.envelopenet.construct import initial_network, next_network
from katib_nas.suggestion.core.algorithms.envelopenet.schedule import final_network
from katib_nas.suggestion.core.algorithms.envelopenet.stats import Statistics
from katib_nas.suggestion.core.experiment import ExperimentInfo, TrialRecord, make_trial

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
#: A plain CNN of about the size and latency of the searched networks: 3x3 conv-BN-ReLU layers, two per stage.
HAND_DESIGNED = "in28x28x1-cls10-stem16/w16:c3:c3/w32s2:c3:c3/w64s2:c3:c3"
METHODS = ("nas-random", "envelopenet", "envelopenet-random-prune", "envelopenet-random-best-of-k",
           "envelopenet-worst-case", "envelopenet-mean-square", "proxylessnas-oneshot", "proxylessnas-reinforce",
           "proxylessnas-uniform", "hand-designed")
#: The methods of the standard run: the ablations (worst case, mean square) were measured in the quick runs.
STANDARD_METHODS = tuple(m for m in METHODS if m not in ("envelopenet-worst-case", "envelopenet-mean-square"))
CONSTRAINED = ("nas-random", "proxylessnas-oneshot", "proxylessnas-reinforce", "proxylessnas-uniform")
STANDARD_CONSTRAINED = ("proxylessnas-oneshot",)
#: Methods that rank their trials by the REINFORCE reward, accuracy * (T / predicted latency)^w.
REWARD_RANKED = ("proxylessnas-reinforce", "proxylessnas-uniform")
#: Seeds of the final trainings: far from every search seed (trial seeds are the run seed or envelopenet's
#: base * 1e6 + ...), distinct per run seed and retrain.
RETRAIN_SEED_BASE = 900_000_000
#: Draws of envelopenet-random-best-of-k before it gives up finding a network it has not trained.
FAMILY_DRAWS = 1000
LATENCY_REPEATS = 7
RESULTS = "results.jsonl"
#: Every cell as one document in the shape of bench/results/search-quick-2026-11-30.json (runs[]), rewritten
#: with the summary, so that runs of either protocol are read alike.
SEARCH_JSON = "search.json"
LATENCIES = "latency.jsonl"
#: OUT/largest-latency-seed<seed>.json: the largest network of the proxylessnas space, its latency as profiled
#: before the seed's searches ("ms") and, after the --latency pass, its median there ("median-ms").
LARGEST = "largest-latency-seed"


@dataclass(frozen=True)
class Budget:
    """The protocol's sizes: search split, search CPU budget, final training, one-shot schedule."""

    search_images: int
    search_cpu_s: float
    final_images: int
    final_epochs: int
    retrains: int
    oneshot_epochs: int
    oneshot_warmup: int
    rank_paths: int
    envelope_width: int
    envelope_iterations: int
    envelope_replicas: int

    @classmethod
    def of(cls, quick: bool) -> "Budget":
        if quick:
            return cls(search_images=5000, search_cpu_s=150.0, final_images=10000, final_epochs=1, retrains=2,
                       oneshot_epochs=3, oneshot_warmup=1, rank_paths=5, envelope_width=16,
                       envelope_iterations=5, envelope_replicas=1)
        return cls(search_images=12000, search_cpu_s=1500.0, final_images=30000, final_epochs=2, retrains=2,
                   oneshot_epochs=24, oneshot_warmup=4, rank_paths=20, envelope_width=32,
                   envelope_iterations=6, envelope_replicas=2)


@dataclass
class Run:
    """One method on one seed: its search trials, its final network and what the final trainings measured."""

    method: str
    seed: int
    constrained: bool
    target_ms: float | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    search_cpu_s: float = 0.0
    final_architecture: str = ""
    final: dict[str, float] = field(default_factory=dict)
    retrains: list[dict[str, float]] = field(default_factory=list)
    final_cpu_s: float = 0.0
    search: dict[str, float] = field(default_factory=dict)
    note: str = ""


@contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock` while the block runs (the kernel drops it when the process ends, however
    it ends); a second bench_search on the same `what` stops with one line instead of writing beside the first."""
    import fcntl

    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"bench_search: error: {what} is in use by another bench_search ({lock} is locked); "
                             "wait for it to end or stop it") from None
        yield


def check_data(directory: Path | None = None) -> None:
    """Every cell trains and tests on Fashion-MNIST: stop with one line before any cell starts when a file is
    missing, rather than let each cell fail on its own."""
    from katib_nas.trial_image.data import FASHION_MNIST_DIR

    for part in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            path = (directory or FASHION_MNIST_DIR) / f"{part}-{kind}-ubyte.gz"
            if not path.is_file():
                raise SystemExit(f"bench_search: error: {path} not found: every cell trains and tests on "
                                 "Fashion-MNIST; install it with make data (Debian package dataset-fashion-mnist)")


def cell_key(method: str, seed: int, constrained: bool) -> str:
    return f"{method}-seed{seed}{'-constrained' if constrained else ''}"


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


ENVELOPE_CONTROLS = {"envelopenet-random-prune": {"random_prune": "true"},
                     "envelopenet-random-best-of-k": {"random_prune": "true"},
                     "envelopenet-worst-case": {"worst_case": "true"},
                     "envelopenet-mean-square": {"statistic": "mean-square"}}


def method_experiment(method: str, seed: int, budget: Budget, target_ms: float | None) -> ExperimentInfo | None:
    """The Experiment a method's search runs, as its example writes it, with the run's seed."""
    latency = {"latency_target_ms": f"{target_ms:.4f}" if target_ms else "0"}
    if method == "nas-random":
        return experiment_info(example("nas-random-fashion-mnist"), {"seed": str(seed)}, f"{method}-{seed}")
    if method.startswith("envelopenet"):
        settings = {"seed": str(seed), "width": str(budget.envelope_width),
                    "iterations": str(budget.envelope_iterations), "replicas": str(budget.envelope_replicas),
                    **ENVELOPE_CONTROLS.get(method, {})}
        return experiment_info(example("envelopenet-fashion-mnist"), settings, f"envelopenet-{seed}")
    if method == "proxylessnas-oneshot":
        return experiment_info(example("proxylessnas-oneshot-fashion-mnist"),
                               {"seed": str(seed), "epochs": str(budget.oneshot_epochs),
                                "warmup_epochs": str(budget.oneshot_warmup), **latency}, f"{method}-{seed}")
    if method in REWARD_RANKED:
        uniform = {"reinforce_lr": "0"} if method == "proxylessnas-uniform" else {}
        # One experiment name for both: the same random numbers draw their paths.
        return experiment_info(example("proxylessnas-reinforce-fashion-mnist"),
                               {"seed": str(seed), **latency, **uniform}, f"proxylessnas-reinforce-{seed}")
    return None


# --- trials in process ----------------------------------------------------------------------------------

def finished(code: int, metrics: dict[str, str]) -> dict[str, str]:
    """A trial's metrics when it exited 0 with a finite Validation-Accuracy; otherwise {} (a failed trial)."""
    accuracy = metrics.get("Validation-Accuracy", "nan")
    return metrics if code == 0 and math.isfinite(float(accuracy)) else {}


def run_network_trial(architecture: str, seed: int, epochs: int, images: int, table: str | None,
                      branch_stats: bool = False, test: bool = False, statistic: str = "taylor",
                      split_seed: int | None = None, checkpoint_dir: Path | None = None) -> dict[str, str]:
    """`katib-nas trial` in this process; its metric lines, parsed. With `checkpoint_dir` a stopped training
    continues from its last finished epoch."""
    from katib_nas.trial_image.trial import TrialOptions, run_trial

    stream = io.StringIO()
    options = TrialOptions(architecture=architecture, dataset="fashion-mnist", epochs=epochs, seed=seed,
                           threads=1, max_train_samples=images, branch_stats=branch_stats, test=test,
                           latency_table=table, branch_statistic=statistic, split_seed=split_seed,
                           checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None)
    return finished(run_trial(options, stream), read_metric_lines(stream.getvalue()))


def run_oneshot_trial(assignments: dict[str, str], images: int, table: str | None, split_seed: int,
                      rank_paths: int) -> dict[str, str]:
    """`katib-nas proxyless-search` in this process."""
    from katib_nas.trial_image.proxyless.search_trial import SearchOptions, run_proxyless_search

    stream = io.StringIO()
    options = SearchOptions(supernet=assignments["architecture"], search=assignments["search"],
                            latency_table=table, dataset="fashion-mnist", max_train_samples=images, threads=1,
                            split_seed=split_seed, rank_paths=rank_paths)
    return finished(run_proxyless_search(options, stream), read_metric_lines(stream.getvalue()))


# --- search ---------------------------------------------------------------------------------------------

def cpu_seconds() -> float:
    return time.process_time()


@dataclass
class Clock:
    """CPU-seconds spent by the search so far, and the part not charged to it (one-shot's path ranking)."""

    started: float = field(default_factory=cpu_seconds)
    uncharged: float = 0.0

    @classmethod
    def resumed(cls, used: float) -> "Clock":
        """A clock that has already counted `used` CPU-seconds (a resumed search's finished trials)."""
        return cls(started=cpu_seconds() - used)

    def used(self) -> float:
        return cpu_seconds() - self.started - self.uncharged


@dataclass
class Journal:
    """The finished steps of one cell (a JSON line each: search trials, best-of-k candidates, the search's end,
    retrains), so that a stopped cell resumes after its last finished step instead of starting again."""

    path: Path | None
    entries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, path: Path | None) -> "Journal":
        """The journal at `path`; a last line cut by the stop is dropped, and the file rewritten without it."""
        if path is None or not path.is_file():
            return cls(path)
        entries = cls.read(path)
        path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
        return cls(path, entries)

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """The entries of the journal at `path` up to a line cut by a stop, without writing it."""
        entries: list[dict[str, Any]] = []
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return entries

    def begin(self, budget: dict[str, Any]) -> None:
        """Record the cell's budget as its first entry; a journal begun at another budget is not resumed."""
        if not self.entries:
            self.add("budget", budget=budget)
        elif self.entries[0] != {"kind": "budget", "budget": budget}:
            raise SystemExit(budget_error(self.path, self.entries[0].get("budget"), budget))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries if entry["kind"] == kind]

    def add(self, kind: str, **fields: Any) -> None:
        entry = {"kind": kind, **fields}
        self.entries.append(entry)
        if self.path is not None:
            append_line(self.path, entry)


def search(run: Run, info: ExperimentInfo, budget: Budget, table: str | None,
           journal: Journal) -> list[TrialRecord]:
    """Propose and train trials until the method is done or its budget is spent; the history."""
    history: list[TrialRecord] = []
    for entry in journal.of("trial"):  # the trials a stopped run of this cell finished
        record = entry["record"]
        history.append(make_trial(f"{run.method}-{len(history)}", record["assignments"], entry["status"],
                                  sorted(entry["metrics"].items()), record["labels"]))
        run.trials.append(record)
    clock = Clock.resumed(run.trials[-1]["cpu_s"] if run.trials else 0.0)
    oneshot_done = bool(history) and "search" in history[-1].assignments
    while not oneshot_done and clock.used() < budget.search_cpu_s:
        proposal = engine.suggest(info, history, 1, len(history))
        assignments = proposal.assignments[0]
        labels = proposal.labels[0] if proposal.labels else {}
        if info.algorithm == "envelopenet" and labels.get("katib-nas-envelopenet-phase") == "final":
            break  # the construction is complete: its network goes to the final training
        before = cpu_seconds()
        metrics = run_search_trial(run, info, budget, table, assignments, clock)
        if "search" not in assignments and clock.used() > budget.search_cpu_s:
            run.note = f"trial {len(history)} ended past the budget and was discarded"
            break
        status = "SUCCEEDED" if metrics else "FAILED"
        history.append(make_trial(f"{run.method}-{len(history)}", assignments, status, sorted(metrics.items()), labels))
        run.trials.append({"index": len(history) - 1, "cpu_s": clock.used(), "trial_cpu_s": cpu_seconds() - before,
                           "assignments": assignments, "labels": labels,
                           "metrics": {k: v for k, v in metrics.items() if k not in ("Branch-Stats", "Skip-Gates")}})
        journal.add("trial", record=run.trials[-1], status=status, metrics=metrics)
        if "search" in assignments:
            break  # one supernet training is the whole one-shot search
    oneshot = bool(history) and "search" in history[-1].assignments
    run.search_cpu_s = clock.used() if oneshot else min(clock.used(), budget.search_cpu_s)
    return history


def run_search_trial(run: Run, info: ExperimentInfo, budget: Budget, table: str | None,
                     assignments: dict[str, str], clock: Clock) -> dict[str, str]:
    trial_table = table if info.algorithm == "proxylessnas" else None
    if "search" in assignments:
        metrics = run_oneshot_trial(assignments, budget.search_images, trial_table, run.seed, budget.rank_paths)
        clock.uncharged += float(metrics.get("rank-cpu-s", "0"))
        return metrics
    return run_network_trial(assignments["architecture"], int(assignments.get("seed", run.seed)),
                             int(assignments.get("epochs", "1")), budget.search_images, trial_table,
                             branch_stats=info.algorithm == "envelopenet",
                             statistic=info.settings.get("statistic", "taylor"), split_seed=run.seed)


def best_of_k(run: Run, info: ExperimentInfo, budget: Budget, journal: Journal) -> str:
    """The envelope family's random control at equal CPU: random networks of the construction's family (random
    pruning and random skips, to a random depth of 0..iterations steps, no statistics needed), each trained as an
    iteration trial is, until the budget is spent; the best by validation accuracy."""
    config = resolve(info)
    rng = np.random.default_rng([run.seed, 4242])
    best: tuple[float, str] | None = None
    for entry in journal.of("candidate"):  # the candidates a stopped run of this cell finished
        run.trials.append(entry["record"])
        rng.bit_generator.state = entry["rng"]
        best = (entry["best"][0], entry["best"][1]) if entry["best"] else None
    clock = Clock.resumed(run.trials[-1]["cpu_s"] if run.trials else 0.0)
    tried = {trial["assignments"]["architecture"] for trial in run.trials}
    while clock.used() < budget.search_cpu_s:
        text = family_network(info, config, rng, tried)
        if text is None:
            run.note = f"the family gave no untried network in {FAMILY_DRAWS} draws"
            break
        tried.add(text)
        before = cpu_seconds()
        metrics = run_network_trial(text, run.seed, 1, budget.search_images, None, split_seed=run.seed)
        if clock.used() > budget.search_cpu_s:
            run.note = f"candidate {len(run.trials)} ended past the budget and was discarded"
            break
        run.trials.append({"index": len(run.trials), "cpu_s": clock.used(), "trial_cpu_s": cpu_seconds() - before,
                           "assignments": {"architecture": text}, "metrics": metrics})
        accuracy = float(metrics.get("Validation-Accuracy", "nan"))
        if accuracy == accuracy and (best is None or accuracy > best[0]):
            best = (accuracy, text)
        journal.add("candidate", record=run.trials[-1], rng=rng.bit_generator.state, best=best)
    run.search_cpu_s = min(clock.used(), budget.search_cpu_s)
    if best is None:
        raise RuntimeError(f"{run.method}: no candidate finished within the budget")
    return best[1]


def family_network(info: ExperimentInfo, config: EnvelopeNetConfig, rng: np.random.Generator,
                   tried: set[str]) -> str | None:
    """A random network of the construction's family that is not in `tried`: a repeat would train with the same
    seed to the same score and only spend the control's budget. None after FAMILY_DRAWS repeats in a row."""
    for _ in range(FAMILY_DRAWS):
        network = initial_network(config)
        for step in range(int(rng.integers(0, config.settings.iterations + 1))):
            flat = Statistics(tuple(tuple(1.0 for _ in c.ops) for c in network.cells),
                              tuple(tuple(1.0 for _ in c.skips) for c in network.cells))
            derived = resolve(dataclasses.replace(info, settings={**info.settings,
                                                                  "seed": str(int(rng.integers(0, 2000)))}))
            network = next_network(network, flat, derived, step)
        if (text := encode(network)) not in tried:
            return text
    return None


def pick_final(run: Run, info: ExperimentInfo | None, history: list[TrialRecord]) -> str:
    """The method's own rule for its final network."""
    if info is None:
        return HAND_DESIGNED
    if info.algorithm == "envelopenet":
        construction = EnvelopeNet().construction(info, history, len(history))
        run.search["iterations"] = float(len(construction.scores))
        if construction.final:
            return encode(construction.current.architecture)
        run.note = f"budget ran out in iteration {construction.current.number}; the best evaluated network is final"
        networks = list(construction.networks[:len(construction.scores)]) or [construction.networks[0]]
        return encode(final_network(networks, list(construction.scores), resolve(info)))
    if run.method == "proxylessnas-oneshot":
        reported = [trial.texts.get("Best-Architecture") for trial in history if trial.succeeded]
        if not reported:
            raise RuntimeError(f"{run.method}: the search trial failed")
        run.search = {k: float(v) for k, v in run.trials[-1]["metrics"].items()
                      if k in ("derived-rank", "ranked-paths", "arch-steps", "path-max-probability", "path-entropy",
                               "rank-cpu-s")}
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
    largest_path = folder / f"{LARGEST}{seed}.json"
    supernet = experiment_supernet(EXAMPLES / "proxylessnas-oneshot-fashion-mnist.yaml")
    if not path.is_file():
        profile_supernet(supernet, resolve_device("cpu"), Timing()).save(path)
    if not largest_path.is_file():
        table = load_table(path)
        slowest = [max(range(len(row)), key=lambda i: row[i]) for row in table.block_options_ms(supernet)]
        largest = encode(derive(supernet, slowest))
        largest_path.write_text(json.dumps({"architecture": largest, "ms": measured_latency_ms(largest)}))
    return str(path), json.loads(largest_path.read_text())["ms"]


def measured_latency_ms(architecture: str, repeats: int = 1) -> float:
    """Batch-1 latency on one thread with the latency table's clock and statistic; the median of `repeats`."""
    from katib_nas.trial_image.proxyless.profiler import Timing, time_network_ms
    from katib_nas.trial_image.runtime import resolve_device

    return statistics.median(time_network_ms(decode(architecture), resolve_device("cpu"), Timing())
                             for _ in range(repeats))


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

def run_job(method: str, seed: int, budget: Budget, constrained: bool, fraction: float, folder: Path,
            journal: Journal) -> Run:
    import torch

    torch.set_num_threads(1)
    table, largest_ms = latency_table(seed, folder)
    target = fraction * largest_ms if constrained else None
    run = Run(method, seed, constrained, target)
    info = method_experiment(method, seed, budget, target)
    searched = journal.of("search-done")
    if searched:
        run.trials, run.search_cpu_s, run.final_architecture, run.search, run.note = (
            searched[0][name] for name in ("trials", "search_cpu_s", "final_architecture", "search", "note"))
    else:
        if method == "envelopenet-random-best-of-k":
            run.final_architecture = best_of_k(run, info, budget, journal)
        else:
            history = search(run, info, budget, table, journal) if info is not None else []
            run.final_architecture = pick_final(run, info, history)
        journal.add("search-done", trials=run.trials, search_cpu_s=run.search_cpu_s,
                    final_architecture=run.final_architecture, search=run.search, note=run.note)
    final_trainings(run, budget, journal)
    predicted = predicted_latency_ms(run.final_architecture, table)
    if predicted is not None:
        run.final["predicted-latency-ms"] = predicted
    return run


def final_trainings(run: Run, budget: Budget, journal: Journal) -> None:
    """RETRAINS trainings of the final network from fresh seeds, each scored once on the test set; their mean."""
    finished = {entry["index"]: entry for entry in journal.of("retrain")}
    cpu_s = 0.0
    for retrain in range(budget.retrains):
        if retrain not in finished:
            seed = RETRAIN_SEED_BASE + 1000 * run.seed + retrain
            before = cpu_seconds()
            metrics = run_network_trial(run.final_architecture, seed, budget.final_epochs, budget.final_images,
                                        None, test=True, split_seed=run.seed)
            result = {name: float(metrics[name]) for name in ("Validation-Accuracy", "Test-Accuracy")
                      if name in metrics} | {"seed": float(seed)}
            journal.add("retrain", index=retrain, result=result, cpu_s=cpu_seconds() - before)
            finished[retrain] = journal.entries[-1]
        run.retrains.append(finished[retrain]["result"])
        cpu_s += finished[retrain]["cpu_s"]
    run.final_cpu_s = cpu_s / budget.retrains
    for name in ("Validation-Accuracy", "Test-Accuracy"):
        values = [r[name] for r in run.retrains if name in r]
        if values:
            run.final[name] = statistics.mean(values)
    architecture = decode(run.final_architecture)
    run.final["macs"] = float(architecture_macs(architecture))
    from katib_nas.trial_image.measure import count_parameters
    from katib_nas.trial_image.model import build_model

    run.final["params"] = float(count_parameters(build_model(architecture)))


# --- driver -------------------------------------------------------------------------------------------------

def cells_to_run(methods: list[str], seeds: list[int], constrained: list[str]) -> list[tuple[str, int, bool]]:
    """Seed by seed, so that complete pairs accumulate first."""
    cells = []
    for seed in seeds:
        cells += [(m, seed, False) for m in methods]
        cells += [(m, seed, True) for m in methods if m in constrained]
    return cells


def read_results(folder: Path) -> list[dict[str, Any]]:
    path = folder / RESULTS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_budget(folder: Path, budget: Budget, journals: bool) -> None:
    """Stop with one line, before anything runs, when OUT holds finished cells (or, with `journals`, unfinished
    ones) of another budget: they would be skipped or resumed, and paired with this budget's cells."""
    wanted = dataclasses.asdict(budget)
    for record in read_results(folder):
        if record.get("budget") != wanted:
            key = cell_key(record["method"], record["seed"], record["constrained"])
            raise SystemExit(budget_error(folder / RESULTS, record.get("budget"), wanted, f" (cell {key})"))
    for path in sorted((folder / "jobs").glob("*.journal.jsonl")) if journals else []:
        entries = Journal.read(path)  # a first line cut by a stop is no entry: that cell starts afresh
        if entries and entries[0] != {"kind": "budget", "budget": wanted}:
            raise SystemExit(budget_error(path, entries[0].get("budget"), wanted))


def budget_error(path: Path | None, found: dict[str, Any] | None, wanted: dict[str, Any], where: str = "") -> str:
    """One line naming the file and how its budget differs from this run's (--quick or the standard one)."""
    if found is None:
        return (f"bench_search: error: {path}{where} was written before budgets were recorded; resume it with "
                "the commit that wrote it, or use another --out")
    return (f"bench_search: error: {path}{where} was run at another budget ({budget_differences(found, wanted)}); "
            "use another --out, or the flags it was run with (--quick or not)")


def budget_differences(found: dict[str, Any], wanted: dict[str, Any]) -> str:
    """'name FOUND here WANTED' for every setting in which two budgets differ."""
    return ", ".join(f"{name} {found.get(name)} here {value}" for name, value in wanted.items()
                     if found.get(name) != value)


def append_line(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def run_all(args: argparse.Namespace, budget: Budget) -> list[str]:
    """Every cell not in OUT/results.jsonl, in a subprocess, `args.jobs` side by side; each appended on its end.
    Returns the cells that failed (each one's output is in OUT/jobs/<cell>.log)."""
    failed: list[str] = []
    done = {cell_key(r["method"], r["seed"], r["constrained"]) for r in read_results(args.out)}
    pending = [c for c in cells_to_run(args.methods, args.seeds, args.constrained_methods) if cell_key(*c) not in done]
    for seed in sorted({seed for _, seed, _ in pending}):
        latency_table(seed, args.out)  # profiled once per seed, before the jobs that read it start
    running: list[tuple[subprocess.Popen, Path, str]] = []
    while pending or running:
        while pending and len(running) < args.jobs:
            method, seed, constrained = pending.pop(0)
            key = cell_key(method, seed, constrained)
            out = args.out / "jobs" / f"{key}.json"
            out.parent.mkdir(exist_ok=True)
            command = [sys.executable, __file__, "--job", method, "--seed", str(seed), "--out", str(args.out),
                       "--target-fraction", str(args.target_fraction)] + (["--quick"] if args.quick else []) \
                + (["--constrained"] if constrained else [])
            log = (args.out / "jobs" / f"{key}.log").open("a")  # a resumed cell's log continues
            running.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), out, key))
            print(f"{time.strftime('%H:%M:%S')} started {key}", flush=True)
        for process, out, key in list(running):
            if process.poll() is None:
                continue
            running.remove((process, out, key))
            if process.returncode == 0 and out.is_file():
                append_line(args.out / RESULTS, json.loads(out.read_text()))
                out.unlink()
                out.with_suffix(".journal.jsonl").unlink(missing_ok=True)
                write_summary(args.out, budget)
            else:
                failed.append(key)
            print(f"{time.strftime('%H:%M:%S')} finished {key}: exit {process.returncode}", flush=True)
        time.sleep(2)
    return failed


def measure_latencies(folder: Path) -> None:
    """Median batch-1 latency of every final network not yet measured; run it on an otherwise idle machine. A seed's
    constrained networks and its largest network (T) are always measured in the same pass; the last line of an
    architecture in OUT/latency.jsonl is its latency."""
    import torch

    torch.set_num_threads(1)
    path = folder / LATENCIES
    known = {json.loads(line)["architecture"] for line in path.read_text().splitlines()} if path.is_file() else set()
    records = read_results(folder)
    fresh: set[str] = set()
    for record in records:
        architecture = record["final_architecture"]
        if architecture not in known:
            append_line(path, {"architecture": architecture,
                               "measured-latency-ms": measured_latency_ms(architecture, LATENCY_REPEATS)})
            known.add(architecture)
            fresh.add(architecture)
    for seed in sorted({r["seed"] for r in records}):
        # a constrained network counts against T from the largest network's median in the same pass as its own
        largest = folder / f"{LARGEST}{seed}.json"
        data = json.loads(largest.read_text())
        constrained = {r["final_architecture"] for r in records if r["seed"] == seed and r["constrained"]}
        if "median-ms" not in data or constrained & fresh:
            data["median-ms"] = measured_latency_ms(data["architecture"], LATENCY_REPEATS)
            largest.write_text(json.dumps(data))
            for architecture in sorted(constrained - fresh):  # measured in an earlier pass: again, on this clock
                append_line(path, {"architecture": architecture,
                                   "measured-latency-ms": measured_latency_ms(architecture, LATENCY_REPEATS)})
                fresh.add(architecture)


def write_summary(folder: Path, budget: Budget) -> None:
    from search_report import plot, summary

    records = read_results(folder)
    latencies = {}
    if (folder / LATENCIES).is_file():
        latencies = {d["architecture"]: d["measured-latency-ms"]
                     for d in map(json.loads, (folder / LATENCIES).read_text().splitlines())}
    largest = {int(path.stem.removeprefix(LARGEST)): json.loads(path.read_text())
               for path in folder.glob(f"{LARGEST}*.json")}
    (folder / "summary.md").write_text(summary(records, budget, latencies, largest))
    plot(records, folder / "best_so_far.png")
    write_runs_document(folder, records, budget, latencies)


def write_runs_document(folder: Path, records: list[dict[str, Any]], budget: Budget,
                        latencies: dict[str, float]) -> None:
    """OUT/search.json: every cell in the quick run's document shape, its measured latency merged."""
    runs = [r | {"final": r["final"] | ({"measured-latency-ms": latencies[r["final_architecture"]]}
                                         if r["final_architecture"] in latencies else {})} for r in records]
    document = {"budget": dataclasses.asdict(budget), "seeds": sorted({r["seed"] for r in records}), "runs": runs}
    (folder / SEARCH_JSON).write_text(json.dumps(document) + "\n")


def run_cell(args: argparse.Namespace, budget: Budget, key: str) -> None:
    """One cell in this process (a job of run_all): resumed from its journal, its record written at the end."""
    journal = Journal.open(args.out / "jobs" / f"{key}.journal.jsonl")
    journal.begin(dataclasses.asdict(budget))
    run = run_job(args.job, args.seed, budget, args.constrained, args.target_fraction, args.out, journal)
    record = dataclasses.asdict(run) | {"budget": dataclasses.asdict(budget)}
    (args.out / "jobs" / f"{key}.json").write_text(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--quick", action="store_true", help="the small budget (a smoke run)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="default: every method of the budget")
    parser.add_argument("--constrained-methods", nargs="*", choices=CONSTRAINED,
                        help="methods also run under the latency target (default: one-shot; --quick: all four)")
    parser.add_argument("--jobs", type=int, default=2, help="cells side by side, one thread each (default 2)")
    parser.add_argument("--target-fraction", type=float, default=0.6,
                        help="latency-constrained variant: T = this x the largest network's latency")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_search"))
    parser.add_argument("--latency", action="store_true", help="measure the final networks' latency and stop")
    parser.add_argument("--summary", action="store_true", help="rewrite the summary from the results and stop")
    parser.add_argument("--job", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--constrained", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    budget = Budget.of(args.quick)
    if args.job:
        key = cell_key(args.job, args.seed, args.constrained)
        (args.out / "jobs").mkdir(exist_ok=True)
        with exclusive(args.out / "jobs" / f"{key}.lock", f"cell {key}"):
            run_cell(args, budget, key)
        return
    failed: list[str] = []
    with exclusive(args.out / "run.lock", str(args.out)):
        check_budget(args.out, budget, journals=not (args.latency or args.summary))
        if args.latency:
            measure_latencies(args.out)
        elif not args.summary:
            args.methods = args.methods or list(METHODS if args.quick else STANDARD_METHODS)
            if args.constrained_methods is None:
                args.constrained_methods = list(CONSTRAINED if args.quick else STANDARD_CONSTRAINED)
            check_data()
            failed = run_all(args, budget)
        write_summary(args.out, budget)
    print((args.out / "summary.md").read_text())
    if failed:
        raise SystemExit(f"bench_search: error: {len(failed)} cell(s) failed: {', '.join(failed)} (each one's output "
                         f"is in {args.out / 'jobs'}/<cell>.log); run the same command again to retry them")


if __name__ == "__main__":
    main()
