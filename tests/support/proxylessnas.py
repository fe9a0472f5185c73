"""proxylessnas on the suggestion side: an Experiment, its reinforce settings and a history of its own trials."""

from __future__ import annotations

import random
from typing import Any

from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.experiment import ExperimentInfo, TrialRecord, make_trial


def nas_config(num_layers: int = 6, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    mbconv = {"operationType": "mbconv", "parameters": [
        {"name": "kernel_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3", "5", "7"]}},
        {"name": "expand_ratio", "parameterType": "categorical", "feasibleSpace": {"list": ["3", "6"]}}]}
    return {"graphConfig": {"numLayers": num_layers, "inputSizes": [28, 28, 1], "outputSizes": [10]},
            "operations": [mbconv, {"operationType": "zero"}] + (extra or [])}


def experiment(settings: dict[str, str] | None = None, **fields: Any) -> ExperimentInfo:
    base = {"name": "px", "algorithm": "proxylessnas", "settings": settings or {},
            "objective_metric": "Validation-Accuracy", "additional_metrics": ("latency-ms",),
            "nas_config": nas_config()}
    base.update(fields)
    return ExperimentInfo(**base)


REINFORCE = {"mode": "reinforce", "latency_target_ms": "2", "latency_exponent": "0.5", "reinforce_lr": "1",
             "latency_metric": "latency-ms"}


def reinforce_history(rounds: int, seed: int = 0) -> list[TrialRecord]:
    """Trials proposed by the algorithm itself, completed with accuracies favouring mb3e3 and low latency."""
    history: list[TrialRecord] = []
    rng = random.Random(seed)
    for k in range(rounds):
        proposal = engine.suggest(experiment(REINFORCE), history, 1, k)
        text = proposal.assignments[0]["architecture"]
        cheap = text.count("mb3e3")
        accuracy = 0.5 + 0.07 * cheap + 0.01 * rng.random()
        latency = 1.0 + text.count("mb7") * 0.4
        history.append(make_trial(f"px-{rng.randrange(10**6):06d}", proposal.assignments[0], "SUCCEEDED",
                                  [("Validation-Accuracy", str(accuracy)), ("latency-ms", str(latency))],
                                  proposal.labels[0]))
    return history
