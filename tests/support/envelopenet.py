"""envelopenet on the suggestion side: a small Experiment and finished trials with branch statistics."""

from __future__ import annotations

import random

from katib_nas.contract.branch_stats import format_branch_stats, format_skip_gates
from katib_nas.contract.codec import decode
from katib_nas.suggestion.core.experiment import ExperimentInfo, TrialRecord, make_trial

SMALL_NAS_CONFIG = {
    "graphConfig": {"numLayers": 2, "inputSizes": [8, 8, 1], "outputSizes": [10]},
    "operations": [
        {"operationType": "convolution", "parameters": [
            {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["1", "3"]}}]},
        {"operationType": "separable_convolution", "parameters": [
            {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}}]},
    ],
}
METRICS = ("Validation-Loss", "Branch-Stats", "Skip-Gates")
BASE_SETTINGS = {"iterations": "3", "width": "12", "initial_cells": "2", "max_cells": "5"}


def experiment(settings: dict[str, str] | None = None, parallel: int = 1, name: str = "exp",
               nas_config: dict | None = None, metrics: tuple[str, ...] = METRICS) -> ExperimentInfo:
    return ExperimentInfo(name=name, algorithm="envelopenet", settings={**BASE_SETTINGS, **(settings or {})},
                          objective_metric="Validation-Accuracy", additional_metrics=metrics,
                          parallel_trial_count=parallel, nas_config=nas_config or SMALL_NAS_CONFIG)


def branch_values(assignment: dict[str, str]) -> tuple[list[list[float]], list[list[float]]]:
    """What a trial with this seed 'measures': deterministic per seed, exact in %.6g."""
    arch = decode(assignment["architecture"])
    rng = random.Random(int(assignment["seed"]))
    branches = [[round(rng.uniform(0.1, 2.0), 4) for _ in cell.ops] for cell in arch.cells]
    gates = [[round(rng.uniform(-1.0, 1.0), 4) for _ in cell.skips] for cell in arch.cells]
    return branches, gates


def finished(assignment: dict[str, str], name: str, condition: str = "SUCCEEDED",
             branch_stats: str | None = None, skip_gates: str | None = None) -> TrialRecord:
    branches, gates = branch_values(assignment)
    metrics = [("Validation-Accuracy", "0.81"), ("Validation-Loss", "0.52"),
               ("Branch-Stats", branch_stats if branch_stats is not None else format_branch_stats(branches)),
               ("Skip-Gates", skip_gates if skip_gates is not None else format_skip_gates(gates))]
    return make_trial(name, assignment, condition, metrics if condition == "SUCCEEDED" else [])
