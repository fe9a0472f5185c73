"""Branch-Stats and Skip-Gates: the string metrics an EnvelopeNet trial reports, written and read here only.

One field per cell ("/"-separated, cells in network order) after a prefix::

    Branch-Stats=ta/0.41_1.2_0.87/0.5_nan      one value per branch, in op order
    Skip-Gates=g/-/0.93_-0.12                  one learned gate per skip input, in the order of cell.skips

The prefix of Branch-Stats names the statistic: `ta` the Taylor statistic
(the mean, over training samples, of |sum over the branch's output of
y * dloss/dy|, per output channel of the branch: the first-order change of a
sample's loss when the branch is removed), `ms` the mean squared activation of the branch's output.

Non-finite values are written `nan`. Reading is strict: anything that does
not match the architecture the trial trained (wrong prefix, cell count,
branch or gate count, unreadable number) raises StatisticsError, whose
message is the reason shown to the user.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from .metric_format import format_number
from .spec import Architecture

BRANCH_STATS_METRIC = "Branch-Stats"
SKIP_GATES_METRIC = "Skip-Gates"
#: Branch statistics by name, with the prefix their Branch-Stats value carries.
STATISTIC_PREFIXES = {"taylor": "ta", "mean-square": "ms"}
DEFAULT_STATISTIC = "taylor"
SKIP_GATES_PREFIX = "g"
NO_SKIPS = "-"
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:nan|inf|infinity)$", re.IGNORECASE)

PerCell = tuple[tuple[float, ...], ...]


class StatisticsError(ValueError):
    """Statistics that do not fit the architecture; the message says what is wrong."""


def format_branch_stats(values: Sequence[Sequence[float]], statistic: str = DEFAULT_STATISTIC) -> str:
    """The Branch-Stats value for these per-cell branch values of the named statistic."""
    prefix = STATISTIC_PREFIXES[statistic]
    return prefix + "/" + "/".join("_".join(format_number(v) for v in cell) for cell in values)


def format_skip_gates(values: Sequence[Sequence[float]]) -> str:
    """The Skip-Gates value for these per-cell gates; a cell without skip inputs is '-'."""
    return SKIP_GATES_PREFIX + "/" + "/".join("_".join(format_number(v) for v in cell) if cell else NO_SKIPS
                                              for cell in values)


def parse_branch_stats(text: str, arch: Architecture, statistic: str = DEFAULT_STATISTIC) -> PerCell:
    """Values of a Branch-Stats metric of the named statistic, one tuple per cell with one value per branch (NaN
    when unknown); a value of another statistic is refused naming both."""
    reported = next((name for name, prefix in STATISTIC_PREFIXES.items() if text.strip().startswith(prefix + "/")),
                    None)
    if reported is not None and reported != statistic:
        raise StatisticsError(f"{BRANCH_STATS_METRIC} holds the {reported} statistic, the experiment prunes by "
                              f"{statistic}: run the trials with --branch-statistic={statistic}, or set the "
                              f"algorithm setting statistic={reported}")
    fields = _fields(text, STATISTIC_PREFIXES[statistic], BRANCH_STATS_METRIC, arch)
    cells = []
    for index, (cell, field) in enumerate(zip(arch.cells, fields)):
        values = _numbers(field, f"{BRANCH_STATS_METRIC} cell {index}")
        if len(values) != len(cell.ops):
            raise StatisticsError(f"{BRANCH_STATS_METRIC} cell {index} has {len(values)} values, the cell has "
                                  f"{len(cell.ops)} branches")
        cells.append(values)
    return tuple(cells)


def parse_skip_gates(text: str, arch: Architecture) -> PerCell:
    """Values of a Skip-Gates metric, one tuple per cell in the order of its skip inputs."""
    fields = _fields(text, SKIP_GATES_PREFIX, SKIP_GATES_METRIC, arch)
    cells = []
    for index, (cell, field) in enumerate(zip(arch.cells, fields)):
        values = () if field == NO_SKIPS else _numbers(field, f"{SKIP_GATES_METRIC} cell {index}")
        if len(values) != len(cell.skips):
            raise StatisticsError(f"{SKIP_GATES_METRIC} cell {index} has {len(values)} gates, the cell has "
                                  f"{len(cell.skips)} skip inputs")
        cells.append(values)
    return tuple(cells)


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
