"""REINFORCE's reading of the trial history: rewards, which trials are used or skipped, labels, log lines."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from katib_nas.contract.codec import decode
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.proxylessnas.reinforce import (
    INDEX_LABEL,
    MAX_ACCURACY,
    MAX_LATENCY_MS,
    MIN_LATENCY_MS,
    POLICY_LABEL,
    ReinforceConfig,
    episodes_from_history,
    form_batches,
    reward,
    softmax,
)
from katib_nas.suggestion.core.experiment import TrialRecord, make_trial

from .support.proxylessnas import experiment

ARCHITECTURE = engine.suggest(experiment(), [], 1, 0).assignments[0]
SUPERNET = decode(ARCHITECTURE["architecture"])
PATH = engine.suggest(experiment({"mode": "reinforce", "latency_target_ms": "2", "latency_metric": "latency-ms"},
                                 additional_metrics=("latency-ms",)), [], 1, 0).assignments[0]


def config(target: float = 2.0, exponent: float = 1.0) -> ReinforceConfig:
    return ReinforceConfig(0.3, 2, 0.9, target, exponent, "Validation-Accuracy", "latency-ms")


def trial(name: str, accuracy: str | None = "0.8", latency: str | None = "1.0",
          labels: dict[str, str] | None = None, assignments: dict[str, str] | None = None) -> TrialRecord:
    metrics = [(metric, value) for metric, value in (("Validation-Accuracy", accuracy), ("latency-ms", latency))
               if value is not None]
    return make_trial(name, assignments or PATH, "SUCCEEDED", metrics, labels or {})


@pytest.mark.parametrize(("target", "exponent", "latency", "expected"), [
    (0.0, 1.0, 4.0, 0.8),          # no target: the accuracy alone
    (0.5, 1.0, 4.0, 0.8 * 0.125),  # a target below 1 ms still weighs the latency
    (2.0, 0.0, 4.0, 0.8),          # exponent 0: the accuracy alone
    (2.0, -1.0, 4.0, 1.6),         # a negative exponent rewards the slower network
    (2.0, 1.0, 1.0, 1.6),
])
def test_reward(target: float, exponent: float, latency: float, expected: float) -> None:
    assert reward(0.8, latency, config(target, exponent)) == pytest.approx(expected)


@pytest.mark.parametrize("latency", [None, 0.0, -1.0])
def test_a_latency_aware_reward_needs_a_positive_latency(latency: float | None) -> None:
    with pytest.raises(ValueError, match="positive latency"):
        reward(0.8, latency, config())


@pytest.mark.parametrize(("target", "exponent", "used"), [
    (0.0, 1.0, True), (0.5, 1.0, False), (2.0, 0.0, True), (2.0, 1.0, False), (2.0, -1.0, False)])
def test_a_trial_without_latency_is_used_only_when_the_reward_ignores_latency(target: float, exponent: float,
                                                                             used: bool) -> None:
    episodes = episodes_from_history([trial("t0", latency=None)], SUPERNET, config(target, exponent))
    assert len(episodes) == int(used)


def test_skipped_trials_do_not_stop_the_reading_of_later_ones(caplog: pytest.LogCaptureFixture) -> None:
    history = [trial("no-accuracy", accuracy=None, labels={INDEX_LABEL: "0"}),
               trial("no-latency", latency="0", labels={INDEX_LABEL: "1"}),
               trial("unreadable", accuracy="250", labels={INDEX_LABEL: "2"}),
               trial("other-space", assignments={"architecture": "in28x28x1-cls10-stem8/w8:c3"},
                     labels={INDEX_LABEL: "3"}),
               trial("good", labels={INDEX_LABEL: "4"})]
    with caplog.at_level(logging.WARNING):
        episodes = episodes_from_history(history, SUPERNET, config())
    assert [episode.name for episode in episodes] == ["good"]
    # A latency of 0 or below is a missing measurement, skipped quietly; only the impossible accuracy is named.
    assert "skipped 1 trial(s)" in caplog.text and "'unreadable'" in caplog.text


def test_the_first_unreadable_trial_is_named(caplog: pytest.LogCaptureFixture) -> None:
    history = [trial("first", accuracy="-1", labels={INDEX_LABEL: "0"}),
               trial("second", latency=str(MAX_LATENCY_MS * 10), labels={INDEX_LABEL: "1"})]
    with caplog.at_level(logging.WARNING):
        assert episodes_from_history(history, SUPERNET, config()) == []
    assert "skipped 2 trial(s)" in caplog.text and "first: trial 'first'" in caplog.text


@pytest.mark.parametrize(("accuracy", "latency"), [
    ("0", "1.0"), (str(MAX_ACCURACY), "1.0"), ("0.8", str(MIN_LATENCY_MS)), ("0.8", str(MAX_LATENCY_MS))])
def test_metric_values_at_the_bounds_are_readable(accuracy: str, latency: str, caplog: pytest.LogCaptureFixture
                                                  ) -> None:
    with caplog.at_level(logging.WARNING):
        episodes = episodes_from_history([trial("t0", accuracy=accuracy, latency=latency)], SUPERNET, config())
    assert len(episodes) == 1
    assert "skipped" not in caplog.text


def test_a_clipped_latency_factor_is_logged_only_when_clipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        episodes_from_history([trial("ordinary", latency="1.0")], SUPERNET, config())
    assert "clipped" not in caplog.text
    with caplog.at_level(logging.WARNING):
        episodes = episodes_from_history([trial("ordinary", latency="1.0", labels={INDEX_LABEL: "0"}),
                                          trial("tiny", latency=str(MIN_LATENCY_MS), labels={INDEX_LABEL: "1"}),
                                          trial("tinier", latency=str(MIN_LATENCY_MS), labels={INDEX_LABEL: "2"})],
                                         SUPERNET, config())
    assert "clipped the latency factor" in caplog.text and "for 2 trial(s); first: trial 'tiny'" in caplog.text
    assert episodes[1].reward == pytest.approx(0.8 * 1e6)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        episodes_from_history([trial("tiny", latency=str(MIN_LATENCY_MS))], SUPERNET, config(2.0, 0.0))
    assert "clipped" not in caplog.text


@pytest.mark.parametrize(("labels", "policy", "index"), [
    ({INDEX_LABEL: "5", POLICY_LABEL: "3"}, 3, 5.0),
    ({INDEX_LABEL: "5"}, 2, 5.0),                     # no policy label: the batch its index falls in (5 // 2)
    ({INDEX_LABEL: "5", POLICY_LABEL: "-1"}, 2, 5.0),  # an impossible label counts as none
    ({}, 0, float("inf")),                            # neither label: replays last, in the first version
    ({INDEX_LABEL: "-1"}, 0, float("inf")),           # an index that is no suggestion index counts as none
])
def test_labels_give_each_trial_its_version_and_replay_position(labels: dict[str, str], policy: int,
                                                                index: float) -> None:
    (episode,) = episodes_from_history([trial("t0", labels=labels)], SUPERNET, config())
    assert (episode.policy, episode.index) == (policy, index)


def test_the_first_suggestion_and_the_first_probabilities_are_labelled_zero() -> None:
    """A trial labelled index 0 and version 0 (the first suggestion, drawn from the first probabilities) opens
    the first update, together with a later trial labelled version 0."""
    history = [trial("a", labels={INDEX_LABEL: "5", POLICY_LABEL: "0"}),
               trial("b", labels={INDEX_LABEL: "0", POLICY_LABEL: "0"})]
    episodes = episodes_from_history(history, SUPERNET, config())
    assert [[episode.name for episode in batch] for batch in form_batches(episodes, 2, {})] == [["b", "a"]]


def test_softmax_of_large_logits_stays_finite() -> None:
    probs = softmax(np.array([[1000.0, 0.0, -1000.0]]))
    np.testing.assert_allclose(probs, [[1.0, 0.0, 0.0]])
