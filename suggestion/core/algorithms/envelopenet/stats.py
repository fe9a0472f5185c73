"""A trial's branch statistics and skip gates, read strictly and averaged over replicas.

The metric format itself (Branch-Stats / Skip-Gates) is the shared contract's
(katib_nas.contract.branch_stats); here a trial record becomes Statistics for
the architecture it trained, or a StatisticsError naming why it cannot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from katib_nas.contract.branch_stats import (
    BRANCH_STATS_METRIC,
    DEFAULT_STATISTIC,
    SKIP_GATES_METRIC,
    StatisticsError,
    parse_branch_stats,
    parse_skip_gates,
)
from katib_nas.contract.spec import Architecture

from ...experiment import TrialRecord


@dataclass(frozen=True)
class Statistics:
    """Per cell: each branch's statistic (NaN when unknown) and each skip input's gate."""

    branches: tuple[tuple[float, ...], ...]
    gates: tuple[tuple[float, ...], ...]


def read_statistics(trial: TrialRecord, arch: Architecture, statistic: str = DEFAULT_STATISTIC) -> Statistics:
    """The trial's statistics checked against the architecture it trained; StatisticsError otherwise."""
    branches = parse_branch_stats(_text_metric(trial, BRANCH_STATS_METRIC), arch, statistic)
    if not any(cell.skips for cell in arch.cells):
        return Statistics(branches, tuple(() for _ in arch.cells))
    return Statistics(branches, parse_skip_gates(_text_metric(trial, SKIP_GATES_METRIC), arch))


def average(samples: list[Statistics]) -> Statistics:
    """Element-wise mean over replicas of one architecture, ignoring non-finite values."""
    if not samples:
        raise ValueError("average needs at least one sample")
    first = samples[0]
    branches = tuple(tuple(_finite_mean([s.branches[c][b] for s in samples]) for b in range(len(cell)))
                     for c, cell in enumerate(first.branches))
    gates = tuple(tuple(_finite_mean([s.gates[c][g] for s in samples]) for g in range(len(cell)))
                  for c, cell in enumerate(first.gates))
    return Statistics(branches, gates)


def _text_metric(trial: TrialRecord, name: str) -> str:
    if name in trial.texts and trial.texts[name]:
        return trial.texts[name]
    if name in trial.numbers:
        raise StatisticsError(f"{name} is the number {trial.numbers[name]:g}, expected text like "
                              f"{'ta/0.4_1.2' if name == BRANCH_STATS_METRIC else 'g/-/0.9'}")
    raise StatisticsError(f"the trial reported no {name} metric (run the trial with --branch-stats and collect "
                          f"{name} with the Experiment's metricsFormat)")


def _finite_mean(values: list[float]) -> float:
    """Mean of the finite values (each divided first, so values near the float limit cannot overflow)."""
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(v / len(finite) for v in finite) if finite else math.nan
