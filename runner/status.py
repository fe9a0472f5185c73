"""Experiment status from its trials, by Katib's rules.

Best trial: over every trial whose objective value (picked by the
objective's strategy) is available; a non-numeric value makes that trial
the best (the latest string wins). NaN, infinities and numbers beyond
float64 (1e999) are never the best and never reach the goal: Katib
compares them as parsed, so a first NaN stays its best trial and +Inf
reaches any goal; here they are what they are, failed measurements. Completion, in Katib's order: goal
reached -> Succeeded; failed + metrics-unavailable trials reaching
maxFailedTrialCount -> Failed; completed trials reaching maxTrialCount ->
Succeeded.

Early stopping follows Katib's medianstop service and metrics collector:
when a trial starts, the rule is the mean, over the trials that succeeded so
far, of each one's average objective over its first `start_step` reports
(Katib's service names it the median; it computes this mean). Without
`min_trials_required` succeeded trials there is no rule. The collector
tracks the trial's best objective so far and compares it once, at the
objective's `start_step`-th report: below the rule (above it when
minimising), the trial is stopped and becomes EarlyStopped.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from .manifest import ExperimentSpec, MedianStop, Objective
from .metrics_collector import UNAVAILABLE, go_float_value
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
        number = go_float_value(text)
        if number is None:
            best_index = index
            continue
        if not math.isfinite(number):
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


@dataclass(frozen=True)
class StopRule:
    """Katib's EarlyStoppingRule for the objective: stop when the best value is `less`/`greater` than `value`
    at the objective's `start_step`-th report."""

    metric: str
    value: float
    comparison: str
    start_step: int


def median_stop_rule(settings: MedianStop, objective: Objective,
                     histories: Sequence[Sequence[float]]) -> StopRule | None:
    """The rule for a trial starting now; `histories` holds each succeeded trial's objective values in the
    order they were reported. None while fewer than min_trials_required trials have values."""
    averages = [sum(values[:settings.start_step]) / len(values[:settings.start_step])
                for values in histories if values]
    if len(averages) < settings.min_trials_required:
        return None
    comparison = "less" if objective.maximize else "greater"
    return StopRule(objective.metric, sum(averages) / len(averages), comparison, settings.start_step)


class RuleProgress:
    """One running trial against its rule, as Katib's metrics collector applies it report by report."""

    def __init__(self, rule: StopRule, maximize: bool):
        self.rule = rule
        self.maximize = maximize
        self.reports = 0
        self.best: float | None = None
        self.stopped = False

    def add(self, value: float) -> bool:
        """Take the next objective value; True when this report stops the trial."""
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value
        self.reports += 1
        if self.reports != self.rule.start_step or self.stopped:
            return False
        below = self.best < self.rule.value if self.rule.comparison == "less" else self.best > self.rule.value
        self.stopped = below
        return below

    def reason(self) -> str:
        return f"early stopped by medianstop: best {self.rule.metric} {self.best:.6g} after {self.reports} reports, " \
               f"{'below' if self.rule.comparison == 'less' else 'above'} the succeeded trials' mean {self.rule.value:.6g}"
