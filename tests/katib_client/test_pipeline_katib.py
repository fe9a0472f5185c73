"""The pipeline's Katib path against a Kubernetes API emulator on loopback (kmock's KubernetesEmulator).

kubectl and the kubernetes client (under KatibClient) talk HTTP to the emulator exactly as to an API
server. No Katib controller runs here: the test plays it, reading the Experiment the search step created
and writing the status Katib's controller would write, with an architecture that nas-random proposes
for that Experiment's own search space.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import kmock
import pytest
import yaml
from kubernetes import client as k8s

from katib_nas.contract.codec import decode, encode
from katib_nas.contract.supernet import derive
from katib_nas.pipelines import steps
from katib_nas.pipelines.search_request import SearchRequest, experiment_info, load_example
from katib_nas.runner.manifest import experiment_from_document
from katib_nas.suggestion.core.algorithms import get_algorithm

from ..conftest import REPO

GROUP, VERSION, PLURAL = "kubeflow.org", "v1beta1", "experiments"
NAMESPACE = "kubeflow"


class KatibApiEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with list replies that name their kind, as the API server's do (kubectl needs it)."""

    async def _serve_list(self, request: Any) -> Any:
        payload = await super()._serve_list(request)
        kind = self.resources[request.resource].kind
        return {"apiVersion": f"{request.resource.group}/{request.resource.version}", "kind": f"{kind}List",
                **payload}


@dataclass
class Cluster:
    url: str
    kubeconfig: Path
    emulator: KatibApiEmulator

    def api(self) -> k8s.CustomObjectsApi:
        config = k8s.Configuration()
        config.host = self.url
        return k8s.CustomObjectsApi(k8s.ApiClient(config))

    def kubectl(self, *args: str) -> subprocess.CompletedProcess:
        found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
        assert found, "kubectl not found; `make kubectl` installs it"
        return subprocess.run([found, *args], env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
                              capture_output=True, text=True, timeout=60)


async def _serve(ready: threading.Event, stop: asyncio.Event, holder: dict[str, Any]) -> None:
    async with KatibApiEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = kmock.ResourceInfo(
            kind="Experiment", singular="experiment", namespaced=True, subresources={"status"},
            verbs={"create", "get", "list", "watch", "patch", "update", "delete"})
        holder.update(url=str(server.url).rstrip("/"), emulator=emulator)
        ready.set()
        await stop.wait()


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    holder: dict[str, Any] = {}
    thread = threading.Thread(target=loop.run_until_complete, args=(_serve(ready, stop, holder),), daemon=True)
    thread.start()
    assert ready.wait(30), "the emulator did not start"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": holder["url"]}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test",
                                                     "namespace": NAMESPACE}}],
        "users": [{"name": "test", "user": {"token": "loopback"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    yield Cluster(holder["url"], kubeconfig, holder["emulator"])
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)


def wait_for_experiment(api: k8s.CustomObjectsApi, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"]
        if items:
            return items[0]
        time.sleep(0.2)
    raise AssertionError("no Experiment was created")


def play_katib_controller(api: k8s.CustomObjectsApi, seen: dict[str, Any], succeed: bool = True) -> None:
    """Wait for the Experiment, then write a finished status with a real proposal of its algorithm as the best
    trial. A one-shot proxylessnas trial is assigned the supernet and reports the network it derived as the
    string metric Best-Architecture, as `katib-nas proxyless-search` does."""
    experiment = wait_for_experiment(api)
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
    condition = {"type": "Succeeded" if succeed else "Failed", "status": "True", "reason": "ExperimentDone"}
    status = {"conditions": [{"type": "Created", "status": "True"}, condition], "trials": 1,
              "trialsSucceeded": 1 if succeed else 0}
    if succeed:
        status["currentOptimalTrial"] = {
            "bestTrialName": f"{name}-x7k2",
            "parameterAssignments": [{"name": key, "value": value} for key, value in assignments.items()],
            "observation": {"metrics": metrics}}
    api.patch_namespaced_custom_object_status(GROUP, VERSION, NAMESPACE, PLURAL, name, {"status": status})


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
    result = steps.search_katib(document, SearchRequest(max_trials=4, trial_args=("--epochs=2",)), NAMESPACE,
                                run_id="run-1234", timeout_s=60, poll_s=1)
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
    result = steps.search_katib(load_example("proxylessnas-oneshot-fashion-mnist"), SearchRequest(), NAMESPACE,
                                run_id="run-oneshot", timeout_s=60, poll_s=1)
    controller.join(10)
    assert not any(cell.choice for cell in decode(result.architecture).cells)
    assert result.architecture == seen["architecture"]
    assert result.metrics["Best-Architecture"] == seen["architecture"]


def test_failed_experiment_fails_the_step_with_katib_message(cluster: Cluster) -> None:
    controller = threading.Thread(target=play_katib_controller, args=(cluster.api(), {}, False), daemon=True)
    controller.start()
    with pytest.raises(RuntimeError, match="is Failed"):
        steps.search_katib(load_example("nas-random-fashion-mnist"), SearchRequest(), NAMESPACE, run_id="r",
                           timeout_s=60, poll_s=1)
    controller.join(10)


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
        max_trials=3, parallel_trials=1, trial_args="", backend="katib", namespace=NAMESPACE, timeout_minutes=2,
        run_id="kfp-local-run", poll_seconds=1)
    controller.join(10)
    assert task.outputs["architecture"] == seen["architecture"]
    assert json.loads(task.outputs["metrics_json"])["Validation-Accuracy"] == "0.9012"
    assert seen["experiment"]["spec"]["parallelTrialCount"] == 1
    assert seen["architecture"] in Path(task.outputs["report"].path).read_text()
