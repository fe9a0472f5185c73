"""The TrainJob and PyTorchJob examples on the Kubernetes API emulator, with Katib and the job operators played.

`kubectl apply` puts the example Experiment on the emulator. The test then plays Katib's controller: it
renders the trial as Katib does (a real nas-random proposal substituted into the trialSpec) and creates the
TrainJob or PyTorchJob through the API. It plays the operator that runs it, giving each pod the environment
that operator gives (Kubeflow Trainer v2.1's torch plugin: PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
PET_MASTER_ADDR, PET_MASTER_PORT; the Training Operator v1.9's PyTorchJob: MASTER_ADDR, MASTER_PORT,
WORLD_SIZE, RANK, the same PET_ variables) and running the container command of each node or replica
(Fashion-MNIST, 256 images). It reads the metrics from the primary pod's output with Katib's default regex,
as Katib's collector in that pod would, writes the job's condition, and evaluates the Experiment's
successCondition on the job's status as Katib does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from katib_nas.contract.metric_format import KATIB_DEFAULT_REGEX
from katib_nas.pipelines.search_request import experiment_info
from katib_nas.runner.launch import free_port
from katib_nas.runner.manifest import experiment_from_document
from katib_nas.suggestion.core.algorithms import get_algorithm

from .conftest import REPO, load_yaml
from .kube_emulator import Cluster, start_cluster
from .support.trial_template import rendered_trial_spec

NAMESPACE = "kubeflow"
SMALL = ["--max-train-samples=256", "--val-fraction=0.02", "--batch-size=64"]
#: Katib's condition expressions are gjson paths of the form status.conditions.#(type=="X")#|#(status=="True")#.
CONDITION = re.compile(r'status\.conditions\.#\(type=="(\w+)"\)#\|#\(status=="True"\)#')


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with start_cluster(tmp_path, NAMESPACE) as running:
        yield running


def first_proposal(document: dict[str, Any]) -> dict[str, str]:
    spec = experiment_from_document(document)
    algorithm = get_algorithm(spec.algorithm)
    info = experiment_info(spec)
    algorithm.validate(info)
    return algorithm.suggest(info, [], 1, 0).assignments[0]


def katib_metrics(output: str) -> dict[str, str]:
    """The latest value of each metric in a pod's output, read with Katib's default StdOut regex."""
    return {m.group(1): m.group(2) for m in re.finditer(KATIB_DEFAULT_REGEX, output)}


def matches(expression: str, status: dict[str, Any]) -> bool:
    """Katib's gjson condition on a job's status (the form every default and example uses)."""
    wanted = CONDITION.fullmatch(expression)
    assert wanted, expression
    return any(c.get("type") == wanted.group(1) and c.get("status") == "True" for c in status.get("conditions", []))


def run_nodes(commands: list[list[str]], environments: list[dict[str, str]]) -> tuple[list[int], list[str]]:
    """One process per pod; the exit codes and outputs."""
    pods = [subprocess.Popen(command + SMALL, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             stdin=subprocess.DEVNULL) for command, env in zip(commands, environments)]
    outputs = [pod.communicate(timeout=600)[0] for pod in pods]
    return [pod.returncode for pod in pods], outputs


def nodes_report(codes: list[int], outputs: list[str], tail: int = 2000) -> str:
    """Every node's exit code and the end of its output: the failing node's own error is the one to read."""
    return "\n".join(f"--- node {node}: exit {code} ---\n{output[-tail:]}"
                      for node, (code, output) in enumerate(zip(codes, outputs)))


def pod_environment(**values: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **values)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def apply_and_create(cluster: Cluster, path: Path, plural: str, version: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """kubectl apply the Experiment; create its first trial's job as Katib's controller would."""
    applied = cluster.kubectl("apply", "--validate=false", "-f", str(path))
    assert applied.returncode == 0, applied.stderr
    document = load_yaml(path)
    trial = f"{document['metadata']['name']}-k2x7b9c4"
    job = rendered_trial_spec(document, first_proposal(document), trial)
    job["metadata"] = {**(job.get("metadata") or {}), "name": trial, "namespace": NAMESPACE}
    group = job["apiVersion"].split("/")[0]
    api = cluster.api()
    api.create_namespaced_custom_object(group, version, NAMESPACE, plural, job)
    return document, api.get_namespaced_custom_object(group, version, NAMESPACE, plural, trial)


def finish(cluster: Cluster, job: dict[str, Any], plural: str, succeeded: bool, kind_word: str) -> dict[str, Any]:
    group, version = job["apiVersion"].split("/")
    condition = {"type": kind_word if succeeded else "Failed", "status": "True"}
    api = cluster.api()
    api.patch_namespaced_custom_object_status(group, version, NAMESPACE, plural, job["metadata"]["name"],
                                              {"status": {"conditions": [condition]}})
    return api.get_namespaced_custom_object(group, version, NAMESPACE, plural, job["metadata"]["name"])["status"]


def test_trainjob_example_runs_as_kubeflow_trainer_runs_it(cluster: Cluster) -> None:
    path = REPO / "examples" / "nas-random-fashion-mnist-trainjob.yaml"
    document, job = apply_and_create(cluster, path, "trainjobs", "v1alpha1")
    trainer = job["spec"]["trainer"]
    port = str(free_port())
    environments = [pod_environment(PET_NNODES=str(trainer["numNodes"]), PET_NPROC_PER_NODE=str(
        trainer["numProcPerNode"]), PET_NODE_RANK=str(node), PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=port)
        for node in range(trainer["numNodes"])]
    codes, outputs = run_nodes([trainer["command"]] * trainer["numNodes"], environments)
    assert codes == [0, 0], nodes_report(codes, outputs)
    primary = outputs[0]  # node 0: the pod primaryPodLabels select (job-completion-index 0)
    metrics = katib_metrics(primary)
    assert 0.0 <= float(metrics["Validation-Accuracy"]) <= 1.0 and "Validation-Accuracy" not in outputs[1]
    status = finish(cluster, job, "trainjobs", True, "Complete")
    template = document["spec"]["trialTemplate"]
    assert matches(template["successCondition"], status) and not matches(template["failureCondition"], status)


def test_pytorchjob_example_runs_as_the_training_operator_runs_it(cluster: Cluster) -> None:
    path = REPO / "examples" / "nas-random-fashion-mnist-pytorchjob.yaml"
    document, job = apply_and_create(cluster, path, "pytorchjobs", "v1")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    roles = ["Master"] * replicas["Master"]["replicas"] + ["Worker"] * replicas["Worker"]["replicas"]
    procs = int(job["spec"]["nprocPerNode"])
    port, master = str(free_port()), f"{job['metadata']['name']}-master-0"
    commands, environments = [], []
    for rank, role in enumerate(roles):
        [container] = replicas[role]["template"]["spec"]["containers"]
        commands.append(container["command"])
        environments.append(pod_environment(
            MASTER_PORT=port, PET_MASTER_PORT=port, MASTER_ADDR="127.0.0.1", PET_MASTER_ADDR="127.0.0.1",
            WORLD_SIZE=str(len(roles) * procs), RANK=str(rank), PET_NODE_RANK=str(rank),
            PET_NPROC_PER_NODE=job["spec"]["nprocPerNode"], PET_NNODES=str(len(roles))))
    assert master.endswith("-master-0")  # the operator's MASTER_ADDR; one machine here, so loopback
    codes, outputs = run_nodes(commands, environments)
    assert codes == [0, 0], nodes_report(codes, outputs)
    metrics = katib_metrics(outputs[0])  # the Master: primaryPodLabels job-role master
    assert 0.0 <= float(metrics["Validation-Accuracy"]) <= 1.0 and "Validation-Accuracy" not in outputs[1]
    status = finish(cluster, job, "pytorchjobs", True, "Succeeded")
    template = document["spec"]["trialTemplate"]
    assert matches(template["successCondition"], status) and not matches(template["failureCondition"], status)
