"""Katib's medianstop in `katib-nas run`, and budget overrides as a new user types them.

The rule is checked against Katib's medianstop service and file metrics collector (v0.19.0): the mean over
succeeded trials of each one's average objective over its first start_step reports, compared once, at the
start_step-th report, with the running trial's best value so far. The end-to-end runs use
tests/data/curve_trial.py, which reports a given curve epoch by epoch with timestamps.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest
import yaml

from katib_nas.runner.manifest import MedianStop, Objective
from katib_nas.runner.status import RuleProgress, StopRule, median_stop_rule

from .conftest import REPO, load_yaml
from .support.local_runner import DIGITS, katib_nas, one_line, stub_experiment

CURVE = REPO / "tests" / "data" / "curve_trial.py"
MAXIMIZE = Objective("maximize", "Validation-Accuracy")
MINIMIZE = Objective("minimize", "Validation-Loss")


def test_no_rule_until_enough_trials_succeeded() -> None:
    settings = MedianStop(min_trials_required=3, start_step=2)
    assert median_stop_rule(settings, MAXIMIZE, [[0.5, 0.7], [0.6, 0.8]]) is None
    assert median_stop_rule(settings, MAXIMIZE, [[0.5, 0.7], [0.6, 0.8], []]) is None  # no values: not counted


def test_rule_is_the_mean_of_each_trials_average_over_its_first_start_step_values() -> None:
    rule = median_stop_rule(MedianStop(min_trials_required=3, start_step=2), MAXIMIZE,
                            [[0.5, 0.7, 0.99], [0.6, 0.8], [0.4]])
    assert rule is not None and rule.comparison == "less" and rule.start_step == 2
    assert rule.value == pytest.approx((0.6 + 0.7 + 0.4) / 3)  # Katib's "median" is this mean
    minimizing = median_stop_rule(MedianStop(1, 1), MINIMIZE, [[0.3, 0.1]])
    assert minimizing == StopRule("Validation-Loss", 0.3, "greater", 1)


def test_rule_compares_the_best_value_once_at_the_start_step_report() -> None:
    rule = StopRule("Validation-Accuracy", 0.65, "less", 3)
    late_bloomer = RuleProgress(rule, maximize=True)
    assert [late_bloomer.add(v) for v in (0.7, 0.2, 0.1, 0.0, 0.0)] == [False] * 5  # best 0.7 at report 3
    laggard = RuleProgress(rule, maximize=True)
    assert [laggard.add(v) for v in (0.3, 0.5, 0.6)] == [False, False, True]
    assert "best Validation-Accuracy 0.6 after 3 reports" in laggard.reason()
    too_slow = RuleProgress(rule, maximize=True)
    assert [too_slow.add(v) for v in (0.7, 0.8, 0.9, 0.1)] == [False] * 4  # never compared again after report 3
    loss = RuleProgress(StopRule("Validation-Loss", 0.4, "greater", 2), maximize=False)
    assert [loss.add(v) for v in (0.9, 0.5)] == [False, True]


def curve_experiment(tmp_path: Path, curves: list[str], settings: dict[str, str]) -> Path:
    document = load_yaml(DIGITS)
    spec = document["spec"]
    spec.update(maxTrialCount=len(curves), parallelTrialCount=1, maxFailedTrialCount=0)
    spec["earlyStopping"] = {"algorithmName": "medianstop",
                             "algorithmSettings": [{"name": k, "value": v} for k, v in settings.items()]}
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", str(CURVE), "--architecture=${trialParameters.architecture}",
                            f"--curves={';'.join(curves)}", f"--counter={tmp_path / 'counter'}",
                            "--epoch-seconds=0.3"]
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_trial_exactly_at_the_median_goes_on() -> None:
    """Katib stops a trial only strictly below (maximizing) or above (minimizing) the rule's value."""
    assert RuleProgress(StopRule("Validation-Accuracy", 0.5, "less", 1), maximize=True).add(0.5) is False
    assert RuleProgress(StopRule("Validation-Loss", 0.4, "greater", 1), maximize=False).add(0.4) is False
    assert RuleProgress(StopRule("Validation-Loss", 0.4, "greater", 1), maximize=False).add(0.41) is True


def test_medianstop_stops_trials_below_the_succeeded_mean_and_the_report_shows_them(tmp_path: Path) -> None:
    long_poor = ",".join(["0.3", "0.35"] + ["0.4"] * 10)
    curves = ["0.6,0.7,0.8", "0.6,0.7,0.8", long_poor, "0.7,0.8,0.9", ",".join(["0.64", "0.66"] + ["0.7"] * 10)]
    experiment = curve_experiment(tmp_path, curves, {"min_trials_required": "2", "start_step": "2"})
    done = katib_nas("run", experiment, "--workdir", tmp_path / "run", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "run" / "state.sqlite") as db:
        rows = db.execute("SELECT name, condition, message FROM trials ORDER BY seq").fetchall()
        counts = dict(db.execute("SELECT trial, COUNT(*) FROM metric_logs WHERE metric = 'Validation-Accuracy' "
                                 "GROUP BY trial").fetchall())
    # rule for trial 3 and 4: mean(0.65, 0.65); for trial 5: mean(0.65, 0.65, 0.75) = 0.6833 > its best 0.66
    assert [condition for _, condition, _ in rows] == ["Succeeded", "Succeeded", "EarlyStopped", "Succeeded",
                                                       "EarlyStopped"]
    assert "best Validation-Accuracy 0.35 after 2 reports" in rows[2][2] and "0.65" in rows[2][2]
    assert "0.683333" in rows[4][2]
    assert 2 <= counts[rows[2][0]] < 12  # stopped long before its 12 epochs, with what it reported kept
    assert "early stopped in" in done.stderr
    summary = (tmp_path / "run" / "report" / "summary.md").read_text()
    assert "2 earlystopped" in summary
    with open(tmp_path / "run" / "report" / "trials.csv") as handle:
        conditions = [row["condition"] for row in csv.DictReader(handle)]
    assert conditions.count("EarlyStopped") == 2


def test_max_trials_below_the_yamls_counts_lowers_them_and_says_so(tmp_path: Path) -> None:
    experiment = stub_experiment(tmp_path, max_trials=4, parallel=2, max_failed=2)
    done = katib_nas("run", experiment, "--workdir", tmp_path / "run", "--max-trials", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "note: spec.parallelTrialCount lowered from 2 to 1, the maximum number of trials" in done.stderr
    assert "note: spec.maxFailedTrialCount lowered from 2 to 1, the maximum number of trials" in done.stderr


def test_a_refused_run_leaves_no_state_behind(tmp_path: Path) -> None:
    refused = katib_nas("run", stub_experiment(tmp_path, max_trials=0), "--workdir", tmp_path / "new", cwd=tmp_path)
    assert refused.returncode == 2
    assert one_line(refused.stderr).endswith("spec.maxTrialCount=0 must be greater than 0")
    assert not (tmp_path / "new").exists()
    experiment = stub_experiment(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("kept")
    document = yaml.safe_load(experiment.read_text())
    document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"][0] = \
        "no-such-program-here"
    experiment.write_text(yaml.safe_dump(document))
    refused = katib_nas("run", experiment, "--workdir", mine, cwd=tmp_path)
    assert refused.returncode == 2 and "not found on PATH" in one_line(refused.stderr)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
