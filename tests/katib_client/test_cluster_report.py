"""Katib's Python SDK and `katib-nas report --experiment` against the Kubernetes API emulator (tests/kube_emulator.py).

No Katib controller runs here: the tests write what it would, from a real local run (conftest's digits_run) —
the Experiment's status, one Trial object per trial with Katib's observation, and each trial's metric logs
behind a Katib DB manager on loopback (kubeflow-katib's generated service). The report read from that
"cluster" must be the report of the local run. KatibClient (create_experiment, wait_for_experiment_condition,
get_optimal_hyperparameters) runs in the same process as katib_nas.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from concurrent import futures
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest
import yaml
from kubeflow.katib import KatibClient
from kubeflow.katib import katib_api_pb2 as pb
from kubeflow.katib import katib_api_pb2_grpc as pb_grpc

from katib_nas.runner.store import Store, TrialRow

from ..conftest import REPO
from ..kube_emulator import Cluster, start_cluster
from .conftest import free_port

NAMESPACE = "kubeflow"
EXPERIMENT = "nas-random-digits"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with start_cluster(tmp_path) as running:
        monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig))
        yield running


def rfc3339(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def trial_object(trial: TrialRow) -> dict[str, Any]:
    """The Trial object Katib's controller keeps for a finished trial."""
    metrics = [{"name": s.name, "min": s.min, "max": s.max, "latest": s.latest} for s in trial.observation.values()]
    return {"metadata": {"labels": {"katib.kubeflow.org/experiment": EXPERIMENT},
                         "creationTimestamp": rfc3339(trial.created_at)},
            "spec": {"parameterAssignments": [{"name": k, "value": v} for k, v in trial.assignments.items()]},
            "status": {"startTime": rfc3339(trial.started_at), "completionTime": rfc3339(trial.completed_at),
                       "conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "False"},
                                      {"type": trial.condition, "status": "True"}],
                       "observation": {"metrics": metrics}}}


def local_run(workdir: Path) -> tuple[dict[str, Any], list[TrialRow], dict[str, Any]]:
    store = Store.open_existing(workdir)
    try:
        return store.experiment().document, store.trials(), store.metric_logs()
    finally:
        store.close()


def play_katib(cluster: Cluster, workdir: Path) -> None:
    """Write the finished Experiment's status and its Trials, as Katib's controller would."""
    document, trials, _ = local_run(workdir)
    best = max(trials, key=lambda t: float(t.observation["Validation-Accuracy"].latest))
    for trial in trials:
        cluster.put("trials", NAMESPACE, trial.name, trial_object(trial))
    status = {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "False"},
                             {"type": "Succeeded", "status": "True", "reason": "ExperimentMaxTrialsReached",
                              "message": "Experiment has succeeded because max trial count has reached"}],
              "trials": len(trials), "trialsSucceeded": len(trials),
              "currentOptimalTrial": {"bestTrialName": best.name,
                                      "parameterAssignments": [{"name": k, "value": v}
                                                               for k, v in best.assignments.items()],
                                      "observation": {"metrics": trial_object(best)["status"]["observation"]
                                                      ["metrics"]}}}
    existing = cluster.get("experiments", NAMESPACE, EXPERIMENT) or document
    cluster.put("experiments", NAMESPACE, EXPERIMENT, {**existing, "status": status})
    # other Experiments' Trials in the namespace must stay out of the report
    cluster.put("trials", NAMESPACE, "other-trial", {"metadata": {"labels": {"katib.kubeflow.org/experiment": "other"}}})


class RecordedDBManager(pb_grpc.DBManagerServicer):
    """Katib's DB manager, answering GetObservationLog with a local run's metric logs."""

    def __init__(self, logs: dict[str, Any]) -> None:
        self.logs = logs

    def GetObservationLog(self, request: pb.GetObservationLogRequest,
                          context: grpc.ServicerContext) -> pb.GetObservationLogReply:
        metric_logs = [pb.MetricLog(time_stamp=log.timestamp, metric=pb.Metric(name=log.name, value=log.value))
                       for log in self.logs.get(request.trial_name, [])]
        return pb.GetObservationLogReply(observation_log=pb.ObservationLog(metric_logs=metric_logs))


@pytest.fixture
def db_manager(digits_run: Path) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_DBManagerServicer_to_server(RecordedDBManager(local_run(digits_run)[2]), server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    server.start()
    yield address
    server.stop(grace=None)


def report(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "katib_nas.cli", "report", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)})


def rows(path: Path) -> dict[str, dict[str, str]]:
    """trials.csv by trial name. Left out: the order of trials created together (Katib's creation times have
    whole seconds), exit codes (Katib does not keep them) and durations (compared to within rounding)."""
    with open(path) as handle:
        return {row["trial"]: {k: v for k, v in row.items() if k not in ("seq", "exit_code", "message", "duration_s")}
                for row in csv.DictReader(handle)}


def durations(path: Path) -> dict[str, float]:
    with open(path) as handle:
        return {row["trial"]: float(row["duration_s"]) for row in csv.DictReader(handle)}


def test_report_of_a_cluster_experiment_is_the_local_runs_report(cluster: Cluster, digits_run: Path, db_manager: str,
                                                                 tmp_path: Path) -> None:
    play_katib(cluster, digits_run)
    done = report(cluster, "--experiment", EXPERIMENT, "--namespace", NAMESPACE, "--db-manager", db_manager,
                  "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    local, remote = digits_run / "report", tmp_path / "out"
    assert rows(remote / "trials.csv") == rows(local / "trials.csv")
    assert durations(remote / "trials.csv") == pytest.approx(durations(local / "trials.csv"), abs=0.011)
    assert json.loads((remote / "best_architecture.json").read_text()) == \
        json.loads((local / "best_architecture.json").read_text())
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in local.iterdir())
    page = (remote / "report.html").read_text()
    assert "Katib Experiment kubeflow/nas-random-digits" in page and "DB manager" not in page
    assert page.count("<polyline") == (local / "report.html").read_text().count("<polyline")
    command = train_command_of(remote / "summary.md")
    assert command == train_command_of(local / "summary.md") and "--dataset=digits" in command


def train_command_of(summary: Path) -> str:
    """The command a report gives for training its best network into files."""
    text = summary.read_text()
    return text.split("```sh\n", 1)[1].split("\n```", 1)[0]


def test_without_a_db_manager_the_report_says_where_curves_come_from(cluster: Cluster, digits_run: Path,
                                                                     tmp_path: Path) -> None:
    play_katib(cluster, digits_run)
    done = report(cluster, "--experiment", EXPERIMENT, "--namespace", NAMESPACE, "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    assert "port-forward svc/katib-db-manager" in page
    assert "curves.png" not in (tmp_path / "out" / "summary.md").read_text()
    assert rows(tmp_path / "out" / "trials.csv") == rows(digits_run / "report" / "trials.csv")


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_missing_experiment_is_one_line(cluster: Cluster, tmp_path: Path) -> None:
    line = one_line_error(report(cluster, "--experiment", "no-such-experiment", "--namespace", NAMESPACE))
    assert line.startswith("katib-nas report: error: cannot read Katib Experiment kubeflow/no-such-experiment: 404")
    assert "kubectl get experiments -n kubeflow" in line


def test_a_namespace_the_user_cannot_read_is_one_line(cluster: Cluster) -> None:
    cluster.refuse("get", "experiments", 403, "Forbidden",
                   'experiments.kubeflow.org "x" is forbidden: User "alice" cannot get resource "experiments" in '
                   'API group "kubeflow.org" in the namespace "team-b"')
    line = one_line_error(report(cluster, "--experiment", "x", "--namespace", "team-b"))
    assert "cannot read Katib Experiment team-b/x: 403 Forbidden" in line
    assert 'User "alice" cannot get resource "experiments"' in line


def test_an_unreachable_api_server_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}], "users": [{"name": "u", "user": {"token": "t"}}]}))
    done = subprocess.run([sys.executable, "-m", "katib_nas.cli", "report", "--experiment", "x", "--namespace", "ns",
                           "--kubeconfig", str(kubeconfig)], capture_output=True, text=True, timeout=300)
    assert "the Kubernetes API server is unreachable" in one_line_error(done)


def test_a_name_that_cannot_be_an_experiment_is_one_line(cluster: Cluster) -> None:
    done = report(cluster, "--experiment", "Not_A_Name", "--namespace", NAMESPACE)
    assert done.returncode == 2
    assert "--experiment 'Not_A_Name' is not a Kubernetes name" in one_line_error(done)


def test_katib_sdk_submits_our_examples_and_reads_the_result(cluster: Cluster, digits_run: Path, db_manager: str,
                                                             tmp_path: Path) -> None:
    """What docs/deploy.md shows a notebook user: KatibClient and katib_nas in one process."""
    import katib_nas.runner.report  # noqa: F401 - both Katib API modules loaded side by side

    katib = KatibClient(config_file=str(cluster.kubeconfig), namespace=NAMESPACE)
    for path in sorted((REPO / "examples").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        katib.create_experiment(document, namespace=NAMESPACE)
        read_back = katib.get_experiment(document["metadata"]["name"], NAMESPACE)
        assert read_back.spec.algorithm.algorithm_name == document["spec"]["algorithm"]["algorithmName"]
    katib.create_experiment(yaml.safe_load((REPO / "tests/data/nas-random-digits.yaml").read_text()))
    threading.Timer(1.0, play_katib, args=(cluster, digits_run)).start()
    finished = katib.wait_for_experiment_condition(EXPERIMENT, NAMESPACE, timeout=60, polling_interval=1)
    assert katib.is_experiment_succeeded(EXPERIMENT, NAMESPACE, finished)
    optimal = katib.get_optimal_hyperparameters(EXPERIMENT, NAMESPACE)
    best = json.loads((digits_run / "report" / "best_architecture.json").read_text())
    assert optimal.best_trial_name == best["trial"]
    assert [a.value for a in optimal.parameter_assignments] == [best["architecture"]["text"]]
    done = report(cluster, "--experiment", EXPERIMENT, "--namespace", NAMESPACE, "--db-manager", db_manager,
                  "--output", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out" / "best_architecture.json").read_text())["trial"] == optimal.best_trial_name
