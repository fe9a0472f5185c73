"""The search benchmark's report: per-method figures, paired differences with 95% intervals, the goals.

Reads the records bench_search.py appends to results.jsonl (one per method, seed and latency variant) and the
latencies its --latency pass measured (the final networks' and each seed's largest network's medians); writes the
Markdown summary and the best-so-far plot.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

#: Methods in table order.
ORDER = ("nas-random", "envelopenet", "envelopenet-random-prune", "envelopenet-random-best-of-k",
         "envelopenet-worst-case", "envelopenet-mean-square", "proxylessnas-oneshot", "proxylessnas-reinforce",
         "proxylessnas-uniform", "hand-designed")
#: (method, baseline) pairs whose per-seed test-accuracy differences are reported.
PAIRS = (("envelopenet", "nas-random"), ("envelopenet", "envelopenet-random-best-of-k"),
         ("envelopenet", "envelopenet-random-prune"), ("proxylessnas-oneshot", "proxylessnas-uniform"),
         ("proxylessnas-reinforce", "proxylessnas-uniform"), ("proxylessnas-oneshot", "nas-random"),
         ("proxylessnas-reinforce", "nas-random"), ("proxylessnas-uniform", "nas-random"),
         ("envelopenet-random-best-of-k", "nas-random"), ("hand-designed", "nas-random"))
#: Seeds the goals are judged on.
REQUIRED_SEEDS = 8
WIN_POINTS = 0.5
TOP_FRACTION = 0.2
LATENCY_SLACK = 1.05
CONSTRAINED_LOSS_POINTS = 1.5
#: Seeds out of REQUIRED_SEEDS that the counted goals (rank, latency) ask for.
COUNTED_SEEDS = 6
#: Differences meet a threshold at this many decimals: a test accuracy moves in steps of 0.005 points, so a
#: difference of exactly 0.5 points happens, and floating point must not turn it into 0.49999999999999.
DECIMALS = 6


def difference(a: float, b: float) -> float:
    """a - b in percentage points, at DECIMALS: the figure a threshold is compared with."""
    return round(a - b, DECIMALS)


@dataclass(frozen=True)
class Paired:
    """Mean of per-seed differences (percentage points) with a 95% t interval, and how many seeds were won."""

    n: int
    mean: float
    low: float
    high: float
    wins: int

    @classmethod
    def of(cls, differences: list[float]) -> "Paired":
        n = len(differences)
        mean = round(statistics.mean(differences), DECIMALS) + 0.0 if differences else math.nan  # no -0.00
        if n < 2:
            return cls(n, mean, math.nan, math.nan, sum(d > 0 for d in differences))
        from scipy.stats import t

        half = t.ppf(0.975, n - 1) * statistics.stdev(differences) / math.sqrt(n)
        return cls(n, mean, round(mean - half, DECIMALS), round(mean + half, DECIMALS),
                   sum(d > 0 for d in differences))

    def text(self) -> str:
        if self.n == 0:
            return "-"
        interval = "" if math.isnan(self.low) else f" [{self.low:+.2f}, {self.high:+.2f}]"
        return f"{self.mean:+.2f}{interval} ({self.wins}/{self.n} seeds)"


def by_cell(records: list[dict[str, Any]], constrained: bool = False) -> dict[str, dict[int, dict[str, Any]]]:
    cells: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        if record["constrained"] == constrained:
            cells.setdefault(record["method"], {})[record["seed"]] = record
    return cells


def test_points(record: dict[str, Any]) -> float:
    return record["final"]["Test-Accuracy"] * 100


def paired(cells: dict[str, dict[int, dict[str, Any]]], method: str, baseline: str,
           value: Callable[[dict[str, Any]], float | None] = test_points) -> Paired:
    seeds = sorted(set(cells.get(method, {})) & set(cells.get(baseline, {})))
    differences = []
    for seed in seeds:
        a, b = value(cells[method][seed]), value(cells[baseline][seed])
        if a is not None and b is not None:
            differences.append(difference(a, b))
    return Paired.of(differences)


def mean_sd(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ({sd:.{digits}f})"


def method_row(method: str, runs: list[dict[str, Any]], latencies: dict[str, float]) -> str:
    finals = [r["final"] for r in runs]
    measured = [latencies[r["final_architecture"]] for r in runs if r["final_architecture"] in latencies]
    predicted = [f["predicted-latency-ms"] for f in finals if "predicted-latency-ms" in f]
    cells = [method, str(len(runs)), mean_sd([f["Test-Accuracy"] * 100 for f in finals]),
             mean_sd([f["Validation-Accuracy"] * 100 for f in finals]),
             f"{statistics.mean(r['search_cpu_s'] for r in runs):.0f}",
             f"{statistics.mean(r['search_cpu_s'] + r['final_cpu_s'] for r in runs):.0f}",
             f"{statistics.mean(measured):.3f}" if measured else "-",
             f"{statistics.mean(predicted):.3f}" if predicted else "-",
             f"{statistics.mean(f['params'] for f in finals) / 1000:.0f}k",
             f"{statistics.mean(f['macs'] for f in finals) / 1e6:.1f}",
             ", ".join(f"{r['seed']}: {r['final']['Test-Accuracy'] * 100:.2f}" for r in runs)]
    return "| " + " | ".join(cells) + " |"


def second_half_reward(record: dict[str, Any], exponent: float) -> float | None:
    """Mean REINFORCE reward (%) of the second half of a run's finished search trials, in the order they were
    proposed; with an odd count the later half holds the middle trial."""
    rewards = [value for t in record["trials"] if (value := trial_reward(t, record["target_ms"], exponent)) is not None]
    if len(rewards) < 2:
        return None
    return statistics.mean(rewards[len(rewards) // 2:]) * 100


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


def policy_updates(record: dict[str, Any]) -> int:
    """Policy updates a REINFORCE run made: the highest policy version its trials were drawn from."""
    versions = [int(t.get("labels", {}).get("proxylessnas-policy", "0")) for t in record["trials"]]
    return max(versions, default=0)


def beyond(result: Paired) -> bool | None:
    """At least WIN_POINTS better with the interval above 0; None while there is no interval (one seed)."""
    if math.isnan(result.low):
        return None
    return result.mean >= WIN_POINTS and result.low > 0


def strength(result: Paired) -> tuple[bool, float, float, int]:
    """Order of paired results for "at least one method": one that meets the goal first, then the higher lower
    bound, the higher mean, more seeds."""
    def number(value: float) -> float:
        return -math.inf if math.isnan(value) else value

    return bool(beyond(result)), number(result.low), number(result.mean), result.n


def judged(result: Paired, met: bool | None) -> str:
    """A paired goal's status: decided on REQUIRED_SEEDS seeds, before that whether the seeds so far meet it."""
    if result.n == 0:
        return "open (no paired seeds yet)"
    if result.n < REQUIRED_SEEDS:
        track = "no interval yet" if met is None else "on track" if met else "not on track"
        return f"open ({result.n}/{REQUIRED_SEEDS} seeds so far; {track})"
    return "MET" if met else "MISS"


def counted(hits: int, seeds: int) -> str:
    """A goal met in at least COUNTED_SEEDS of REQUIRED_SEEDS seeds, decided as soon as the rest cannot change it."""
    if hits >= COUNTED_SEEDS:
        return "MET"
    if seeds - hits > REQUIRED_SEEDS - COUNTED_SEEDS:
        return "MISS"
    if seeds == 0:
        return "open (no seeds yet)"
    track = "on track" if hits * REQUIRED_SEEDS >= COUNTED_SEEDS * seeds else "not on track"
    return f"open ({seeds}/{REQUIRED_SEEDS} seeds so far; {track})"


@dataclass
class Goal:
    text: str
    status: str
    figure: str


def any_beyond(results: dict[str, Paired]) -> Goal:
    """"At least one method +WIN_POINTS over nas-random": the strongest method's figure, named; not a miss while
    another method has fewer than REQUIRED_SEEDS seeds and could still meet it."""
    method, best = max(results.items(), key=lambda item: strength(item[1]))
    status = judged(best, beyond(best))
    waiting = [name for name, result in results.items() if result.n < REQUIRED_SEEDS]
    if status == "MISS" and waiting:
        status = f"open ({', '.join(waiting)} not on {REQUIRED_SEEDS} seeds yet; not on track)"
    return Goal(f"at least one method +{WIN_POINTS} over nas-random, interval above 0", status,
                f"{method}: {best.text()}")


def goals(records: list[dict[str, Any]], latencies: dict[str, float],
          largest: dict[int, dict[str, Any]]) -> list[Goal]:
    free, constrained = by_cell(records), by_cell(records, True)
    found = []
    envelope = paired(free, "envelopenet", "nas-random")
    found.append(Goal("envelopenet at least as accurate as nas-random", judged(envelope, envelope.mean >= 0),
                      envelope.text()))
    family = paired(free, "envelopenet", "envelopenet-random-best-of-k")
    found.append(Goal(f"envelopenet at least +{WIN_POINTS} over envelopenet-random-best-of-k, interval above 0",
                      judged(family, beyond(family)), family.text()))
    ranks = [(r["search"]["derived-rank"], r["search"]["ranked-paths"]) for r in
             free.get("proxylessnas-oneshot", {}).values() if "derived-rank" in r["search"]]
    top = sum(1 for rank, total in ranks if rank - 1 <= TOP_FRACTION * (total - 1))
    found.append(Goal(f"one-shot derived network in the top {TOP_FRACTION:.0%} of its uniform paths in at least "
                      f"{COUNTED_SEEDS} of {REQUIRED_SEEDS} seeds", counted(top, len(ranks)), f"{top}/{len(ranks)}"))
    oneshot = paired(free, "proxylessnas-oneshot", "proxylessnas-uniform")
    found.append(Goal(f"one-shot at least +{WIN_POINTS} over proxylessnas-uniform, interval above 0",
                      judged(oneshot, beyond(oneshot)), oneshot.text()))
    reward = paired(free, "proxylessnas-reinforce", "proxylessnas-uniform", lambda r: second_half_reward(r, 0.0))
    found.append(Goal("REINFORCE second-half mean reward above uniform's, interval above 0",
                      judged(reward, None if math.isnan(reward.low) else reward.low > 0), reward.text()))
    found.append(any_beyond({m: paired(free, m, "nas-random") for m in ("envelopenet", "proxylessnas-oneshot",
                                                                         "proxylessnas-reinforce")}))
    found.append(constrained_goal(free, constrained, latencies, largest))
    return found


def measured_target_ms(record: dict[str, Any], largest: dict[int, dict[str, Any]]) -> float | None:
    """T on the latency pass's clock: the search's T (a fraction of the largest network's latency as profiled
    before the search) rescaled to that network's median in the same pass as the final networks' medians."""
    found = largest.get(record["seed"], {})
    if "median-ms" not in found:
        return None
    return record["target_ms"] * found["median-ms"] / found["ms"]


def constrained_goal(free: dict[str, dict[int, dict[str, Any]]], constrained: dict[str, dict[int, dict[str, Any]]],
                     latencies: dict[str, float], largest: dict[int, dict[str, Any]]) -> Goal:
    met, seeds, unmeasured = 0, 0, 0
    for seed, record in constrained.get("proxylessnas-oneshot", {}).items():
        unconstrained = free.get("proxylessnas-oneshot", {}).get(seed)
        latency = latencies.get(record["final_architecture"])
        target = measured_target_ms(record, largest)
        if latency is None or target is None:
            unmeasured += 1
        if unconstrained is None or latency is None or target is None:
            continue
        seeds += 1
        within = latency <= LATENCY_SLACK * target
        close = difference(test_points(unconstrained), test_points(record)) <= CONSTRAINED_LOSS_POINTS
        met += within and close
    status = counted(met, seeds)
    if unmeasured and status.startswith("open"):
        status = f"open ({seeds} seed(s) judged, {unmeasured} await the --latency pass)"
    return Goal(f"latency-constrained one-shot at most {LATENCY_SLACK} T and within {CONSTRAINED_LOSS_POINTS} points "
                f"of its unconstrained search in at least {COUNTED_SEEDS} of {REQUIRED_SEEDS} seeds",
                status, f"{met}/{seeds}")


def summary(records: list[dict[str, Any]], budget: Any, latencies: dict[str, float],
            largest: dict[int, dict[str, Any]] | None = None) -> str:
    """The Markdown report of every finished cell; `largest` holds each seed's largest network's latencies."""
    largest = largest or {}
    sizes = budget if isinstance(budget, dict) else dataclasses.asdict(budget)
    seeds = sorted({r["seed"] for r in records})
    lines = [f"Search split {sizes['search_images']} images (the seed picks the split), search budget "
             f"{sizes['search_cpu_s']:.0f} CPU-s per method and seed, final network trained {sizes['retrains']} "
             f"times from fresh seeds ({sizes['final_epochs']} epoch(s) on {sizes['final_images']} images) and "
             f"scored once per training on the 10,000 test images; seeds with results: {seeds}.", "",
             "| method | seeds | test acc % mean (sd) | val acc % mean (sd) | search CPU-s | search + one final "
             "training CPU-s | measured ms | predicted ms | params | M MACs | test acc % per seed |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    free = by_cell(records)
    for method in ORDER:
        if method in free:
            lines.append(method_row(method, [free[method][s] for s in sorted(free[method])], latencies))
    lines += ["", "Paired differences of test accuracy (percentage points, method minus baseline, per seed), mean "
                  "with a 95% t interval:", "", "| method | baseline | difference |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {paired(free, a, b).text()} |" for a, b in PAIRS if a in free and b in free]
    lines += search_lines(free) + constrained_lines(records, latencies, largest)
    lines += ["", "Goals (judged on paired seeds at the standard budget):", "",
              "| goal | status | figure |", "|---|---|---|"]
    lines += [f"| {g.text} | {g.status} | {g.figure} |" for g in goals(records, latencies, largest)]
    return "\n".join(lines) + "\n"


def search_lines(free: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """What each search did: REINFORCE updates and rewards, one-shot's decisiveness and rank, construction depth."""
    lines = ["", "| method | seed | trials | search figures |", "|---|---|---|---|"]
    for method in ORDER:
        for seed, record in sorted(free.get(method, {}).items()):
            figures = ", ".join(f"{k} {v:g}" for k, v in sorted(record.get("search", {}).items()))
            if method in ("proxylessnas-reinforce", "proxylessnas-uniform"):
                half = second_half_reward(record, 0.0)
                figures = f"policy updates {policy_updates(record)}, second-half mean reward " \
                          f"{half:.2f}%" if half is not None else "too few trials"
            if method == "envelopenet-random-best-of-k":
                figures = best_of_k_figures(record, free.get("envelopenet", {}).get(seed))
            lines.append(f"| {method} | {seed} | {len(record['trials'])} | {figures or '-'} "
                         f"{('; ' + record['note']) if record.get('note') else ''}|")
    return lines


def best_of_k_figures(record: dict[str, Any], envelopenet: dict[str, Any] | None) -> str:
    """When the control found its network, against what envelopenet spent (a control that runs to the whole
    budget may have more CPU than a construction that ends early), and how many candidates repeated one."""
    texts = [t["assignments"]["architecture"] for t in record["trials"]]
    found = next((t["cpu_s"] for t in record["trials"]
                  if t["assignments"]["architecture"] == record["final_architecture"]), None)
    if found is None:
        return "no candidate record"
    spent = f" (envelopenet spent {envelopenet['search_cpu_s']:.0f})" if envelopenet else ""
    return f"winner found at {found:.0f} CPU-s{spent}, {len(texts) - len(set(texts))} repeated candidate(s)"


def constrained_lines(records: list[dict[str, Any]], latencies: dict[str, float],
                      largest: dict[int, dict[str, Any]]) -> list[str]:
    runs = [r for r in records if r["constrained"]]
    if not runs:
        return []
    lines = ["", "Latency-constrained (T = fraction x the largest network's latency: the search's T from the profile "
                 "before it, and the same fraction of that network's median in the latency pass, against which the "
                 f"final network's median counts when at most {LATENCY_SLACK} T):", "",
             "| method | seed | search T ms | latency-pass T ms | measured ms / T | predicted ms / search T "
             "| test acc % |", "|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["method"], r["seed"])):
        measured = latencies.get(r["final_architecture"])
        target = measured_target_ms(r, largest)
        predicted = r["final"].get("predicted-latency-ms")
        cells = [r["method"], str(r["seed"]), f"{r['target_ms']:.3f}",
                 f"{target:.3f}" if target else "not measured",
                 f"{measured / target:.2f}" if measured and target else "not measured",
                 f"{predicted / r['target_ms']:.2f}" if predicted else "-", f"{test_points(r):.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Best-so-far validation accuracy against search CPU-seconds, mean and spread over seeds, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for method in ORDER:
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
