"""Branch statistics and skip gates as a trial reports them, read strictly and averaged over replicas.

A trial run with --branch-stats prints two string metrics (one cell per
"/"-separated field, cells in network order)::

    Branch-Stats=ms/0.41_1.2_0.87/0.5_nan      mean squared activation per branch, in op order
    Skip-Gates=g/-/0.93_-0.12                  learned gate per skip input, in the order of cell.skips

Anything that does not match the architecture the trial trained (wrong
prefix, cell count, branch or gate count, unreadable number) makes the
trial unusable for construction; the reason says what was wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..experiment import TrialRecord
from ..spec import Architecture
from .envelopenet_config import BRANCH_STATS_METRIC, SKIP_GATES_METRIC

_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:nan|inf|infinity)$", re.IGNORECASE)
NO_SKIPS = "-"


class StatisticsError(ValueError):
    """A trial whose statistics cannot be used; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Statistics:
    """Per cell: each branch's mean squared activation (NaN when unknown) and each skip input's gate."""

    branches: tuple[tuple[float, ...], ...]
    gates: tuple[tuple[float, ...], ...]


def read_statistics(trial: TrialRecord, arch: Architecture) -> Statistics:
    """The trial's statistics checked against the architecture it trained; StatisticsError otherwise."""
    branches = parse_branch_stats(_text_metric(trial, BRANCH_STATS_METRIC), arch)
    if not any(cell.skips for cell in arch.cells):
        return Statistics(branches, tuple(() for _ in arch.cells))
    return Statistics(branches, parse_skip_gates(_text_metric(trial, SKIP_GATES_METRIC), arch))


def parse_branch_stats(text: str, arch: Architecture) -> tuple[tuple[float, ...], ...]:
    """Values of a Branch-Stats metric, one tuple per cell with one value per branch."""
    fields = _fields(text, "ms", BRANCH_STATS_METRIC, arch)
    cells = []
    for index, (cell, field) in enumerate(zip(arch.cells, fields)):
        values = _numbers(field, f"{BRANCH_STATS_METRIC} cell {index}")
        if len(values) != len(cell.ops):
            raise StatisticsError(f"{BRANCH_STATS_METRIC} cell {index} has {len(values)} values, the cell has "
                                  f"{len(cell.ops)} branches")
        cells.append(values)
    return tuple(cells)


def parse_skip_gates(text: str, arch: Architecture) -> tuple[tuple[float, ...], ...]:
    """Values of a Skip-Gates metric, one tuple per cell in the order of its skip inputs."""
    fields = _fields(text, "g", SKIP_GATES_METRIC, arch)
    cells = []
    for index, (cell, field) in enumerate(zip(arch.cells, fields)):
        values = () if field == NO_SKIPS else _numbers(field, f"{SKIP_GATES_METRIC} cell {index}")
        if len(values) != len(cell.skips):
            raise StatisticsError(f"{SKIP_GATES_METRIC} cell {index} has {len(values)} gates, the cell has "
                                  f"{len(cell.skips)} skip inputs")
        cells.append(values)
    return tuple(cells)


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


def format_branch_stats(values: list[list[float]]) -> str:
    """The metric value a trial prints for these per-cell branch values."""
    return "ms/" + "/".join("_".join(_format(v) for v in cell) for cell in values)


def format_skip_gates(values: list[list[float]]) -> str:
    """The metric value a trial prints for these per-cell gate values."""
    return "g/" + "/".join("_".join(_format(v) for v in cell) if cell else NO_SKIPS for cell in values)


def _text_metric(trial: TrialRecord, name: str) -> str:
    if name in trial.texts and trial.texts[name]:
        return trial.texts[name]
    if name in trial.numbers:
        raise StatisticsError(f"{name} is the number {trial.numbers[name]:g}, expected text like "
                              f"{'ms/0.4_1.2' if name == BRANCH_STATS_METRIC else 'g/-/0.9'}")
    raise StatisticsError(f"the trial reported no {name} metric (run the trial with --branch-stats and collect "
                          f"{name} with the Experiment's metricsFormat)")


def _fields(text: str, prefix: str, name: str, arch: Architecture) -> list[str]:
    parts = text.strip().split("/")
    if parts[0] != prefix:
        raise StatisticsError(f"{name}={text[:40]!r} must start with {prefix}/")
    fields = parts[1:]
    if len(fields) != len(arch.cells):
        raise StatisticsError(f"{name} lists {len(fields)} cells, the architecture has {len(arch.cells)}")
    return fields


def _numbers(field: str, where: str) -> tuple[float, ...]:
    tokens = field.split("_")
    for token in tokens:
        if not _NUMBER.match(token):
            raise StatisticsError(f"{where}: {token[:20]!r} is not a number")
    return tuple(_finite_or_nan(float(token)) for token in tokens)


def _finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else math.nan


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else math.nan


def _format(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.6g}"
