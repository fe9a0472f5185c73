"""The pipeline's Katib path against a Kubernetes API emulator on loopback (tests/kube_emulator.py).

kubectl and the kubernetes client talk HTTP to the emulator exactly as to an API server. No Katib controller
runs here: the test plays it, reading the Experiment the search step created and writing the status Katib's
controller would write, with an architecture that the Experiment's own algorithm proposes for its search
space. Each path of the search step has a test: the optimal trial (and a one-shot trial's Best-Architecture),
cleanup after failure, timeout and SIGTERM, adopting its own Experiment on a retry (409) and refusing anyone
else's, the API's reason for 403 and 404, and the namespace default (the pod's own, else the kubeconfig's).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from kubernetes import client as k8s

from katib_nas.contract.codec import decode, encode
from katib_nas.contract.supernet import derive
from katib_nas.pipelines import katib_experiment, steps
from katib_nas.pipelines.search_request import SearchRequest, experiment_info, load_example
from katib_nas.runner.manifest import experiment_from_document
from katib_nas.suggestion.core.algorithms import get_algorithm

from ..conftest import REPO
from ..kube_emulator import Cluster, start_cluster
from ..support.flaky_api import FlakyReads
from ..support.manifests import pipeline_role, player_api, role_grants, role_refusals, step_requests

GROUP, VERSION, PLURAL = "kubeflow.org", "v1beta1", "experiments"
NAMESPACE = "kubeflow"


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    with start_cluster(tmp_path) as running:
        monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig))
        yield running


def run(namespace: str = NAMESPACE, run_id: str = "run-1234", timeout_s: int = 60, keep: bool = False
        ) -> steps.KatibRun:
    return steps.KatibRun(namespace=namespace, run_id=run_id, timeout_s=timeout_s, poll_s=1, keep=keep,
                          db_manager="")


def experiments(api: k8s.CustomObjectsApi, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]


def wait_for_experiment(api: k8s.CustomObjectsApi, timeout: float = 60, namespace: str = NAMESPACE
                        ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = experiments(api, namespace)
        if items:
            return items[0]
        time.sleep(0.2)
    raise AssertionError("no Experiment was created")


def play_katib_controller(api: k8s.CustomObjectsApi, seen: dict[str, Any], succeed: bool = True,
                          namespace: str = NAMESPACE) -> None:
    """Wait for the Experiment, then write a finished status with a real proposal of its algorithm as the best
    trial. A one-shot proxylessnas trial is assigned the supernet and reports the network it derived as the
    string metric Best-Architecture, as `katib-nas proxyless-search` does."""
    experiment = wait_for_experiment(api, namespace=namespace)
    seen["experiment"] = experiment
    name = experiment["metadata"]["name"]
    spec = experiment_from_document(experiment)
    algorithm = get_algorithm(spec.algorithm)
    info = experiment_info(spec)
    algorithm.validate(info)
    assignments = algorithm.suggest(info, [], 1, 0).assignments[0]
    metrics = [{"name": "Validation-Accuracy", "latest": "0.9012", "max": "0.9012", "min": "0.9012"},
               {"name": "latency-ms", "latest": "1.25", "max": "1.25", "min": "1.25"}]
    seen["architecture"] = assignments["architecture"]
    if "search" in assignments:
        supernet = decode(assignments["architecture"])
        seen["architecture"] = encode(derive(supernet, [len(cell.ops) - 1 for cell in supernet.cells]))
        metrics.append({"name": "Best-Architecture", "latest": seen["architecture"]})
    condition = {"type": "Succeeded", "status": "True", "reason": "ExperimentMaxTrialsReached",
                 "message": "Experiment has succeeded because max trial count has reached"}
    if not succeed:
        condition = {"type": "Failed", "status": "True", "reason": "ExperimentFailed",
                     "message": "Experiment has failed because max failed count has reached"}
    status = {"conditions": [{"type": "Created", "status": "True"}, condition], "trials": 1,
              "trialsSucceeded": 1 if succeed else 0, "failedTrialList": [] if succeed else [f"{name}-f4il"]}
    if succeed:
        status["currentOptimalTrial"] = {
            "bestTrialName": f"{name}-x7k2",
            "parameterAssignments": [{"name": key, "value": value} for key, value in assignments.items()],
            "observation": {"metrics": metrics}}
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "trials", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Trial",
            "metadata": {"name": f"{name}-x7k2", "labels": {"katib.kubeflow.org/experiment": name}},
            "spec": {"parameterAssignments": status["currentOptimalTrial"]["parameterAssignments"]},
            "status": {"conditions": [{"type": "Succeeded", "status": "True"}], "observation": {"metrics": metrics}}})
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, {"status": status})


def test_examples_apply_with_kubectl_and_read_back_unchanged(cluster: Cluster) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        applied = cluster.kubectl("apply", "--validate=false", "-f", str(path))
        assert applied.returncode == 0, applied.stderr
        name = document["metadata"]["name"]
        got = cluster.kubectl("get", "experiment", name, "-n", NAMESPACE, "-o", "json")
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["spec"] == document["spec"]
    listed = cluster.kubectl("get", "experiments", "-n", NAMESPACE, "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.split()) == len(list((REPO / "examples").glob("*.yaml")))


def test_search_step_creates_the_experiment_waits_and_returns_the_optimal_trial(cluster: Cluster) -> None:
    seen: dict[str, Any] = {}
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), seen), daemon=True)
    controller.start()
    document = load_example("nas-random-fashion-mnist")
    result = steps.search_katib(document, SearchRequest(max_trials=4, trial_args=("--epochs=2",)), run(keep=True))
    controller.join(10)
    created = seen["experiment"]
    assert created["metadata"]["name"] == result.experiment and result.experiment.startswith("nas-random-fashion")
    assert created["spec"]["maxTrialCount"] == 4 and created["spec"]["nasConfig"] == document["spec"]["nasConfig"]
    command = created["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--epochs=2" in command and "--epochs=1" not in command
    assert result.architecture == seen["architecture"]
    assert result.metrics == {"Validation-Accuracy": "0.9012", "latency-ms": "1.25"}
    assert result.trial == f"{result.experiment}-x7k2"
    described = cluster.kubectl("get", "experiment", result.experiment, "-n", NAMESPACE, "-o",
                                "jsonpath={.status.currentOptimalTrial.parameterAssignments[0].value}")
    assert described.stdout == result.architecture  # what the README tells users to run


def test_one_shot_search_returns_the_derived_network_not_the_supernet(cluster: Cluster) -> None:
    seen: dict[str, Any] = {}
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), seen), daemon=True)
    controller.start()
    result = steps.search_katib(load_example("proxylessnas-oneshot-fashion-mnist"), SearchRequest(),
                                run(run_id="run-oneshot"))
    controller.join(10)
    assert not any(cell.choice for cell in decode(result.architecture).cells)
    assert result.architecture == seen["architecture"]
    assert result.metrics["Best-Architecture"] == seen["architecture"]


@pytest.mark.parametrize("keep", [False, True])  # keep_experiment keeps a succeeded search only
def test_failed_experiment_fails_the_step_with_katibs_reasons_and_is_deleted(
        cluster: Cluster, keep: bool, capsys: pytest.CaptureFixture[str]) -> None:
    """Its trials stay in the step's log: the Experiment and its Trials are deleted, a failed step's outputs are not
    kept."""
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), {}, False), daemon=True)
    controller.start()
    name = steps.experiment_name(load_example("nas-random-fashion-mnist"), "r")
    labels = {"labels": {"katib.kubeflow.org/experiment": name}}
    cluster.put("trials", NAMESPACE, f"{name}-f4il", {"metadata": labels, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "TrialFailed", "message": "Trial has failed. Job reason: OOMKilled"}]}})
    cluster.put("trials", NAMESPACE, f"{name}-g00d", {"metadata": labels, "spec": {"parameterAssignments": [
        {"name": "architecture", "value": "in28x28x1-cls10-stem8/w8:c3"}]}, "status": {
        "conditions": [{"type": "Succeeded", "status": "True"}],
        "observation": {"metrics": [{"name": "Validation-Accuracy", "latest": "0.8317", "max": "0.8317",
                                     "min": "0.8317"}]}}})
    with pytest.raises(steps.StepFailed) as failure:
        steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), run(run_id="r", keep=keep))
    controller.join(10)
    assert str(failure.value) == (f"Katib Experiment {NAMESPACE}/{name} is Failed: Experiment has failed because max "
                                  f"failed count has reached (trial {name}-f4il: Trial has failed. Job reason: "
                                  "OOMKilled)")
    assert experiments(cluster.api()) == []  # cleaned up
    log = capsys.readouterr().out
    assert f"the search's trials before Katib Experiment {NAMESPACE}/{name} is deleted:\n# Trials (2)" in log
    assert log.index("# Trials (2)") < log.index(f"deleted Katib Experiment {NAMESPACE}/{name}")
    (good,) = [line for line in log.splitlines() if line.startswith(f"| {name}-g00d |")]
    assert "| Succeeded |" in good and "| 0.8317 |" in good and "in28x28x1-cls10-stem8/w8:c3" in good


def test_timeout_fails_the_step_and_deletes_the_experiment(cluster: Cluster, capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    with pytest.raises(steps.StepFailed, match=r"did not finish within 0.05 minutes \(timeout_minutes\)"):
        steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), run(timeout_s=3))
    assert experiments(cluster.api()) == []
    log = capsys.readouterr().out
    assert "deleted Katib Experiment kubeflow/nas-random-fashion-mnist-" in log
    assert "the search's trials before Katib Experiment kubeflow/nas-random-fashion-mnist-" in log


def test_sigterm_while_waiting_deletes_the_experiment(cluster: Cluster) -> None:
    """Kubernetes and Argo stop a cancelled step with SIGTERM: the step deletes its Experiment first."""
    def stop_when_created() -> None:
        wait_for_experiment(cluster.api())
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_created, daemon=True).start()
    with pytest.raises(steps.StepFailed, match="the search step was stopped \\(SIGTERM\\)"):
        steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), run(timeout_s=120))
    assert experiments(cluster.api()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the step's handler is gone again


def test_a_retried_step_adopts_its_own_experiment(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    document = load_example("nas-random-fashion-mnist")
    name = steps.experiment_name(document, "run-retry")
    earlier = {**document, "metadata": {"name": name, "labels": {katib_experiment.RUN_LABEL:
                                                                     katib_experiment.run_label("run-retry")}}}
    cluster.put("experiments", NAMESPACE, name, earlier)  # the first attempt created it, then its pod died
    seen: dict[str, Any] = {}
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), seen), daemon=True)
    controller.start()
    result = steps.search_katib(document, SearchRequest(), run(run_id="run-retry"))
    controller.join(10)
    assert result.experiment == name and result.architecture == seen["architecture"]
    assert f"adopted Katib Experiment {NAMESPACE}/{name}" in capsys.readouterr().out


def test_someone_elses_experiment_of_the_same_name_is_refused_and_kept(cluster: Cluster) -> None:
    document = load_example("nas-random-fashion-mnist")
    name = steps.experiment_name(document, "run-clash")
    cluster.put("experiments", NAMESPACE, name, {**document, "metadata": {"name": name}})
    with pytest.raises(steps.StepFailed, match=f"cannot create Katib Experiment {NAMESPACE}/{name}: 409 "
                                               "AlreadyExists, and it was not created by this pipeline run"):
        steps.search_katib(document, SearchRequest(), run(run_id="run-clash"))
    assert [e["metadata"]["name"] for e in experiments(cluster.api())] == [name]  # not deleted


@pytest.mark.parametrize("status, reason, message, expected", [
    (403, "Forbidden", 'experiments.kubeflow.org is forbidden: User "system:serviceaccount:team-a:default-editor" '
                       'cannot create resource "experiments"',
     "403 Forbidden: experiments.kubeflow.org is forbidden: User \"system:serviceaccount:team-a:default-editor\" "
     "cannot create resource \"experiments\"; the step's service account needs the katib-nas-pipeline Role"),
    (404, "NotFound", "the server could not find the requested resource",
     "404 NotFound: the server could not find the requested resource; is Katib installed"),
])
def test_api_refusals_carry_the_api_servers_reason(cluster: Cluster, status: int, reason: str, message: str,
                                                   expected: str) -> None:
    cluster.refuse("post", "experiments", status, reason, message)
    with pytest.raises(steps.StepFailed) as failure:
        steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), run())
    assert str(failure.value).startswith("cannot create Katib Experiment kubeflow/nas-random-fashion-mnist-")
    assert expected in str(failure.value)


def test_namespace_defaults_to_the_pods_own(cluster: Cluster, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    service_account = tmp_path / "namespace"
    service_account.write_text("team-a")
    monkeypatch.setattr(katib_experiment, "SERVICE_ACCOUNT_NAMESPACE", service_account)
    seen: dict[str, Any] = {}
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), seen, True, "team-a"),
                                  daemon=True)
    controller.start()
    result = steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), run(namespace=""))
    controller.join(10)
    assert result.namespace == "team-a" and seen["experiment"]["metadata"]["namespace"] == "team-a"


def test_outside_a_pod_the_namespace_is_the_kubeconfig_contexts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.setattr(katib_experiment, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "no-such-file")
    with start_cluster(tmp_path, namespace="team-b") as other:
        monkeypatch.setenv("KUBECONFIG", str(other.kubeconfig))
        assert katib_experiment.default_namespace() == "team-b"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert katib_experiment.default_namespace() == "default"
    two = tmp_path / "two-contexts"
    two.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                     {"name": "b", "context": {"cluster": "c", "user": "u", "namespace": "team-b"}}]}))
    assert katib_experiment.default_namespace(kubeconfig=str(two)) == "team-a"
    assert katib_experiment.default_namespace(kubeconfig=str(two), context="b") == "team-b"


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task that uses custom:RuntimeWarning")
def test_nas_search_component_runs_in_kfp_local_against_the_emulator(cluster: Cluster, tmp_path: Path) -> None:
    from kfp import local

    from katib_nas.pipelines.components import make_components

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    seen: dict[str, Any] = {}
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), seen), daemon=True)
    controller.start()
    task = make_components()["nas_search"](
        experiment_yaml=yaml.safe_dump(load_example("nas-random-fashion-mnist")), algorithm="nas-random",
        max_trials=3, parallel_trials=1, trial_args="", backend="katib", namespace="", timeout_minutes=2,
        keep_experiment=False, run_id="kfp-local-run", poll_seconds=1)
    controller.join(10)
    assert task.outputs["architecture"] == seen["architecture"]
    assert json.loads(task.outputs["metrics_json"])["Validation-Accuracy"] == "0.9012"
    assert seen["experiment"]["spec"]["parallelTrialCount"] == 1
    assert seen["architecture"] in Path(task.outputs["report"].path).read_text()
    assert experiments(cluster.api()) == []  # deleted after the success: keep_experiment is false


@pytest.mark.filterwarnings("ignore:You may be attemping to run a task that uses custom:RuntimeWarning")
def test_by_default_the_step_keeps_the_experiment_and_hands_kfp_its_report(cluster: Cluster, tmp_path: Path) -> None:
    from kfp import local

    from katib_nas.pipelines.components import make_components

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    seen: dict[str, Any] = {}
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), seen), daemon=True)
    controller.start()
    task = make_components()["nas_search"](
        experiment_yaml=yaml.safe_dump(load_example("nas-random-fashion-mnist")), algorithm="", max_trials=0,
        parallel_trials=0, trial_args="", backend="katib", namespace="", timeout_minutes=2,
        keep_experiment=True, run_id="kfp-keep-run", poll_seconds=1)
    controller.join(10)
    name = seen["experiment"]["metadata"]["name"]
    assert [e["metadata"]["name"] for e in experiments(cluster.api())] == [name]  # kept for the Katib UI
    page = Path(task.outputs["search_report"].path).read_text()
    assert f"{name}-x7k2" in page and seen["architecture"] in page and "<table id=\"trials\">" in page
    table = Path(task.outputs["trials"].path).read_text()
    assert table.startswith("# Trials (1)") and f"| {name}-x7k2 | 1 | Succeeded |" in table and "| 0.9012 |" in table
    assert f"{name}-x7k2" in Path(task.outputs["trials_csv"].path).read_text()


def test_the_pipeline_role_allows_every_request_of_the_search_step_and_no_more(cluster: Cluster, tmp_path: Path
                                                                              ) -> None:
    """manifests/pipeline-rbac's Role against what the search step sends on its paths: a success with its report,
    the Experiment deleted afterwards; a failure explained from its Suggestion and a failed Trial. The emulator
    enforces no RBAC, so each request it received from the step is checked against the rendered Role, and the
    Role's kubeflow.org grants against what the step called: a grant no path uses would be privilege to spare."""
    api = player_api(cluster)
    controller = threading.Thread(target=play_katib_controller, args=(api, {}), daemon=True)
    controller.start()
    steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), run(run_id="rbac-succeeds"),
                       report_dir=tmp_path / "report")
    controller.join(10)
    name = steps.experiment_name(load_example("nas-random-fashion-mnist"), "rbac-fails")
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "message": "no feasible architecture"}]}}
    cluster.put("suggestions", NAMESPACE, name, failed)
    cluster.put("trials", NAMESPACE, f"{name}-f4il", failed)
    controller = threading.Thread(target=play_katib_controller, args=(api, {}, False), daemon=True)
    controller.start()
    with pytest.raises(steps.StepFailed, match=f"suggestion: no feasible architecture; trial {name}-f4il: "):
        steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), run(run_id="rbac-fails"))
    controller.join(10)
    role, requests = pipeline_role(), step_requests(cluster)
    assert role_refusals(role, requests) == []
    assert {(r.verb, r.resource) for r in requests if r.group == "kubeflow.org"} == role_grants(role, "kubeflow.org")


def search_against_controller(cluster: Cluster, settings: steps.KatibRun, **kwargs: Any
                              ) -> tuple[steps.SearchResult, dict[str, Any]]:
    """search_katib on the nas-random example while a played Katib controller finishes its Experiment; the
    result and what the controller saw."""
    seen: dict[str, Any] = {}
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), seen), daemon=True)
    controller.start()
    result = steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), settings, **kwargs)
    controller.join(10)
    return result, seen


def test_a_report_the_step_may_not_read_does_not_fail_the_search(cluster: Cluster, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cluster.refuse("get", "trials", 403, "Forbidden", 'trials.kubeflow.org is forbidden: User "x" cannot list')
    result, seen = search_against_controller(cluster, run(keep=True), report_dir=tmp_path / "report")
    assert result.architecture == seen["architecture"] and result.report == ""
    assert "no report: cannot list the Trials of Katib Experiment kubeflow/" in capsys.readouterr().out
    assert "No report could be written" in steps.trials_markdown(result.report)



def flaky_reads(cluster: Cluster, failures: int | None) -> FlakyReads:
    """The cluster's API with its next `failures` reads of an Experiment answered 503 (every one: None)."""
    return FlakyReads(cluster.api(), failures, PLURAL)


def test_a_passing_api_error_while_waiting_neither_fails_the_search_nor_deletes_it(cluster: Cluster) -> None:
    """One 503 in a 12-hour wait deleted the running Experiment and with it the whole search."""
    result, seen = search_against_controller(cluster, run(keep=True), api=flaky_reads(cluster, 2))
    assert result.architecture == seen["architecture"]
    assert [e["metadata"]["name"] for e in experiments(cluster.api())] == [result.experiment]


def test_an_experiment_that_cannot_be_read_is_left_for_a_retried_step(cluster: Cluster) -> None:
    settings = dataclasses.replace(run(), read_retry_s=2)
    with pytest.raises(steps.StepFailed, match=r"503 Service Unavailable.*for 0.0333333 minutes in a row; Katib "
                                               r"Experiment kubeflow/nas-random-fashion-mnist-\w+ is left as it is"):
        steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), settings,
                           api=flaky_reads(cluster, None))
    assert len(experiments(cluster.api())) == 1  # a retried step adopts it


def test_a_report_that_cannot_be_written_keeps_the_succeeded_search(cluster: Cluster, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The Experiment, kept by default, was deleted when the report failed for anything but a read error."""
    import errno

    from katib_nas.runner import report

    def disk_full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_report_files", disk_full)
    result, seen = search_against_controller(cluster, run(keep=True), report_dir=tmp_path / "report")
    assert result.architecture == seen["architecture"] and result.report == ""
    assert "no report: writing it failed (OSError: [Errno 28] No space left on device)" in capsys.readouterr().out
    assert [e["metadata"]["name"] for e in experiments(cluster.api())] == [result.experiment]


def test_a_read_the_api_refuses_for_good_fails_the_wait_at_once(cluster: Cluster) -> None:
    """403 or 404 say something of the request, not of a busy server: no ten minutes of polling."""
    cluster.refuse("get", "experiments", 403, "Forbidden", "experiments.kubeflow.org is forbidden")
    settings = dataclasses.replace(run(timeout_s=120), read_retry_s=60)
    with pytest.raises(steps.StepFailed, match=r"cannot get Katib Experiment .*: 403 Forbidden") as failed:
        steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), settings)
    assert "in a row" not in str(failed.value)


def test_reads_that_fail_now_and_then_never_add_up_to_giving_up(cluster: Cluster) -> None:
    class EveryOtherRead(FlakyReads):
        def fails(self) -> bool:
            self.failures = 0 if self.failures else 1
            return bool(self.failures)

    settings = dataclasses.replace(run(keep=True), read_retry_s=2.5)
    result, seen = search_against_controller(cluster, settings, api=EveryOtherRead(cluster.api(), 0, PLURAL))
    assert result.architecture == seen["architecture"]


def test_a_dropped_connection_while_waiting_is_polled_through(cluster: Cluster) -> None:
    from urllib3.exceptions import ProtocolError

    def dropped() -> Exception:
        return ProtocolError("Connection aborted.", ConnectionResetError(104, "Connection reset by peer"))

    result, seen = search_against_controller(cluster, run(keep=True), api=FlakyReads(cluster.api(), 2, PLURAL, dropped))
    assert result.architecture == seen["architecture"]


def test_the_examples_own_labels_stay_on_the_experiment_beside_the_runs(cluster: Cluster) -> None:
    document = load_example("nas-random-fashion-mnist")
    document["metadata"]["labels"] = {"team": "vision"}
    seen: dict[str, Any] = {}
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), seen), daemon=True)
    controller.start()
    steps.search_katib(document, SearchRequest(), run(keep=True, run_id="run-labels"))
    controller.join(10)
    labels = seen["experiment"]["metadata"]["labels"]
    assert labels["team"] == "vision" and labels[katib_experiment.RUN_LABEL] == katib_experiment.run_label("run-labels")
