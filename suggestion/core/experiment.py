"""Plain, typed views of a Katib experiment and its trial history.

The gRPC adapter and the local runner both build these from their own
inputs; algorithms see nothing else. Katib sends metric values as strings
("0.91", "nan", "", "unavailable", or free text such as a genotype): the
history keeps finite numbers as floats and everything else as text, so no
value can make an algorithm fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Katib's TrialStatus.TrialConditionType names, in enum order.
CONDITIONS = ("CREATED", "RUNNING", "SUCCEEDED", "KILLED", "FAILED", "METRICSUNAVAILABLE", "EARLYSTOPPED", "UNKNOWN")
FINISHED_CONDITIONS = frozenset({"SUCCEEDED", "KILLED", "FAILED", "METRICSUNAVAILABLE", "EARLYSTOPPED"})


@dataclass(frozen=True)
class ExperimentInfo:
    """What an algorithm needs to know about the experiment."""

    name: str
    algorithm: str
    settings: dict[str, str]
    objective_metric: str
    maximize: bool = True
    additional_metrics: tuple[str, ...] = ()
    goal: float | None = None
    parallel_trial_count: int = 1
    max_trial_count: int = 0
    nas_config: dict[str, Any] | None = None
    #: The early stopping algorithm Katib runs beside the search (spec.earlyStopping.algorithmName), or "".
    early_stopping: str = ""


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the algorithm sees it."""

    name: str
    assignments: dict[str, str]
    condition: str = "UNKNOWN"
    numbers: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.condition in FINISHED_CONDITIONS

    @property
    def succeeded(self) -> bool:
        return self.condition == "SUCCEEDED"

    def objective(self, metric: str) -> float | None:
        """Finite objective value of a succeeded trial, or None."""
        return self.numbers.get(metric) if self.succeeded else None


def parse_metric_value(value: str) -> float | str:
    """A finite float when the text is one; otherwise the text itself."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (value or "").strip()
    return number if math.isfinite(number) else value.strip()


def make_trial(
    name: str,
    assignments: dict[str, str],
    condition: str,
    metrics: list[tuple[str, str]],
    labels: dict[str, str] | None = None,
) -> TrialRecord:
    """Build a TrialRecord from raw Katib-style values (condition name, string metrics)."""
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    for metric_name, raw in metrics:
        parsed = parse_metric_value(raw)
        if type(parsed) is float:
            numbers[metric_name] = parsed
            texts.pop(metric_name, None)
        else:
            texts[metric_name] = parsed
            numbers.pop(metric_name, None)
    if condition not in CONDITIONS:
        condition = "UNKNOWN"
    return TrialRecord(name, assignments, condition, numbers, texts, labels or {})
