"""The envelopenet example Experiments: valid Katib YAML, and trial stdout -> the example's regexes ->
observation in a GetSuggestionsRequest -> the next, pruned architecture."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from katib_nas.contract.branch_stats import format_branch_stats, format_skip_gates
from katib_nas.contract.codec import decode
from katib_nas.contract.spec import Op
from katib_nas.proto import api_pb2
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.experiment import ExperimentInfo
from katib_nas.suggestion.service.servicer import get_suggestions

from .conftest import REPO, load_yaml

EXAMPLES = [REPO / "examples" / "envelopenet-fashion-mnist.yaml", REPO / "examples" / "envelopenet-cifar10-gpu.yaml"]
TRIAL_PARAMETER = re.compile(r"\$\{trialParameters\.([\w-]+)\}")


def spec_of(path: Path) -> dict[str, Any]:
    return load_yaml(path)["spec"]


def experiment_info(source: Path | dict[str, Any]) -> ExperimentInfo:
    document = load_yaml(source) if isinstance(source, Path) else source
    spec = document["spec"]
    return ExperimentInfo(
        name=document["metadata"]["name"], algorithm=spec["algorithm"]["algorithmName"],
        settings={s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]},
        objective_metric=spec["objective"]["objectiveMetricName"],
        additional_metrics=tuple(spec["objective"]["additionalMetricNames"]),
        parallel_trial_count=spec["parallelTrialCount"], max_trial_count=spec["maxTrialCount"],
        nas_config=spec["nasConfig"])


def container(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_envelopenet_validation(path: Path) -> None:
    engine.validate(experiment_info(path))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_assignment_is_referenced_and_every_trial_parameter_used(path: Path) -> None:
    spec = spec_of(path)
    parameters = spec["trialTemplate"]["trialParameters"]
    assignments = engine.suggest(experiment_info(path), [], 2, 0).assignments
    assert all(set(a) == {p["reference"] for p in parameters} for a in assignments)
    used = set(TRIAL_PARAMETER.findall(json.dumps(spec["trialTemplate"]["trialSpec"])))
    assert used == {p["name"] for p in parameters}
    assert "--branch-stats" in container(spec)["command"]


def test_gpu_example_reads_cifar10_from_its_volume_claim() -> None:
    spec = spec_of(EXAMPLES[1])
    pod = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    mount = container(spec)["volumeMounts"][0]
    assert claim and mount["name"] == pod["volumes"][0]["name"]
    data_dir = next(a for a in container(spec)["command"] if a.startswith("--data-dir="))
    assert data_dir.split("=", 1)[1].startswith(mount["mountPath"] + "/")
    assert "--dataset=cifar10" in container(spec)["command"]
    assert container(spec)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert experiment_info(EXAMPLES[1]).parallel_trial_count == 2


def collect_stdout(stdout: str, metric_names: list[str], filters: list[str]) -> dict[str, str]:
    """Katib's StdOut collector: lines naming a metric, every match of every filter, latest value kept."""
    patterns = [re.compile(f) for f in filters]
    latest: dict[str, str] = {}
    for line in stdout.split("\n"):
        if not any(name in line for name in metric_names):
            continue
        for pattern in patterns:
            for match in pattern.finditer(line):
                name, value = match.group(1).strip(), match.group(2).strip()
                if name in metric_names:
                    latest[name] = value
    return latest


def experiment_proto(document: dict[str, Any]) -> api_pb2.Experiment:
    info, spec = experiment_info(document), document["spec"]
    message = api_pb2.Experiment(name=info.name)
    message.spec.algorithm.algorithm_name = info.algorithm
    for name, value in info.settings.items():
        message.spec.algorithm.algorithm_settings.add(name=name, value=value)
    message.spec.objective.type = api_pb2.MAXIMIZE
    message.spec.objective.objective_metric_name = info.objective_metric
    message.spec.objective.additional_metric_names.extend(info.additional_metrics)
    message.spec.parallel_trial_count = info.parallel_trial_count
    graph = spec["nasConfig"]["graphConfig"]
    message.spec.nas_config.graph_config.num_layers = graph["numLayers"]
    message.spec.nas_config.graph_config.input_sizes.extend(graph["inputSizes"])
    message.spec.nas_config.graph_config.output_sizes.extend(graph["outputSizes"])
    for operation in spec["nasConfig"]["operations"]:
        op = message.spec.nas_config.operations.operation.add(operation_type=operation["operationType"])
        for parameter in operation["parameters"]:
            op.parameter_specs.parameters.add(
                name=parameter["name"], parameter_type=api_pb2.CATEGORICAL,
                feasible_space=api_pb2.FeasibleSpace(list=parameter["feasibleSpace"]["list"]))
    return message


def render_command(spec: dict[str, Any], assignment: dict[str, str]) -> list[str]:
    by_name = {p["name"]: assignment[p["reference"]] for p in spec["trialTemplate"]["trialParameters"]}
    return [TRIAL_PARAMETER.sub(lambda m: by_name[m.group(1)], arg) for arg in container(spec)["command"]]


def suggest_twice(document: dict[str, Any], run_trial: Callable[[list[str]], str]):
    """One Katib round through the real service code: suggestion, the rendered trial's stdout collected with
    the Experiment's metricsFormat, a SUCCEEDED trial with that observation, and the next suggestion."""
    spec = document["spec"]
    request = api_pb2.GetSuggestionsRequest(experiment=experiment_proto(document), current_request_number=1,
                                            total_request_number=1)
    reply = get_suggestions(request)
    assignment = {a.name: a.value for a in reply.parameter_assignments[0].assignments}
    command = render_command(spec, assignment)
    assert "--epochs=1" in command and "--branch-stats" in command
    architecture = decode(next(a for a in command if a.startswith("--architecture=")).split("=", 1)[1])
    stdout = run_trial(command)
    names = [spec["objective"]["objectiveMetricName"]] + spec["objective"]["additionalMetricNames"]
    observed = collect_stdout(stdout, names, spec["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"])

    trial = api_pb2.Trial(name=f"{document['metadata']['name']}-abc")
    trial.spec.parameter_assignments.assignments.extend(
        api_pb2.ParameterAssignment(name=k, value=v) for k, v in assignment.items())
    trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
    trial.status.observation.metrics.extend(api_pb2.Metric(name=k, value=v) for k, v in observed.items())
    request = api_pb2.GetSuggestionsRequest(experiment=experiment_proto(document), trials=[trial],
                                            current_request_number=1, total_request_number=2)
    reply = get_suggestions(request)
    following = decode({a.name: a.value for a in reply.parameter_assignments[0].assignments}["architecture"])
    return architecture, following, stdout, observed


def test_trial_stdout_reaches_the_next_pruned_architecture_through_the_example_regexes() -> None:
    # The trial's measurements: in stage 0 branches c1 and s7 are weakest, in stage 1 c5 and s3.
    weakest = {0: {Op("conv", 1), Op("sepconv", 7)}, 1: {Op("conv", 5), Op("sepconv", 3)}}

    def trial_output(command: list[str]) -> str:
        architecture = decode(next(a for a in command if a.startswith("--architecture=")).split("=", 1)[1])
        stage_of = architecture.stage_of_cells()
        branches = [[0.01 * (b + 1) if op in weakest.get(stage_of[c], ()) else 1.5 + b
                     for b, op in enumerate(cell.ops)] for c, cell in enumerate(architecture.cells)]
        gates = [[0.5 for _ in cell.skips] for cell in architecture.cells]
        return "\n".join(["epoch=1 Train-Loss=0.61 Train-Accuracy=0.78", "Validation-Accuracy=0.8412",
                          "Validation-Loss=0.4471", "params=53210", "mparams=0.05321", f"Branch-Stats={format_branch_stats(branches)}",
                          f"Skip-Gates={format_skip_gates(gates)}"])

    architecture, following, stdout, observed = suggest_twice(load_yaml(EXAMPLES[0]), trial_output)
    assert observed["Validation-Accuracy"] == "0.8412" and observed["mparams"] == "0.05321"
    assert "params" not in observed  # printed, but not among the metrics the example collects
    assert f"Branch-Stats={observed['Branch-Stats']}" in stdout.splitlines()
    assert f"Skip-Gates={observed['Skip-Gates']}" in stdout.splitlines()
    full = set(architecture.cells[0].ops)
    assert [set(cell.ops) for cell in following.stages[0].cells] == [full - weakest[0], full]
    assert [set(cell.ops) for cell in following.stages[1].cells] == [full - weakest[1], full]
    assert [c.ops for c in following.stages[2].cells] == [c.ops for c in architecture.stages[2].cells]


def test_a_real_trial_run_prunes_the_branches_it_measured_weakest() -> None:
    document = load_yaml(EXAMPLES[0])  # the example, shrunk to digits (8x8) so the trial takes seconds
    document["spec"]["nasConfig"]["graphConfig"]["inputSizes"] = [8, 8, 1]
    for entry in document["spec"]["algorithm"]["algorithmSettings"]:
        entry["value"] = "12" if entry["name"] == "width" else entry["value"]

    def run_trial(command: list[str]) -> str:
        program = Path(sys.executable).with_name(command[0])
        swap = {"--dataset=": "--dataset=digits", "--epochs=": "--steps=12"}  # a short real run
        args = [next((swap[p] for p in swap if a.startswith(p)), a) for a in command[1:]]
        return subprocess.run([str(program), *args], capture_output=True, text=True, check=True).stdout

    architecture, following, stdout, observed = suggest_twice(document, run_trial)
    assert 0.0 <= float(observed["Validation-Accuracy"]) <= 1.0
    metric_lines = [line.split(" ", 1)[-1] for line in stdout.splitlines()]  # after each line's timestamp
    printed = next(line for line in metric_lines if line.startswith("Branch-Stats="))
    assert printed == f"Branch-Stats={observed['Branch-Stats']}"
    values = [[float(v) for v in cell.split("_")] for cell in printed.split("/")[1:]]
    for stage in (0, 1):  # growing stages of one 6-branch cell: the two lowest go (a third of 6)
        cell_values = values[stage]
        removed = sorted(range(6), key=lambda b: (cell_values[b], b))[:2]
        full = architecture.stages[stage].cells[0].ops
        kept = tuple(op for b, op in enumerate(full) if b not in removed)
        assert [cell.ops for cell in following.stages[stage].cells] == [kept, full]
    assert [c.ops for c in following.stages[2].cells] == [c.ops for c in architecture.stages[2].cells]
    assert following.cells[-1].skips == (0, 1)  # its one gated skip kept (as cell 0), plus the new cell 1
