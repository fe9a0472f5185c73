"""Experiment status from its trials, by Katib's rules.

Best trial: over every trial whose objective value (picked by the
objective's strategy) is available; a non-numeric value makes that trial
the best (the latest string wins). Completion, in Katib's order: goal
reached -> Succeeded; failed + metrics-unavailable trials reaching
maxFailedTrialCount -> Failed; completed trials reaching maxTrialCount ->
Succeeded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .manifest import ExperimentSpec, Objective
from .metrics_collector import UNAVAILABLE, go_float
from .store import TrialRow

COMPLETED = ("Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable")
FAILED = ("Failed", "MetricsUnavailable")
ACTIVE = ("Created", "Running")


@dataclass(frozen=True)
class Outcome:
    """A finished experiment's condition, Katib's reason and message."""

    condition: str
    reason: str
    message: str


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    best: TrialRow | None
    best_value: str
    goal_reached: bool

    def count(self, *conditions: str) -> int:
        return sum(self.counts.get(c, 0) for c in conditions)

    @property
    def completed(self) -> int:
        return self.count(*COMPLETED)

    @property
    def failed(self) -> int:
        return self.count(*FAILED)

    @property
    def active(self) -> int:
        return self.count(*ACTIVE)

    @property
    def running(self) -> int:
        return self.count("Running")


def objective_value(trial: TrialRow, objective: Objective) -> str:
    """The trial's objective value as Katib reads it for the experiment status; "unavailable" if none."""
    summary = trial.observation.get(objective.metric)
    if summary is None:
        return UNAVAILABLE
    return summary.value(objective.strategy(objective.metric)) or UNAVAILABLE


def summarize_trials(trials: Sequence[TrialRow], objective: Objective) -> Summary:
    counts = Counter(trial.condition for trial in trials)
    best_index, best_number, goal_reached = -1, 0.0, False
    for index, trial in enumerate(trials):
        text = objective_value(trial, objective)
        if text == UNAVAILABLE:
            continue
        number = go_float(text)
        if number is None:
            best_index = index
            continue
        if best_index == -1:
            best_index, best_number = index, number
        better = number > best_number if objective.maximize else number < best_number
        if better:
            best_index, best_number = index, number
        if objective.goal is not None:
            reached = best_number >= objective.goal if objective.maximize else best_number <= objective.goal
            goal_reached = goal_reached or reached
    best = trials[best_index] if best_index >= 0 else None
    return Summary(dict(counts), best, objective_value(best, objective) if best else "", goal_reached)


def outcome(summary: Summary, spec: ExperimentSpec) -> Outcome | None:
    """Whether the experiment is over, and how; None while it should go on."""
    if summary.goal_reached:
        return Outcome("Succeeded", "ExperimentGoalReached", "Experiment has succeeded because Objective goal has "
                                                              "reached")
    limit = spec.max_failed_trial_count
    if limit is not None and summary.failed != 0 and summary.failed >= limit:
        return Outcome("Failed", "ExperimentFailed", "Experiment has failed because max failed count has reached")
    if spec.max_trial_count is not None and summary.completed >= spec.max_trial_count:
        return Outcome("Succeeded", "ExperimentMaxTrialsReached", "Experiment has succeeded because max trial count "
                                                                   "has reached")
    return None


def trials_to_request(summary: Summary, spec: ExperimentSpec) -> int:
    """How many new trials to ask for: fill the free parallel slots, never past maxTrialCount."""
    required = spec.parallel_trial_count
    if spec.max_trial_count is not None:
        required = min(required, spec.max_trial_count - summary.completed)
    return max(required - summary.active, 0)
