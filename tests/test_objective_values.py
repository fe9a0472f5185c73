"""Objective values no measurement has (NaN, infinities, numbers beyond float64) and finite extremes.

Katib records such a value as its collector reads it and the trial stays Succeeded; its experiment status
parses the value with strconv.ParseFloat and compares it, so a first NaN stayed the best trial for good and
+Inf both became the best and reached any goal; text out of float64's range (1e999) fails to parse and counts
as a string metric, which Katib makes the best. Here, as in Katib, the trial stays Succeeded with the value it
reported, but no such value is ever the best trial or reaches the goal, and the algorithms treat it as a
failed measurement. The report prints every value as reported and plots 1e308 where it lies.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from katib_nas.runner.manifest import load_experiment
from katib_nas.runner.metrics_collector import MetricSummary
from katib_nas.runner.report import write_report
from katib_nas.runner.store import Store
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.experiment import make_trial

from .support.local_runner import DIGITS, experiment_condition, katib_nas, observation, stub_experiment, trials
from .support.proxylessnas import REINFORCE, experiment, reinforce_history

ODD = ["nan", "inf", "1e999", "-inf", "NaN"]
#: Reads any value text, as a user's metricsFormat may (Katib's default regex reads digits only).
ANY_VALUE = r"([\w-]+)=(\S+)"


def test_non_finite_objectives_stay_succeeded_but_are_never_the_best_nor_reach_the_goal(tmp_path: Path) -> None:
    slots = tmp_path / "slots"
    slots.mkdir()
    changes = {"metricsCollectorSpec": {"source": {"filter": {"metricsFormat": [ANY_VALUE]}}},
               "objective": {"type": "maximize", "goal": 0.99, "objectiveMetricName": "Validation-Accuracy",
                             "additionalMetricNames": ["Validation-Loss", "latency-ms"]}}
    experiment_path = stub_experiment(tmp_path, f"--objectives={','.join(ODD)}", f"--slots={slots}", max_trials=7,
                                      parallel=1, max_failed=1, changes=changes)
    workdir = tmp_path / "run"
    result = katib_nas("run", experiment_path, "--workdir", workdir)
    assert result.returncode == 0, result.stderr
    rows = trials(workdir)
    assert [row[1] for row in rows] == ["Succeeded"] * 7  # +inf did not reach the goal of 0.99
    assert experiment_condition(workdir) == ("Succeeded", "ExperimentMaxTrialsReached")
    values = [observation(workdir, row[0])["Validation-Accuracy"][2] for row in rows]
    assert values[:5] == ODD  # recorded as reported
    finite = {row[0]: float(value) for row, value in zip(rows, values) if value not in ODD}
    best = max(finite, key=finite.__getitem__)
    assert f"best trial {best} Validation-Accuracy={values[[r[0] for r in rows].index(best)]}" in result.stderr
    summary = (workdir / "report" / "summary.md").read_text()
    assert f"`{best}`: Validation-Accuracy=" in summary
    assert "5 trials with a non-finite objective (nan, inf, 1e999, -inf, NaN) are neither ranked nor plotted" \
        in summary
    with open(workdir / "report" / "trials.csv") as handle:
        assert [row["Validation-Accuracy"] for row in csv.DictReader(handle)][:5] == ODD


@pytest.mark.parametrize("value", ODD)
def test_the_algorithms_treat_a_non_finite_objective_as_a_failed_measurement(value: str) -> None:
    history = reinforce_history(6)
    odd = make_trial(history[3].name, history[3].assignments, "SUCCEEDED",
                     [("Validation-Accuracy", value), ("latency-ms", "1.5")], history[3].labels)
    failed = make_trial(history[3].name, history[3].assignments, "FAILED", [], history[3].labels)
    assert odd.objective("Validation-Accuracy") is None
    with_odd = engine.suggest(experiment(REINFORCE), history[:3] + [odd] + history[4:], 3, 6)
    assert with_odd == engine.suggest(experiment(REINFORCE), history[:3] + [failed] + history[4:], 3, 6)


EXTREMES = ["1e308", "-1e308", "1.7976931348623157e308", "-1.7976931348623157e308", "5e-324", "0.5", "nan", "inf"]


def test_the_report_of_extreme_values_prints_them_as_reported_and_plots_them(tmp_path: Path) -> None:
    spec = load_experiment(DIGITS)
    workdir = tmp_path / "run"
    store = Store.open(workdir)
    store.create_experiment(spec.name, spec.document, str(DIGITS), {"maxTrialCount": len(EXTREMES),
                            "parallelTrialCount": 1, "maxFailedTrialCount": 1}, [], str(tmp_path))
    store.add_trials([(f"t{i}", {"architecture": "in8x8x1-cls10-stem8/w8:c3"}, {}) for i in range(len(EXTREMES))], [])
    for i, value in enumerate(EXTREMES):
        latency = EXTREMES[(5 - i) % len(EXTREMES)]  # extremes on the latency axis too
        store.mark_running(f"t{i}", 1.0)
        store.finish_trial(f"t{i}", "Succeeded", 0, "", 2.0, [],
                           [MetricSummary("Validation-Accuracy", value, value, value),
                            MetricSummary("latency-ms", latency, latency, latency)], "")
    store.set_experiment_condition("Succeeded", "ExperimentMaxTrialsReached")
    store.close()
    summary = write_report(workdir).read_text()
    report = workdir / "report"
    assert (report / "objective.png").stat().st_size > 0 and (report / "pareto.png").stat().st_size > 0
    assert "`t2`: Validation-Accuracy=1.7976931348623157e308" in summary  # the largest finite value is the best
    assert "| t3 | -1.7976931348623157e308 | Succeeded |" not in summary  # top 5 of 6 finite values
    assert "| t1 | -1e308 | Succeeded |" in summary
    with open(report / "trials.csv") as handle:
        assert [row["Validation-Accuracy"] for row in csv.DictReader(handle)] == EXTREMES
