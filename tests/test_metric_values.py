"""Algorithms read whatever trials report: absurd metric values are skipped or clipped, never fatal.

Before: in proxylessnas reinforce, an accuracy of 1e308 (or 1e300 with a latency of 1e-300) made every
later call fail with "Probabilities contain NaN" for as long as the trial stayed in the history, and a
label such as `²` failed float().
"""

from __future__ import annotations

import logging
import math

import pytest

from katib_nas.contract.branch_stats import format_branch_stats
from katib_nas.contract.codec import decode
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import (
    INDEX_LABEL,
    MAX_LATENCY_FACTOR,
    ReinforceConfig,
    reward,
)
from katib_nas.suggestion.core.experiment import TrialRecord, make_trial

from .support.envelopenet import experiment as envelopenet_experiment
from .support.envelopenet import finished
from .support.proxylessnas import REINFORCE, experiment, reinforce_history


def with_metrics(trial: TrialRecord, accuracy: str, latency: str, label: str | None = None) -> TrialRecord:
    labels = dict(trial.labels) if label is None else {INDEX_LABEL: label}
    return make_trial(trial.name, trial.assignments, "SUCCEEDED",
                      [("Validation-Accuracy", accuracy), ("latency-ms", latency)], labels)


@pytest.mark.parametrize("accuracy, latency", [
    ("1e308", "1.5"), ("-1e308", "1.5"), ("1e300", "1e-300"), ("0.9", "1e-300"), ("0.9", "1e300"), ("-0.5", "1"),
])
def test_absurd_values_are_skipped_and_the_reason_logged(accuracy: str, latency: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    history = reinforce_history(8)
    poisoned = history[:4] + [with_metrics(history[4], accuracy, latency)] + history[5:]
    without = history[:4] + history[5:]
    with caplog.at_level(logging.WARNING):
        answer = engine.suggest(experiment(REINFORCE), poisoned, 3, 8)
    assert len(answer.assignments) == 3
    assert answer == engine.suggest(experiment(REINFORCE), without, 3, 8)  # as if the trial were not there
    assert "skipped 1 trial(s)" in caplog.text and repr(history[4].name) in caplog.text


def test_poisoned_history_keeps_answering_every_later_call() -> None:
    history = [with_metrics(t, "1e308", "1.5") if i % 2 else with_metrics(t, "1e300", "1e-300")
               for i, t in enumerate(reinforce_history(6))]
    for k in range(6, 10):
        proposal = engine.suggest(experiment(REINFORCE), history, 2, k)
        assert len(proposal.assignments) == 2
        history.append(make_trial(f"px-new-{k}", proposal.assignments[0], "SUCCEEDED",
                                  [("Validation-Accuracy", "-1e308"), ("latency-ms", "1e-300")],
                                  proposal.labels[0]))


@pytest.mark.parametrize("label", ["²", "١٢", "9" * 5000, "-1", "", "1e3"])
def test_odd_index_labels_sort_last_instead_of_failing(label: str) -> None:
    history = reinforce_history(4)
    odd = with_metrics(history[0], "0.6", "1.2", label=label)
    assert len(engine.suggest(experiment(REINFORCE), [odd] + history[1:], 2, 4).assignments) == 2


def test_reward_is_finite_at_the_extremes_of_every_setting(caplog: pytest.LogCaptureFixture) -> None:
    config = ReinforceConfig(100.0, 2, 1.0, 1e6, 100.0, "Validation-Accuracy", "latency-ms")
    value = reward(100.0, 1e-6, config)
    assert math.isfinite(value) and value == 100.0 * MAX_LATENCY_FACTOR
    settings = dict(REINFORCE, latency_target_ms="1000000", latency_exponent="100", reinforce_lr="100")
    history = [with_metrics(t, "0.9", "0.001") for t in reinforce_history(5)]
    with caplog.at_level(logging.WARNING):
        assert len(engine.suggest(experiment(settings), history, 2, 5).assignments) == 2
    assert "clipped the latency factor" in caplog.text


def test_envelopenet_averages_huge_statistics_without_overflow() -> None:
    experiment_info = envelopenet_experiment(parallel=2, settings={"skip": "false"})
    proposal = engine.suggest(experiment_info, [], 2, 0)
    history = []
    for index, assignment in enumerate(proposal.assignments):
        cells = decode(assignment["architecture"]).cells
        huge = format_branch_stats([[1e308] * len(cell.ops) for cell in cells])
        history.append(finished(assignment, f"t{index}", branch_stats=huge))
    assert len(engine.suggest(experiment_info, history, 1, 2).assignments) == 1
