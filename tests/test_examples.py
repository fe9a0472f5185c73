"""Every examples/*.yaml is an Experiment Katib accepts and runs.

- Schema: Katib's Experiment as kubeflow-katib's typed models define it, unknown fields refused; the
  trial's batch/v1 Job from the kubernetes client's models, the structure Katib's webhook converts it into;
  a PyTorchJob from kubeflow-training's models (Training Operator v1), a TrainJob from kubeflow-trainer-api
  2.1.0's (Kubeflow Trainer v2.1).
- The distributed trial kinds: Katib v0.19.0's defaults for them (primaryPodLabels, success and failure
  conditions; pkg/apis/controller/experiments/v1beta1/constants.go) and the rules of Kubeflow Trainer
  v2.1.0's TrainJob CRD and torch plugin (numProcPerNode, reserved torchrun variables).
- Katib's admission webhook (pkg/webhook/v1beta1/experiment/validator/validator.go), after Katib's
  defaulting, rule by rule, against the katib-config a Katib v0.19.0 install has after `katib-nas register`;
  medianstop settings as Katib's medianstop service validates them; each rule is shown to fire on a broken
  copy.
- Restricted pod security: every example's trial pod meets Kubernetes' restricted Pod Security Standard,
  with a read-only root filesystem, an emptyDir for scratch and Istio sidecar injection turned off.
- The trialTemplate, with a real suggestion substituted as Katib does, is a `katib-nas trial` command.
- Each CPU example runs through the local runner with a tiny budget.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from katib_nas.cli.main import build_parser
from katib_nas.contract.codec import decode
from katib_nas.deploy.images import TRIAL_CPU_IMAGE, TRIAL_CUDA_IMAGE
from katib_nas.pipelines.search_request import check_experiment, experiment_info
from katib_nas.runner.manifest import experiment_from_document
from katib_nas.suggestion.core.algorithms import get_algorithm

from .conftest import REPO, load_yaml, runtime_pod_templates, schema_errors, trial_containers, trial_pod_templates
from .support.katib_webhook import KUBEFLOW_DEFAULTS, webhook_errors
from .support.pod_security import COLLECTOR_CONTAINER, kubelet_refusals, restricted_violations, with_katib_collector
from .support.trainjob import trainjob_errors
from .support.trial_template import META_REFERENCE, rendered_command

# The examples, plus the experiment `katib-nas demo` runs (it ships inside the package).
EXAMPLES = sorted((REPO / "examples").glob("*.yaml")) + [REPO / "runner" / "demo-experiment.yaml"]
TRIAL_IMAGES = (TRIAL_CPU_IMAGE, TRIAL_CUDA_IMAGE)


def example_id(path: Path) -> str:
    return path.stem


# --- schema -------------------------------------------------------------------------------------------

#: apiVersion and kind of each trial resource the examples use -> its schema.
TRIAL_SCHEMAS = {("batch/v1", "Job"): "job", ("kubeflow.org/v1", "PyTorchJob"): "pytorchjob",
                 ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainjob"}


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_example_matches_katib_schema_with_unknown_fields_refused(path: Path, katib_schemas: dict[str, Any]) -> None:
    document = load_yaml(path)
    assert schema_errors(katib_schemas["experiment"], document) == []
    trial_spec = document["spec"]["trialTemplate"]["trialSpec"]
    schema = TRIAL_SCHEMAS[trial_spec["apiVersion"], trial_spec["kind"]]
    assert schema_errors(katib_schemas[schema], trial_spec) == []


def test_both_distributed_trial_kinds_have_an_example() -> None:
    kinds = {load_yaml(p)["spec"]["trialTemplate"]["trialSpec"]["kind"] for p in EXAMPLES}
    assert {"Job", "PyTorchJob", "TrainJob"} <= kinds


def test_distributed_schemas_refuse_unknown_and_mistyped_fields(katib_schemas: dict[str, Any]) -> None:
    trainjob = load_yaml(REPO / "examples" / "nas-random-fashion-mnist-trainjob.yaml")["spec"]["trialTemplate"][
        "trialSpec"]
    trainjob["spec"]["trainer"]["numNodes"] = "two"
    trainjob["spec"]["podSpecOverrides"] = []  # Trainer v2.0's name; v2.1 calls it podTemplateOverrides
    errors = schema_errors(katib_schemas["trainjob"], trainjob)
    assert any("numNodes" in e for e in errors) and any("podSpecOverrides" in e for e in errors)
    pytorchjob = load_yaml(REPO / "examples" / "nas-random-fashion-mnist-pytorchjob.yaml")["spec"][
        "trialTemplate"]["trialSpec"]
    pytorchjob["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "one"
    pytorchjob["spec"]["nprocPerNodes"] = "1"
    errors = schema_errors(katib_schemas["pytorchjob"], pytorchjob)
    assert any("replicas" in e for e in errors) and any("nprocPerNodes" in e for e in errors)


def test_schema_refuses_unknown_and_mistyped_fields(katib_schemas: dict[str, Any]) -> None:
    document = load_yaml(EXAMPLES[0])
    broken = copy.deepcopy(document)
    broken["spec"]["objective"]["objectiveMetricNmae"] = "typo"
    broken["spec"]["maxTrialCount"] = "twelve"
    errors = schema_errors(katib_schemas["experiment"], broken)
    assert any("objectiveMetricNmae" in e for e in errors) and any("maxTrialCount" in e for e in errors)
    job = copy.deepcopy(document["spec"]["trialTemplate"]["trialSpec"])
    job["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    job["spec"]["backoffLimit"] = "three"
    errors = schema_errors(katib_schemas["job"], job)
    assert any("comand" in e for e in errors) and any("backoffLimit" in e for e in errors)


# --- Katib's admission webhook --------------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_example_passes_katib_admission_webhook(path: Path) -> None:
    assert webhook_errors(load_yaml(path)) == []


DISTRIBUTED = sorted(p for p in EXAMPLES if load_yaml(p)["spec"]["trialTemplate"]["trialSpec"]["kind"] != "Job")


@pytest.mark.parametrize("path", DISTRIBUTED, ids=example_id)
def test_distributed_examples_state_katibs_own_defaults_and_start_under_torchrun(path: Path) -> None:
    document = load_yaml(path)
    template = document["spec"]["trialTemplate"]
    kind = template["trialSpec"]["kind"]
    conditions, labels = KUBEFLOW_DEFAULTS[kind]
    assert (template["successCondition"], template["failureCondition"]) == conditions
    assert template["primaryPodLabels"] == labels
    if kind == "TrainJob":
        runtime = load_yaml(TRAINJOB_RUNTIME)
        assert template["trialSpec"]["spec"]["runtimeRef"] == {"name": runtime["metadata"]["name"],
                                                               "kind": runtime["kind"]}
        assert runtime["metadata"]["namespace"] == document["metadata"]["namespace"]
        assert trainjob_errors(template["trialSpec"], f"{document['metadata']['name']}-x2b4c6d8") == []
    for container in trial_containers(template["trialSpec"]):
        assert container["command"][:3] == ["torchrun", "--no-python", "katib-nas"]


def test_trainjob_checker_catches_each_rule() -> None:
    trial_spec = load_yaml(REPO / "examples" / "nas-random-fashion-mnist-trainjob.yaml")["spec"]["trialTemplate"][
        "trialSpec"]
    breaks = {"numProcPerNode": ("numProcPerNode", "many"), "numNodes": ("numNodes", 0),
              "reserved envs": ("env", [{"name": "PET_NNODES", "value": "3"}])}
    for expected, (field, value) in breaks.items():
        broken = copy.deepcopy(trial_spec)
        broken["spec"]["trainer"][field] = value
        assert any(expected in e for e in trainjob_errors(broken, "fine-name")), expected
    assert trainjob_errors(trial_spec, "9-starts-with-a-digit") == ["metadata.name must match RFC 1035 DNS label format"]


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_trial_parameters_reference_exactly_what_the_algorithm_assigns(path: Path) -> None:
    document = load_yaml(path)
    assignment_names = set(check_experiment(document))
    references = {p["reference"] for p in document["spec"]["trialTemplate"]["trialParameters"]}
    assert {r for r in references if not META_REFERENCE.match(r)} == assignment_names


def _mutate(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    document = load_yaml(REPO / "examples" / "nas-random-fashion-mnist.yaml")
    change(document)
    return document


def _template(document: dict[str, Any]) -> dict[str, Any]:
    return document["spec"]["trialTemplate"]


def _command(document: dict[str, Any]) -> list[str]:
    return _template(document)["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"]


BROKEN = {
    "long name": (lambda d: d["metadata"].update(name="x" * 41), "metadata.name"),
    "parallel above max": (lambda d: d["spec"].update(parallelTrialCount=20), "spec.parallelTrialCount"),
    "objective repeated": (lambda d: d["spec"]["objective"]["additionalMetricNames"].append("Validation-Accuracy"),
                           "additionalMetricNames"),
    "algorithm not installed": (lambda d: d["spec"]["algorithm"].update(algorithmName="nas-randum"),
                                "algorithmName"),
    "parameters and nasConfig": (lambda d: d["spec"].update(parameters=[{"name": "lr"}]), "exactly one"),
    "unused trialParameter": (lambda d: _template(d)["trialParameters"].append(
        {"name": "extra", "reference": "extra"}), "not found in trialTemplate"),
    "undeclared placeholder": (lambda d: _command(d).append("--seed=${trialParameters.seed}"),
                               "not found in spec.trialParameters"),
    "duplicated reference": (lambda d: _template(d)["trialParameters"].append(
        {"name": "again", "reference": "architecture"}), "duplicated"),
    "metricsFormat one group": (lambda d: d["spec"].update(metricsCollectorSpec={"source": {"filter": {
        "metricsFormat": ["([\\w-]+)=.*"]}}}), "two top subexpressions"),
    "metricsFormat broken": (lambda d: d["spec"].update(metricsCollectorSpec={"source": {"filter": {
        "metricsFormat": ["([\\w-]+=(.*)"]}}}), "does not compile"),
    "trial named": (lambda d: _template(d)["trialSpec"].update(metadata={"name": "fixed"}), "must be omitted"),
    "early stopping not installed": (lambda d: d["spec"].update(earlyStopping={"algorithmName": "hyperband"}),
                                     "unable to get EarlyStopping config data"),
    "early stopping unnamed": (lambda d: d["spec"].update(earlyStopping={"algorithmName": ""}), "must be specified"),
    "medianstop start_step 0": (lambda d: d["spec"].update(earlyStopping={
        "algorithmName": "medianstop", "algorithmSettings": [{"name": "start_step", "value": "0"}]}),
        "start_step must be greater or equal than one"),
    "medianstop unknown setting": (lambda d: d["spec"].update(earlyStopping={
        "algorithmName": "medianstop", "algorithmSettings": [{"name": "window", "value": "2"}]}),
        "unknown setting window"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_webhook_checker_catches_each_rule(case: str) -> None:
    change, expected = BROKEN[case]
    errors = webhook_errors(_mutate(change))
    assert any(expected in error for error in errors), errors


def test_an_early_stopping_example_reports_past_its_start_step() -> None:
    """medianstop compares at the start_step-th report: the trial must report more epochs than that."""
    stopped = [p for p in EXAMPLES if load_yaml(p)["spec"].get("earlyStopping")]
    assert [p.stem for p in stopped] == ["nas-random-medianstop-fashion-mnist"]
    document = load_yaml(stopped[0])
    settings = {s["name"]: int(s["value"]) for s in document["spec"]["earlyStopping"]["algorithmSettings"]}
    epochs = int(next(a for a in _command(document) if a.startswith("--epochs=")).split("=")[1])
    assert epochs > settings["start_step"] and document["spec"]["maxTrialCount"] > settings["min_trials_required"]


# --- restricted pod security ----------------------------------------------------------------------------

#: The training runtime the TrainJob example names: its pods are the trial's pods.
TRAINJOB_RUNTIME = REPO / "examples" / "prepare" / "trainjob-runtime.yaml"


def example_pod_templates(path: Path) -> dict[str, dict[str, Any]]:
    """The trial's pod templates: the trial spec's own, or a TrainJob's, from the runtime it names."""
    trial_spec = load_yaml(path)["spec"]["trialTemplate"]["trialSpec"]
    if trial_spec["kind"] == "TrainJob":
        return runtime_pod_templates(load_yaml(TRAINJOB_RUNTIME))
    return trial_pod_templates(trial_spec)


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=example_id)
def test_trial_pod_meets_restricted_pod_security_with_scratch_space(path: Path) -> None:
    """In a namespace that enforces restricted pod security or injects Istio sidecars, every example's trials
    start and end: a TrainJob's pods through its prepared runtime (the TrainJob has no pod template)."""
    pods = example_pod_templates(path)
    assert pods
    for where, pod in pods.items():
        assert restricted_violations(pod) == [], where
        assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        scratch = {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v}
        [container] = pod["spec"]["containers"]
        assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] in scratch} == {"/tmp"}


def collector_kind(path: Path) -> str:
    return ((load_yaml(path)["spec"].get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind", "StdOut")


INJECTED = [p for p in sorted((REPO / "examples").glob("*.yaml")) if collector_kind(p) != "Push"]


@pytest.mark.parametrize("inject_security_context", [False, True])
@pytest.mark.parametrize("path", INJECTED, ids=example_id)
def test_katibs_metrics_collector_starts_in_every_trial_pod(path: Path, inject_security_context: bool) -> None:
    """Katib's collector images run as root; under the pod's runAsNonRoot the kubelet starts one only when the
    pod names a user. Without it every trial's pod would stay unfinished and the Experiment would hang. With
    katib-config's injectSecurityContext the pod, collector included, meets restricted pod security."""
    assert len(INJECTED) == len(list((REPO / "examples").glob("*.yaml"))) - 1  # all but the Push example
    for where, pod in example_pod_templates(path).items():
        injected = with_katib_collector(pod, inject_security_context)
        assert kubelet_refusals(injected, {COLLECTOR_CONTAINER}) == [], where
        if inject_security_context:
            assert restricted_violations(injected) == [], where
        unnamed = copy.deepcopy(injected)
        del unnamed["spec"]["securityContext"]["runAsUser"]
        assert kubelet_refusals(unnamed, {COLLECTOR_CONTAINER}) == [
            f"{COLLECTOR_CONTAINER}: container has runAsNonRoot and image will run as root"], where


def test_restricted_checker_catches_each_rule() -> None:
    pod = load_yaml(REPO / "examples" / "nas-random-fashion-mnist.yaml")["spec"]["trialTemplate"]["trialSpec"]
    pod = pod["spec"]["template"]
    breaks = {"allowPrivilegeEscalation": True, "capabilities": {"drop": ["NET_RAW"]}, "runAsNonRoot": False,
              "seccompProfile": {"type": "Unconfined"}, "readOnlyRootFilesystem": False, "privileged": True}
    for key, value in breaks.items():
        broken = copy.deepcopy(pod)
        broken["spec"]["containers"][0]["securityContext"][key] = value
        assert restricted_violations(broken), key
    broken = copy.deepcopy(pod)
    broken["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert restricted_violations(broken) == ["volume host"]


# --- trialTemplate -> trial command ----------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_trial_template_renders_into_a_katib_nas_trial_command(path: Path) -> None:
    document = load_yaml(path)
    spec = experiment_from_document(document)
    algorithm = get_algorithm(spec.algorithm)
    info = experiment_info(spec)
    algorithm.validate(info)
    proposal = algorithm.suggest(info, [], 2, 0)
    for index, assignments in enumerate(proposal.assignments):
        for value in assignments.values():
            assert not set(value) & set('", $'), value  # readable in the Katib UI's CSV, safe in YAML and sh
        image, argv = rendered_command(document, assignments, f"{spec.name}-trial{index}")
        assert image in TRIAL_IMAGES
        assert argv[0] == "katib-nas"
        args = build_parser().parse_args(argv[1:])  # a subcommand and flags the image's katib-nas accepts
        assert args.command in ("trial", "proxyless-search")
        arch = decode(args.architecture)
        graph = document["spec"]["nasConfig"]["graphConfig"]
        assert list(arch.input_shape) == graph["inputSizes"] and arch.num_classes == graph["outputSizes"][0]


# --- the local runner -----------------------------------------------------------------------------------

def collector(path: Path) -> str:
    return ((load_yaml(path)["spec"].get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind", "StdOut")


#: The local runner collects StdOut and File metrics; the Push example's trials are tested against a DB manager
#: (tests/katib_client/test_trial_push.py).
CPU_EXAMPLES = [p for p in EXAMPLES if "trial-cpu" in p.read_text() and collector(p) != "Push"]
PUSH_EXAMPLES = [p for p in EXAMPLES if collector(p) == "Push"]


@pytest.mark.parametrize("path", PUSH_EXAMPLES, ids=example_id)
def test_the_local_runner_refuses_a_push_example_in_one_line(path: Path, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "katib_nas.cli", "run", str(path), "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "katib-nas run: error: spec.metricsCollectorSpec.collector.kind Push cannot run locally; the local runner "
        "collects StdOut and File metrics"]


#: Epochs of a tiny-budget run: of trials that take --epochs, and of one-shot searches (one warm-up epoch, one
#: with architecture steps).
TINY_EPOCHS = 1
TINY_SEARCH_EPOCHS = 2


def with_tiny_search(path: Path, folder: Path) -> Path:
    """The example, or a copy of it in `folder` whose one-shot search trains TINY_SEARCH_EPOCHS epochs."""
    document = load_yaml(path)
    settings = {s["name"]: s for s in document["spec"]["algorithm"].get("algorithmSettings") or []}
    if settings.get("mode", {}).get("value") != "oneshot":
        return path
    settings["epochs"]["value"] = str(TINY_SEARCH_EPOCHS)
    settings["warmup_epochs"]["value"] = "1"
    copied = folder / path.name
    copied.write_text(yaml.safe_dump(document, sort_keys=False))
    return copied


def tiny_trial_args(path: Path) -> list[str]:
    """Trial arguments of a tiny budget: few images and threads, and TINY_EPOCHS where trials take --epochs."""
    args = ["--trial-arg=--max-train-samples=256", "--trial-arg=--val-fraction=0.02", "--trial-arg=--threads=1",
            "--trial-arg=--batch-size=64"]
    return args + ([f"--trial-arg=--epochs={TINY_EPOCHS}"] if "- --epochs=" in path.read_text() else [])


@pytest.mark.parametrize("path", CPU_EXAMPLES, ids=example_id)
def test_cpu_example_runs_locally_with_a_tiny_budget(path: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "katib_nas.cli", "run", str(with_tiny_search(path, tmp_path)),
                           "--workdir", str(workdir), "--max-trials", "1", "--parallel", "1", "--max-failed", "0",
                           *tiny_trial_args(path)],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    best = json.loads((workdir / "report" / "best_architecture.json").read_text())
    assert 0.0 <= float(best["metrics"]["Validation-Accuracy"]) <= 1.0
    decode(best["architecture"]["text"])


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_the_objective_is_the_trained_networks_last_report_and_the_ui_graph_keeps_one_scale(path: Path) -> None:
    """Katib's default strategy under maximize is the maximum over a trial's reports, for every metric: the
    best trial could be an epoch whose weights no trial kept, and Validation-Loss its worst epoch. Raw counts
    (params, flops: 10^4-10^9) on the trial page's one axis flatten the accuracy curve; mparams and gflops not."""
    objective = experiment_from_document(load_yaml(path)).objective
    assert objective.strategy("Validation-Accuracy") == objective.strategy("Validation-Loss") == "latest"
    assert not {"params", "flops"} & set(objective.metric_names)
