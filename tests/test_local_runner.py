"""`katib-nas run` as a user runs it: a real subprocess, a real suggestion server, real trial subprocesses.

The trials here run tests/data/stub_trial.py, a small program that prints Katib-style metrics, so the runner's
own behaviour (failures, missing metrics, the File collector, Ctrl-C and resume, bad input) is fast to test.
tests/test_local_e2e.py runs the real `katib-nas trial` on digits.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
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


def objective(**changes: Any) -> dict[str, Any]:
    """The test Experiment's spec.objective with `changes`, for stub_experiment's changes."""
    return {"objective": {**load_yaml(DIGITS)["spec"]["objective"], **changes}}


def test_minimize_objective_best_trial_is_the_lowest(tmp_path: Path) -> None:
    """Minimizing Validation-Loss, the run's best trial is the one with the lowest loss."""
    changes = objective(type="minimize", objectiveMetricName="Validation-Loss",
                        additionalMetricNames=["Validation-Accuracy", "latency-ms", "params"])
    workdir = tmp_path / "run"
    result = katib_nas("run", stub_experiment(tmp_path, changes=changes), "--workdir", workdir, "--no-report")
    assert result.returncode == 0, result.stderr
    losses = {row[0]: float(observation(workdir, row[0])["Validation-Loss"][2]) for row in trials(workdir)}
    assert len(losses) == 4 and len(set(losses.values())) > 1
    lowest = min(losses, key=losses.__getitem__)
    assert f"best trial {lowest} Validation-Loss={observation(workdir, lowest)['Validation-Loss'][2]}" in result.stderr


def test_unparsable_metrics_fail_that_trial_and_the_run_goes_on(tmp_path: Path) -> None:
    """A trial that exits 0 with a metrics file the collector cannot parse is Failed, saying so; others run."""
    path = "/var/log/katib/metrics.log"
    collector = {"collector": {"kind": "File"},
                 "source": {"fileSystemPath": {"path": path, "kind": "File", "format": "JSON"}}}
    experiment = stub_experiment(tmp_path, f"--metrics-file={path}", "--format=json",
                                 f"--malformed-once={tmp_path / 'malformed'}", max_trials=3, parallel=1,
                                 changes={"metricsCollectorSpec": collector})
    workdir = tmp_path / "run"
    result = katib_nas("run", experiment, "--workdir", workdir, "--no-report")
    assert result.returncode == 0, result.stderr
    rows = trials(workdir)
    assert [row[1] for row in rows] == ["Failed", "Succeeded", "Succeeded"]
    assert rows[0][3].startswith("metrics collection failed: failed to parse the json object on line 4")
    assert experiment_condition(workdir) == ("Succeeded", "ExperimentMaxTrialsReached")


def test_goal_reached_kills_the_trials_still_running(tmp_path: Path) -> None:
    """With two trials running, the fast one reaching the goal ends the experiment and kills the slow one."""
    experiment = stub_experiment(tmp_path, f"--slow-once={tmp_path / 'slow'}", max_trials=4, parallel=2,
                                 changes=objective(goal=0.5))  # the stub's accuracy is at least 0.5
    workdir = tmp_path / "run"
    result = katib_nas("run", experiment, "--workdir", workdir, "--no-report")
    assert result.returncode == 0, result.stderr
    rows = {row[1]: row for row in trials(workdir)}
    assert sorted(rows) == ["Killed", "Succeeded"] and rows["Killed"][3] == "stopped: ExperimentGoalReached"
    assert experiment_condition(workdir) == ("Succeeded", "ExperimentGoalReached")
    log = (workdir / "trials" / rows["Killed"][0] / "output.log").read_text()
    assert "slow: sleeping" in log
    with pytest.raises(ProcessLookupError):
        os.kill(int(log.split("pid ")[1].split()[0]), 0)


def test_trial_killed_by_a_signal_names_it(tmp_path: Path) -> None:
    """A trial that dies of SIGKILL is Failed with the signal's name."""
    workdir = tmp_path / "run"
    result = katib_nas("run", stub_experiment(tmp_path, "--kill-self", parallel=1, max_failed=1), "--workdir", workdir,
                       "--no-report")
    assert result.returncode == 1, result.stderr
    assert [row[1::2] for row in trials(workdir)] == [("Failed", "killed by SIGKILL")]


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
    # Both attempts' output is kept: the interrupted one's file and log text, the last one's in output.log.
    trial_dir = workdir / "trials" / interrupted
    assert "slow: sleeping while" in (trial_dir / "output.attempt-1.log").read_text()
    assert "Validation-Accuracy=" in (trial_dir / "output.log").read_text()
    with sqlite3.connect(workdir / "state.sqlite") as db:
        logs = dict(db.execute("SELECT attempt, text FROM logs WHERE trial = ?", (interrupted,)).fetchall())
    assert "slow: sleeping while" in logs[1] and "Validation-Accuracy=" in logs[2]


def test_a_second_ctrl_c_while_trials_stop_still_saves_them(tmp_path: Path) -> None:
    """Ctrl-C again during the stop grace (the trial ignores SIGTERM) does not cut the stop short."""
    workdir = tmp_path / "run"
    experiment = stub_experiment(tmp_path, "--ignore-sigterm", "--sleep=600", max_trials=1, parallel=1,
                                 max_failed=None)
    runner = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "run", str(experiment),
                               "--workdir", str(workdir)], stderr=subprocess.PIPE, text=True)
    assert runner.stderr is not None
    wait_for(lambda: runner.poll() is not None or any(row[1] == "Running" for row in trials_so_far(workdir)))
    assert runner.poll() is None, runner.communicate()[1]
    name = trials(workdir)[0][0]
    wait_for(lambda: "stub trial for" in (workdir / "trials" / name / "output.log").read_text())
    runner.send_signal(signal.SIGINT)
    lines = []
    while not lines or "stopping 1 running trial(s)" not in lines[-1]:
        lines.append(runner.stderr.readline())
        assert lines[-1], "".join(lines)
    runner.send_signal(signal.SIGINT)  # the trial ignores SIGTERM: the runner is waiting out the grace
    stderr = "".join(lines) + runner.communicate(timeout=HANG_GUARD_SECONDS)[1]
    assert runner.returncode == 130, stderr
    assert f"--workdir {workdir} --resume" in stderr
    assert trials(workdir)[0][1:3] == ("Created", 1)


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


def test_a_refused_run_leaves_an_existing_workdirs_files_as_they_were(tmp_path: Path) -> None:
    """In a folder that existed, a refused run removes only what it added: files that were there stay unchanged."""
    workdir = tmp_path / "run"
    (workdir / "trials").mkdir(parents=True)
    (workdir / "suggestion.log").write_text("notes\n")
    (workdir / ".lock").write_text("")
    rejected = stub_experiment(tmp_path, changes={"algorithm": {"algorithmName": "no-such-algorithm"}})
    result = katib_nas("run", rejected, "--workdir", workdir)
    assert result.returncode == 2, result.stderr
    assert sorted(path.name for path in workdir.iterdir()) == [".lock", "suggestion.log", "trials"]
    assert (workdir / "suggestion.log").read_text() == "notes\n" and list((workdir / "trials").iterdir()) == []
    (workdir / "suggestion.log").unlink()
    (workdir / ".lock").unlink()
    (workdir / "trials").rmdir()
    again = katib_nas("run", rejected, "--workdir", workdir)
    assert again.returncode == 2 and list(workdir.iterdir()) == []  # what it added itself is removed


def test_trial_args_render_trial_placeholders(tmp_path: Path) -> None:
    """`--trial-arg` values are rendered per trial as the template is: each trial gets a folder of its own."""
    workdir, models = tmp_path / "run", tmp_path / "model"
    result = katib_nas("run", stub_experiment(tmp_path, max_trials=2), "--workdir", workdir, "--no-report",
                       f"--trial-arg=--touch={models}/${{trialSpec.Name}}/${{trialParameters.architecture}}.done")
    assert result.returncode == 0, result.stderr
    names = sorted(row[0] for row in trials(workdir))
    assert sorted(path.name for path in models.iterdir()) == names
    with sqlite3.connect(workdir / "state.sqlite") as db:
        assignments = dict(db.execute("SELECT trial, value FROM assignments").fetchall())
    for name in names:
        assert [path.name for path in (models / name).rglob("*.done")] == [assignments[name].rsplit("/", 1)[1]
                                                                             + ".done"]
    unknown = katib_nas("run", stub_experiment(tmp_path), "--workdir", tmp_path / "other",
                        "--trial-arg=--touch=${trialParameters.epochs}")
    assert unknown.returncode == 2
    assert "--trial-arg '--touch=${trialParameters.epochs}' uses ${trialParameters.epochs}, but" in one_line(unknown.stderr)
    assert not (tmp_path / "other").exists()


def test_new_trial_args_on_resume_say_which_stored_ones_they_replace(tmp_path: Path) -> None:
    workdir, experiment = tmp_path / "run", stub_experiment(tmp_path, max_trials=1, parallel=1, max_failed=None)
    assert katib_nas("run", experiment, "--workdir", workdir, "--no-report", "--trial-arg=--sleep=0",
                     "--trial-arg=--fail-when=zzz").returncode == 0
    kept = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--max-trials", "2", "--no-report")
    assert kept.returncode == 0, kept.stderr
    assert "trial arguments" not in kept.stderr
    replaced = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--max-trials", "3", "--no-report",
                         "--trial-arg=--sleep=0.1")
    assert replaced.returncode == 0, replaced.stderr
    assert "note: the stored trial arguments --sleep=0 --fail-when=zzz are dropped; trials now get --sleep=0.1" \
        in replaced.stderr
    with sqlite3.connect(workdir / "state.sqlite") as db:
        assert json.loads(db.execute("SELECT trial_args FROM experiment").fetchone()[0]) == ["--sleep=0.1"]


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


def test_resume_starts_a_new_run_and_does_nothing_once_complete(tmp_path: Path) -> None:
    """--resume with nothing to resume starts the experiment; on a complete one it records that and runs nothing."""
    workdir, experiment = tmp_path / "run", stub_experiment(tmp_path, max_trials=2)
    fresh = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--no-report")
    assert fresh.returncode == 0, fresh.stderr
    assert f"nothing to resume in {workdir}; starting the experiment" in fresh.stderr
    before, service_log = trials(workdir), (workdir / "suggestion.log").read_text()
    assert [row[1] for row in before] == ["Succeeded"] * 2
    with sqlite3.connect(workdir / "state.sqlite") as db:  # as a runner killed right after its last trial leaves it
        db.execute("UPDATE experiment SET condition = 'Running', reason = '', message = ''")
    again = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--max-failed", "1", "--no-report")
    assert again.returncode == 0, again.stderr
    assert "experiment nas-random-digits is already complete: Experiment has succeeded because max trial count has " \
        "reached" in again.stderr
    assert trials(workdir) == before and (workdir / "suggestion.log").read_text() == service_log
    assert experiment_condition(workdir) == ("Succeeded", "ExperimentMaxTrialsReached")
    with sqlite3.connect(workdir / "state.sqlite") as db:
        assert json.loads(db.execute("SELECT budget FROM experiment").fetchone()[0])["maxFailedTrialCount"] == 1
