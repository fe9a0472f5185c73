"""`katib-nas run` as a user runs it: a real subprocess, a real suggestion server, real trial subprocesses.

The trials here run tests/data/stub_trial.py, a small program that prints Katib-style metrics, so the runner's
own behaviour (failures, missing metrics, the File collector, Ctrl-C and resume, bad input) is fast to test.
tests/test_local_e2e.py runs the real `katib-nas trial` on digits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import load_yaml
from .support.local_runner import (
    DIGITS,
    HANG_GUARD_SECONDS,
    STUB,
    experiment_condition,
    ignore_sigint,
    katib_nas,
    observation,
    one_line,
    slow_running_trial,
    stub_experiment,
    trials,
    trials_so_far,
    wait_for,
)


def test_stub_experiment_runs_to_max_trials_and_reports(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    result = katib_nas("run", stub_experiment(tmp_path), "--workdir", workdir)
    assert result.returncode == 0, result.stderr
    rows = trials(workdir)
    assert [row[1] for row in rows] == ["Succeeded"] * 4 and all(row[2] == 1 for row in rows)
    assert len({row[0] for row in rows}) == 4 and all(row[0].startswith("nas-random-digits-") for row in rows)
    accuracy = observation(workdir, rows[0][0])["Validation-Accuracy"]
    assert accuracy[0] == accuracy[1] == accuracy[2] and 0.5 <= float(accuracy[2]) < 0.95
    assert observation(workdir, rows[0][0])["params"] == ("unavailable",) * 3
    assert experiment_condition(workdir) == ("Succeeded", "ExperimentMaxTrialsReached")
    assert "experiment nas-random-digits succeeded (ExperimentMaxTrialsReached)" in result.stderr
    assert f"report: {workdir / 'report' / 'summary.md'}" in result.stderr
    report = workdir / "report"
    for name in ("trials.csv", "best_architecture.txt", "best_architecture.json", "objective.png", "pareto.png",
                 "best_network.svg", "summary.md"):
        assert (report / name).stat().st_size > 0, name
    assert len((report / "trials.csv").read_text().splitlines()) == 5
    # Suggestions are distinct architectures and the best one is the reported one.
    architectures = {line.split(",")[11] for line in (report / "trials.csv").read_text().splitlines()[1:]}
    assert len(architectures) == 4
    assert (report / "best_architecture.txt").read_text().strip() in architectures
    again = katib_nas("report", workdir)
    assert again.returncode == 0 and str(report / "summary.md") in again.stdout


def test_failing_trials_fail_the_experiment_at_max_failed(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    result = katib_nas("run", stub_experiment(tmp_path, "--fail-when=in", parallel=1), "--workdir", workdir)
    assert result.returncode == 1
    assert [(row[1], row[3]) for row in trials(workdir)] == [("Failed", "exited with code 3")] * 2
    assert experiment_condition(workdir) == ("Failed", "ExperimentFailed")


def test_missing_objective_makes_trials_metrics_unavailable(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    result = katib_nas("run", stub_experiment(tmp_path, "--no-objective-when=in", parallel=1, max_failed=None),
                       "--workdir", workdir)
    assert result.returncode == 0, result.stderr
    rows = trials(workdir)
    assert [row[1] for row in rows] == ["MetricsUnavailable"] * 4
    assert observation(workdir, rows[0][0])["Validation-Accuracy"] == ("unavailable",) * 3
    # As in Katib, an observation without the objective keeps nothing else either.
    assert observation(workdir, rows[0][0])["Validation-Loss"] == ("unavailable",) * 3
    log = (workdir / "suggestion.log").read_text()
    assert "trials=0" in log and "trials=1" not in log  # Katib leaves such trials out of requests


@pytest.mark.parametrize("file_format", ["TEXT", "JSON"])
def test_file_collector(tmp_path: Path, file_format: str) -> None:
    path = "/var/log/katib/metrics.log"
    collector = {"collector": {"kind": "File"},
                 "source": {"fileSystemPath": {"path": path, "kind": "File", "format": file_format}}}
    experiment = stub_experiment(tmp_path, f"--metrics-file={path}", f"--format={file_format.lower()}", max_trials=2,
                                 changes={"metricsCollectorSpec": collector})
    workdir = tmp_path / "run"
    result = katib_nas("run", experiment, "--workdir", workdir, "--no-report")
    assert result.returncode == 0, result.stderr
    rows = trials(workdir)
    assert [row[1] for row in rows] == ["Succeeded"] * 2
    for row in rows:
        assert (workdir / "trials" / row[0] / "metrics" / path.lstrip("/")).is_file()
        assert float(observation(workdir, row[0])["latency-ms"][2]) > 0


def test_ctrl_c_stops_trials_and_resume_finishes_without_rerunning(tmp_path: Path) -> None:
    workdir, marker = tmp_path / "run", tmp_path / "slow"
    experiment = stub_experiment(tmp_path, f"--slow-if-exists={marker}", max_trials=4, parallel=1)
    # Started with SIGINT ignored, as a shell without job control starts a background job: the runner
    # must still stop on it.
    runner = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "run", str(experiment),
                               "--workdir", str(workdir)], stderr=subprocess.PIPE, text=True,
                              preexec_fn=ignore_sigint)
    wait_for(lambda: any(row[1] == "Succeeded" for row in trials_so_far(workdir)))
    marker.touch()
    wait_for(lambda: slow_running_trial(workdir) is not None)
    interrupted = slow_running_trial(workdir)
    pid = int((workdir / "trials" / interrupted / "output.log").read_text().split("pid ")[1].split()[0])
    runner.send_signal(signal.SIGINT)
    stderr = runner.communicate(timeout=HANG_GUARD_SECONDS)[1]
    assert runner.returncode == 130, stderr
    assert f"--workdir {workdir} --resume" in stderr
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    before = {row[0]: row for row in trials(workdir)}
    assert before[interrupted][1] == "Created" and "interrupted" in before[interrupted][3]
    finished = {name for name, row in before.items() if row[1] == "Succeeded"}
    assert finished and all(row[1] in ("Succeeded", "Created") for row in before.values())
    marker.unlink()
    resumed = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    after = {row[0]: row for row in trials(workdir)}
    assert len(after) == 4 and all(row[1] == "Succeeded" for row in after.values())
    assert all(after[name][2] == 1 for name in finished)  # no completed trial ran again
    assert after[interrupted][2] == 2  # the interrupted one ran again, under the same name
    assert set(before) <= set(after)


@pytest.mark.parametrize("change, message", [
    ({"algorithm": {"algorithmName": "no-such-algorithm"}},
     "the suggestion service rejected the experiment: unknown algorithm 'no-such-algorithm'"),
    ({"algorithm": {"algorithmName": "nas-random", "algorithmSettings": [{"name": "seed", "value": "x"}]}},
     "the suggestion service rejected the experiment: setting seed='x'"),
])
def test_server_invalid_argument_is_one_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    result = katib_nas("run", stub_experiment(tmp_path, changes=change), "--workdir", tmp_path / "run")
    assert result.returncode == 2
    assert message in one_line(result.stderr)
    assert not (tmp_path / "run").exists()  # a refused run leaves no workdir behind


def test_unreferenced_assignment_leaves_no_state(tmp_path: Path) -> None:
    template = load_yaml(DIGITS)["spec"]["trialTemplate"]
    template["trialParameters"] = [{"name": "trialName", "reference": "${trialSpec.Name}"}]
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", str(STUB), "--architecture=${trialParameters.trialName}"]
    workdir = tmp_path / "run"
    result = katib_nas("run", stub_experiment(tmp_path, changes={"trialTemplate": template}), "--workdir", workdir)
    assert result.returncode == 2
    assert "the suggestion assigned ['architecture'] but no spec.trialTemplate.trialParameters entry references it" \
        in one_line(result.stderr)
    assert trials(workdir) == []
    fixed = katib_nas("run", stub_experiment(tmp_path, max_trials=2), "--workdir", workdir, "--no-report")
    assert fixed.returncode == 0, fixed.stderr
    assert len(trials(workdir)) == 2


@pytest.mark.parametrize("text, message", [
    ("apiVersion: batch/v1\nkind: Job\n", "is not a Katib Experiment"),
    (None, "spec.nasConfig is missing"),
])
def test_bad_files_are_one_line(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "bad.yaml"
    if text is None:
        document = load_yaml(DIGITS)
        del document["spec"]["nasConfig"]
        text = yaml.safe_dump(document)
    path.write_text(text)
    result = katib_nas("run", path, "--workdir", tmp_path / "run")
    assert result.returncode == 2 and message in one_line(result.stderr)


def test_trial_command_not_found(tmp_path: Path) -> None:
    document = load_yaml(DIGITS)
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["no-such-trainer", "--architecture=${trialParameters.architecture}"]
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    result = katib_nas("run", path, "--workdir", tmp_path / "run")
    assert result.returncode == 2
    assert one_line(result.stderr) == "katib-nas run: error: trial command 'no-such-trainer' not found on PATH"


def test_workdir_is_protected_and_resume_checks_the_experiment(tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    experiment = stub_experiment(tmp_path, max_trials=2)
    assert katib_nas("run", experiment, "--workdir", workdir, "--no-report").returncode == 0
    again = katib_nas("run", experiment, "--workdir", workdir)
    assert again.returncode == 2 and "pass --resume to continue it" in one_line(again.stderr)
    more = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--max-trials", "3", "--no-report")
    assert more.returncode == 0, more.stderr
    assert len(trials(workdir)) == 3
    changed = stub_experiment(tmp_path, max_trials=2, changes={"objective": {
        "type": "minimize", "objectiveMetricName": "Validation-Loss"}})
    refused = katib_nas("run", changed, "--workdir", workdir, "--resume")
    assert refused.returncode == 2 and "differs from the experiment stored in the workdir at spec.objective" \
        in one_line(refused.stderr)
    assert len(trials(workdir)) == 3
