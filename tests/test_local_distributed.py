"""`katib-nas run` on distributed trial specs: PyTorchJob and TrainJob worlds, torchrun commands, the launcher.

The launcher is exercised with real processes: each gets torchrun's environment, and when one fails the
others are stopped and the launcher exits with its code after one line. The examples themselves run
through the local runner in tests/test_examples.py.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from katib_nas.runner.launch import World
from katib_nas.runner.manifest import ExperimentError, load_experiment
from katib_nas.runner.trial_template import build_command, strip_torchrun, trial_workload

from .conftest import REPO, load_yaml

TRAINJOB = REPO / "examples" / "nas-random-fashion-mnist-trainjob.yaml"
PYTORCHJOB = REPO / "examples" / "nas-random-fashion-mnist-pytorchjob.yaml"
DIGITS = REPO / "tests" / "data" / "nas-random-digits.yaml"
LAUNCH = [sys.executable, "-m", "katib_nas.runner.launch"]


def trial_spec(path: Path) -> dict[str, Any]:
    return copy.deepcopy(load_yaml(path)["spec"]["trialTemplate"]["trialSpec"])


# --- the world a trial spec asks for -----------------------------------------------------------------------

def test_the_examples_ask_for_two_nodes_of_one_process() -> None:
    assert trial_workload(trial_spec(TRAINJOB), "node").world == World(2, 1)
    assert trial_workload(trial_spec(PYTORCHJOB), "pytorch").world == World(2, 1)


def test_trainjob_auto_processes_count_the_cpus_of_a_node_as_the_torch_plugin_does() -> None:
    spec = trial_spec(TRAINJOB)
    spec["spec"]["trainer"]["numProcPerNode"] = "auto"
    spec["spec"]["trainer"]["resourcesPerNode"] = {"requests": {"cpu": "3500m"}, "limits": {"cpu": "8"}}
    assert trial_workload(spec, "node").world == World(2, 4)  # the requests' 3.5 CPUs, rounded up
    del spec["spec"]["trainer"]["resourcesPerNode"]
    assert trial_workload(spec, "node").world == World(2, 1)


@pytest.mark.parametrize("cpu, processes", [("2", 2), (3, 3), ("1500m", 2), ("2.5", 3), ("0.5", 1), ("1e1", 10),
                                             ("+4", 4), ("2001m", 3)])
def test_trainjob_cpus_are_kubernetes_quantities(cpu: Any, processes: int) -> None:
    """Rounded up, as Kubernetes' Quantity.Value() does in Kubeflow Trainer's torch plugin (getNumCPUPerNode)."""
    spec = trial_spec(TRAINJOB)
    spec["spec"]["trainer"].update(numNodes=1, numProcPerNode="auto", resourcesPerNode={"limits": {"cpu": cpu}})
    assert trial_workload(spec, "node").world == World(1, processes)


def test_a_cpu_that_is_not_a_quantity_is_named(tmp_path: Path) -> None:
    document = load_yaml(TRAINJOB)
    trainer = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]
    trainer.update(numProcPerNode="auto", resourcesPerNode={"limits": {"cpu": "two"}})
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(document))
    workdir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "katib_nas.cli", "run", str(path), "--workdir", str(workdir)],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "katib-nas run: error: the TrainJob trialSpec's spec.trainer.resourcesPerNode.limits.cpu must be a "
        "Kubernetes quantity such as 2 or 1500m, got 'two'"]
    assert not workdir.exists()


def test_pytorchjob_counts_master_and_workers_and_nproc_per_node() -> None:
    spec = trial_spec(PYTORCHJOB)
    spec["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 3
    spec["spec"]["nprocPerNode"] = "2"
    assert trial_workload(spec, "pytorch").world == World(4, 2)
    spec["spec"]["nprocPerNode"] = "auto"  # counted as one, as the operator counts it in WORLD_SIZE
    assert trial_workload(spec, "pytorch").world == World(4, 1)


def test_a_job_is_one_process_and_runs_without_the_launcher(tmp_path: Path) -> None:
    command = build_command(load_experiment(DIGITS), "t-1", {"architecture": "x"}, [], tmp_path / "t-1")
    assert command.argv[:3] == (sys.executable, "-m", "katib_nas.cli")


@pytest.mark.parametrize("launcher, world", [
    (["torchrun", "--nproc-per-node=2", "--no-python"], ["--nnodes=1", "--nproc-per-node=2"]),
    (["torchrun", "--nnodes=2", "--no-python"], ["--nnodes=2", "--nproc-per-node=1"]),
])
def test_a_job_started_by_torchrun_runs_the_processes_torchrun_asks_for(tmp_path: Path, launcher: list[str],
                                                                         world: list[str]) -> None:
    """A batch Job's own world is one node of one process; torchrun's flags add to it what they name."""
    document = load_yaml(DIGITS)
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = launcher + container["command"]
    path = tmp_path / "torchrun.yaml"
    path.write_text(json.dumps(document))
    command = build_command(load_experiment(path), "t-1", {"architecture": "x"}, [], tmp_path / "t-1")
    assert list(command.argv[:5]) == LAUNCH + world


def test_the_primary_container_is_the_one_of_that_name() -> None:
    spec = trial_spec(PYTORCHJOB)
    pod = spec["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    pod["containers"].insert(0, {"name": "log-shipper", "command": ["fluent-bit"]})
    assert trial_workload(spec, "pytorch").container == pod["containers"][1]
    with pytest.raises(ExperimentError, match=r"the trialSpec has no container named 'trainer' \(primaryContainerName"):
        trial_workload(spec, "trainer")


@pytest.mark.parametrize("change, message", [
    ({"Master": None}, "the PyTorchJob trialSpec has no Master replica"),
    ({"Worker": -1}, "spec.pytorchReplicaSpecs.Worker.replicas must be a whole number in [0, 64] to run locally, got -1"),
    ({"nprocPerNode": "0"}, "spec.nprocPerNode must be a whole number in [1, 64] to run locally, got 0"),
])
def test_pytorchjob_replicas_the_runner_cannot_emulate_are_named(change: dict[str, Any], message: str) -> None:
    spec = trial_spec(PYTORCHJOB)
    replicas = spec["spec"]["pytorchReplicaSpecs"]
    if "Master" in change:
        del replicas["Master"]
    if "Worker" in change:
        replicas["Worker"]["replicas"] = change["Worker"]
    spec["spec"].update({k: v for k, v in change.items() if k == "nprocPerNode"})
    with pytest.raises(ExperimentError, match=message.replace("[", r"\[").replace("]", r"\]")):
        trial_workload(spec, "pytorch")


def test_a_pytorchjob_of_no_workers_is_the_master_alone() -> None:
    spec = trial_spec(PYTORCHJOB)
    spec["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 0
    assert trial_workload(spec, "pytorch").world == World(1, 1)


def test_a_trainjob_is_one_node_by_default_and_needs_its_command() -> None:
    spec = trial_spec(TRAINJOB)
    del spec["spec"]["trainer"]["numNodes"]
    spec["spec"]["trainer"]["numProcPerNode"] = 1
    assert trial_workload(spec, "node").world == World(1, 1)
    del spec["spec"]["trainer"]["command"]
    with pytest.raises(ExperimentError, match="the TrainJob trialSpec has no spec.trainer.command"):
        trial_workload(spec, "node")


@pytest.mark.parametrize("argv, expected, world", [
    (["katib-nas", "trial"], ["katib-nas", "trial"], World(2, 1)),
    (["torchrun", "--no-python", "katib-nas", "trial"], ["katib-nas", "trial"], World(2, 1)),
    (["/usr/local/bin/torchrun", "--no-python", "katib-nas", "trial"], ["katib-nas", "trial"], World(2, 1)),
    (["torchrun", "--nproc-per-node", "3", "--no_python", "katib-nas", "trial", "--epochs=1"],
     ["katib-nas", "trial", "--epochs=1"], World(2, 3)),
    (["torchrun", "--standalone", "--nnodes=1", "--nproc_per_node=2", "train.py", "-x"],
     ["python", "train.py", "-x"], World(1, 2)),
    (["torchrun", "-m", "pkg.train"], ["python", "-m", "pkg.train"], World(2, 1)),
])
def test_torchrun_is_replaced_by_the_program_it_starts(argv: list[str], expected: list[str], world: World) -> None:
    assert strip_torchrun(argv, World(2, 1)) == (expected, world)


@pytest.mark.parametrize("argv, message", [
    (["torchrun", "--elastic-magic", "x.py"], "torchrun option '--elastic-magic' is not one the local runner knows"),
    (["torchrun", "--no-python"], "torchrun has no program to start"),
    (["torchrun", "--nnodes=1:4", "x.py"], "torchrun --nnodes '1:4': the local runner takes a whole number here"),
    (["torchrun", "--nproc-per-node=65", "x.py"], "torchrun --nproc-per-node must be a whole number in [1, 64]"),
])
def test_torchrun_commands_the_runner_cannot_emulate_are_named(argv: list[str], message: str) -> None:
    with pytest.raises(ExperimentError, match=message.replace("[", r"\[").replace("]", r"\]")):
        strip_torchrun(argv, World(1, 1))


def test_a_trainjob_primary_container_must_be_node(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match="a TrainJob's trainer runs in the container named 'node'"):
        trial_workload(trial_spec(TRAINJOB), "trainer")


def test_a_multi_process_trial_runs_under_the_launcher_and_one_process_without(tmp_path: Path) -> None:
    spec = load_experiment(TRAINJOB)
    command = build_command(spec, "t-1", {"architecture": "in28x28x1-cls10-stem8/w8:c3"}, [], tmp_path / "t-1")
    assert list(command.argv[:5]) == LAUNCH + ["--nnodes=2", "--nproc-per-node=1"]
    assert command.argv[5:8] == ("--", sys.executable, "-m") and "--architecture=in28x28x1-cls10-stem8/w8:c3" in \
        command.argv
    document = load_yaml(TRAINJOB)
    document["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]["numNodes"] = 1
    path = tmp_path / "one.yaml"
    path.write_text(json.dumps(document))
    one = build_command(load_experiment(path), "t-2", {"architecture": "x"}, [], tmp_path / "t-2")
    assert "katib_nas.runner.launch" not in one.argv and one.argv[1:3] == ("-m", "katib_nas.cli")


def test_a_trainjob_of_several_processes_without_torchrun_is_refused(tmp_path: Path) -> None:
    """On a cluster each node would run its own one-process trial (the trial refuses that too)."""
    document = load_yaml(TRAINJOB)
    trainer = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]
    trainer["command"] = trainer["command"][2:]  # katib-nas trial ..., without torchrun --no-python
    path = tmp_path / "bare.yaml"
    path.write_text(json.dumps(document))
    with pytest.raises(ExperimentError, match=r"asks for 2 node\(s\) x 1 process\(es\), but its command does not "
                                              r"start with torchrun"):
        build_command(load_experiment(path), "t-1", {"architecture": "x"}, [], tmp_path / "t-1")
    trainer["numNodes"] = 1
    path.write_text(json.dumps(document))
    assert "katib_nas.runner.launch" not in build_command(load_experiment(path), "t-2", {"architecture": "x"}, [],
                                                          tmp_path / "t-2").argv


@pytest.mark.parametrize("name", ["PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR",
                                  "PET_MASTER_PORT"])
def test_a_trainjob_setting_torchruns_reserved_variables_is_refused_as_trainer_refuses_it(name: str) -> None:
    spec = trial_spec(TRAINJOB)
    spec["spec"]["trainer"]["env"] = [{"name": name, "value": "4"}, {"name": "LOG_LEVEL", "value": "info"}]
    with pytest.raises(ExperimentError, match=rf"spec.trainer.env sets {name}, which Kubeflow Trainer reserves"):
        trial_workload(spec, "node")


def test_a_pytorchjob_of_several_replicas_runs_without_torchrun(tmp_path: Path) -> None:
    """The Training Operator sets WORLD_SIZE and RANK in every replica itself: no torchrun is needed there."""
    document = load_yaml(PYTORCHJOB)
    replicas = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["pytorchReplicaSpecs"]
    for replica in replicas.values():
        container = replica["template"]["spec"]["containers"][0]
        container["command"] = [arg for arg in container["command"] if arg not in ("torchrun", "--no-python")]
    path = tmp_path / "bare.yaml"
    path.write_text(json.dumps(document))
    command = build_command(load_experiment(path), "t-1", {"architecture": "x"}, [], tmp_path / "t-1")
    assert list(command.argv[:5]) == LAUNCH + ["--nnodes=2", "--nproc-per-node=1"]


def trainjob_command(tmp_path: Path, nodes: int, processes: int) -> tuple[str, ...]:
    document = load_yaml(TRAINJOB)
    document["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"].update(numNodes=nodes, numProcPerNode=processes)
    path = tmp_path / f"{nodes}x{processes}.yaml"
    path.write_text(json.dumps(document))
    return build_command(load_experiment(path), "t-1", {"architecture": "x"}, [], tmp_path / "t-1").argv


@pytest.mark.parametrize("nodes, processes", [(1, 2), (8, 8), (64, 1)])
def test_several_processes_up_to_the_local_limit_run_under_the_launcher(tmp_path: Path, nodes: int,
                                                                        processes: int) -> None:
    """One node of two processes is as much a torchrun world as two nodes; 64 processes are the limit, allowed."""
    assert list(trainjob_command(tmp_path, nodes, processes)[:5]) == LAUNCH + [f"--nnodes={nodes}",
                                                                               f"--nproc-per-node={processes}"]


def test_a_replica_without_a_count_is_one_and_torchrun_may_ask_for_the_limit() -> None:
    spec = trial_spec(PYTORCHJOB)
    del spec["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"]  # Kubernetes' default for replicas: 1
    assert trial_workload(spec, "pytorch").world == World(2, 1)
    assert strip_torchrun(["torchrun", "--nproc-per-node=64", "x.py"], World(1, 1))[1] == World(1, 64)


def test_too_many_local_processes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ExperimentError, match=r"asks for 16 node\(s\) x 8 process\(es\), more than the 64"):
        trainjob_command(tmp_path, 16, 8)


# --- the launcher ------------------------------------------------------------------------------------------

# One write per process (the processes share the launcher's stdout; print's two writes could interleave).
PRINT_ENV = ("import json, os; os.write(1, (json.dumps({k: os.environ.get(k) for k in ('RANK', 'LOCAL_RANK', "
             "'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'GROUP_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'OMP_NUM_THREADS')}) "
             "+ '\\n').encode())")


def test_each_process_gets_torchruns_environment() -> None:
    done = subprocess.run([*LAUNCH, "--nnodes=2", "--nproc-per-node=2", "--", sys.executable, "-c", PRINT_ENV],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ranks = sorted((json.loads(line) for line in done.stdout.splitlines()), key=lambda e: int(e["RANK"]))
    assert [(e["RANK"], e["LOCAL_RANK"], e["GROUP_RANK"]) for e in ranks] == [
        ("0", "0", "0"), ("1", "1", "0"), ("2", "0", "1"), ("3", "1", "1")]
    assert {(e["WORLD_SIZE"], e["LOCAL_WORLD_SIZE"], e["MASTER_ADDR"]) for e in ranks} == {("4", "2", "127.0.0.1")}
    assert len({e["MASTER_PORT"] for e in ranks}) == 1 and all(int(e["OMP_NUM_THREADS"]) >= 1 for e in ranks)


def test_a_failed_process_stops_the_others_and_sets_the_exit_code() -> None:
    program = "import os, sys, time\nif os.environ['RANK'] == '1': sys.exit(3)\ntime.sleep(600)"
    done = subprocess.run([*LAUNCH, "--nproc-per-node=3", "--", sys.executable, "-c", program],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3
    assert done.stderr.strip() == "katib-nas launch: rank 1 of 3 exited with code 3; stopped the 2 other running " \
                                  "process(es)"
