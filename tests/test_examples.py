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
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from katib_nas.cli.main import build_parser
from katib_nas.contract.codec import decode
from katib_nas.deploy.images import TRIAL_CPU_IMAGE, TRIAL_CUDA_IMAGE
from katib_nas.deploy.katib_config import register, suggestion_entries
from katib_nas.pipelines.search_request import check_experiment, experiment_info
from katib_nas.runner.manifest import experiment_from_document
from katib_nas.suggestion.core.algorithms import get_algorithm

from .conftest import KATIB_FIXTURES, REPO, load_yaml, schema_errors, trial_containers, trial_pod_templates

# The examples, plus the experiment `katib-nas demo` runs (it ships inside the package).
EXAMPLES = sorted((REPO / "examples").glob("*.yaml")) + [REPO / "runner" / "demo-experiment.yaml"]
TRIAL_IMAGES = (TRIAL_CPU_IMAGE, TRIAL_CUDA_IMAGE)
PLACEHOLDER = re.compile(r"\$\{trialParameters\..+?\}")
META_REFERENCE = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(Labels|Annotations)\[.+\])\}$")
COLLECTORS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push")
KATIB_CONFIG_COLLECTORS = ("StdOut", "File", "TensorFlowEvent")
TWO_GROUPS = re.compile(r".*\(.*\).*\(.*\).*")


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

def registered_config() -> dict[str, Any]:
    """Katib v0.19.0's katib-config after `katib-nas register`."""
    stock = (KATIB_FIXTURES / "katib-config-v0.19.0-standalone.yaml").read_text()
    return yaml.safe_load(register(stock, suggestion_entries()).text)


def registered_algorithms() -> set[str]:
    """Algorithms with a suggestion in the registered katib-config (Katib's and ours)."""
    return {s["algorithmName"] for s in registered_config()["runtime"]["suggestions"] if s.get("image", "").strip()}


def early_stopping_algorithms() -> set[str]:
    return {s["algorithmName"] for s in registered_config()["runtime"]["earlyStoppings"] if s.get("image", "").strip()}


def medianstop_errors(settings: list[dict[str, Any]]) -> list[str]:
    """Katib's medianstop service (pkg/earlystopping/v1beta1/medianstop/service.py) on the settings."""
    errors = []
    for setting in settings:
        name, value = setting.get("name"), setting.get("value")
        try:
            if name == "min_trials_required" and not int(value) > 0:
                errors.append("min_trials_required must be greater than zero (>0)")
            elif name == "start_step" and not int(value) >= 1:
                errors.append("start_step must be greater or equal than one (>=1)")
            elif name not in ("min_trials_required", "start_step"):
                errors.append(f"unknown setting {name} for algorithm medianstop")
        except (TypeError, ValueError):
            errors.append(f"failed to validate {name}({value})")
    return errors


def early_stopping_errors(early: dict[str, Any] | None) -> list[str]:
    if early is None:
        return []
    name = early.get("algorithmName", "")
    errors = [] if name else ["spec.earlyStopping.algorithmName: must be specified"]
    if name not in early_stopping_algorithms():
        return errors + ["spec.earlyStopping.algorithmName: unable to get EarlyStopping config data"]
    return errors + [f"spec.earlyStopping: {e}" for e in medianstop_errors(early.get("algorithmSettings") or [])]


def webhook_errors(document: dict[str, Any]) -> list[str]:
    """What validator.go's ValidateExperiment reports for a new Experiment, after Katib's defaults."""
    errors: list[str] = []
    name = (document.get("metadata") or {}).get("name", "")
    if not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 40:
        errors.append("metadata.name")
    spec = document.get("spec") or {}
    errors += budget_errors(spec)
    objective = spec.get("objective")
    if not objective:
        return errors + ["spec.objective: must be specified"]
    if objective.get("type") not in ("minimize", "maximize"):
        errors.append("spec.objective.type")
    if not objective.get("objectiveMetricName"):
        errors.append("spec.objective.objectiveMetricName")
    elif objective["objectiveMetricName"] in (objective.get("additionalMetricNames") or []):
        errors.append("spec.objective.additionalMetricNames")
    algorithm = (spec.get("algorithm") or {}).get("algorithmName", "")
    if algorithm not in registered_algorithms():
        errors.append("spec.algorithm.algorithmName: unable to get Suggestion config data")
    errors += early_stopping_errors(spec.get("earlyStopping"))
    if spec.get("resumePolicy", "") not in ("", "Never", "LongRunning", "FromVolume"):
        errors.append("spec.resumePolicy")
    errors += trial_template_errors(spec)
    if bool(spec.get("parameters")) == (spec.get("nasConfig") is not None):
        errors.append("spec: exactly one of spec.parameters and spec.nasConfig")
    errors += collector_errors(spec.get("metricsCollectorSpec") or {})
    return errors


def budget_errors(spec: dict[str, Any]) -> list[str]:
    errors = []
    counts = {key: spec.get(key) for key in ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount")}
    counts["parallelTrialCount"] = 3 if counts["parallelTrialCount"] is None else counts["parallelTrialCount"]
    if counts["maxFailedTrialCount"] is not None and counts["maxFailedTrialCount"] < 0:
        errors.append("spec.maxFailedTrialCount")
    for key in ("maxTrialCount", "parallelTrialCount"):
        if counts[key] is not None and counts[key] <= 0:
            errors.append(f"spec.{key}")
    for key in ("maxFailedTrialCount", "parallelTrialCount"):
        if None not in (counts[key], counts["maxTrialCount"]) and counts[key] > counts["maxTrialCount"]:
            errors.append(f"spec.{key}: more than spec.maxTrialCount")
    return errors


#: Katib v0.19.0's setDefaultTrialTemplate: success and failure conditions (and, for the Kubeflow kinds, the
#: primary pod's labels) it fills in when a trialTemplate leaves them out.
JOB_CONDITIONS = ('status.conditions.#(type=="Complete")#|#(status=="True")#',
                  'status.conditions.#(type=="Failed")#|#(status=="True")#')
KUBEFLOW_DEFAULTS = {
    "TrainJob": (JOB_CONDITIONS, {"jobset.sigs.k8s.io/replicatedjob-name": "node",
                                  "batch.kubernetes.io/job-completion-index": "0"}),
    **{kind: (('status.conditions.#(type=="Succeeded")#|#(status=="True")#', JOB_CONDITIONS[1]),
              {"training.kubeflow.org/job-role": "master"}) for kind in ("TFJob", "PyTorchJob", "XGBoostJob",
                                                                         "MPIJob")},
}


def katib_defaults(template: dict[str, Any]) -> dict[str, Any]:
    """The trialTemplate as Katib's defaulting leaves it before its webhook validates it."""
    kind = (template.get("trialSpec") or {}).get("kind")
    if kind == "Job":
        conditions, labels = JOB_CONDITIONS, None
    elif kind in KUBEFLOW_DEFAULTS:
        conditions, labels = KUBEFLOW_DEFAULTS[kind]
    else:
        return template
    defaulted = {**template, "successCondition": template.get("successCondition") or conditions[0],
                 "failureCondition": template.get("failureCondition") or conditions[1]}
    if labels is not None:
        defaulted["primaryPodLabels"] = template.get("primaryPodLabels") or labels
    return defaulted


def trial_template_errors(spec: dict[str, Any]) -> list[str]:
    template = spec.get("trialTemplate")
    if not template:
        return ["spec.trialTemplate: must be specified"]
    template = katib_defaults(template)
    errors = []
    if not template.get("primaryContainerName"):
        errors.append("spec.trialTemplate.primaryContainerName")
    trial_spec = template.get("trialSpec")
    if not (template.get("successCondition") and template.get("failureCondition")):
        errors.append("spec.trialTemplate: successCondition and failureCondition")
    if template.get("trialParameters") is None:
        return errors + ["spec.trialTemplate.trialParameters: must be specified"]
    if bool(trial_spec) == bool(template.get("configMap")):
        return errors + ["spec.trialTemplate: exactly one of trialSpec and configMap"]
    text = json.dumps(trial_spec)
    names: set[str] = set()
    references: set[str] = set()
    for index, parameter in enumerate(template["trialParameters"]):
        name, reference = parameter.get("name", ""), parameter.get("reference", "")
        if not name or not reference or "{" in name or "}" in name:
            errors.append(f"spec.trialTemplate.trialParameters[{index}]: name and reference")
            continue
        if name in names or reference in references:
            errors.append(f"spec.trialTemplate.trialParameters[{index}]: duplicated")
            continue
        names.add(name)
        references.add(reference)
        placeholder = "${trialParameters.%s}" % name
        if placeholder not in text:
            return errors + [f"spec.trialTemplate.trialParameters[{index}].name: not found in trialTemplate"]
        text = text.replace(placeholder, "test-value")
    if PLACEHOLDER.search(text):
        errors.append("spec.trialTemplate: parameters not found in spec.trialParameters")
    run_spec = json.loads(text)
    if {"name", "namespace"} & set(run_spec.get("metadata") or {}):
        errors.append("spec.trialTemplate: metadata.name and metadata.namespace must be omitted")
    if not run_spec.get("apiVersion") or not run_spec.get("kind"):
        errors.append("spec.trialTemplate: APIVersion and Kind")
    return errors


def collector_errors(collector_spec: dict[str, Any]) -> list[str]:
    errors = []
    kind = (collector_spec.get("collector") or {}).get("kind", "StdOut")
    source = collector_spec.get("source") or {}
    if kind not in COLLECTORS:
        errors.append("spec.metricsCollectorSpec.collector.kind: invalid")
    if kind == "File":
        path = (source.get("fileSystemPath") or {}).get("path", "/var/log/katib/metrics.log")
        if not path.startswith("/"):
            errors.append("spec.metricsCollectorSpec.source.fileSystemPath.path")
    for pattern in (source.get("filter") or {}).get("metricsFormat") or []:
        try:
            re.compile(pattern)
        except re.error:
            errors.append(f"metricsFormat {pattern!r}: does not compile")
            continue
        if not TWO_GROUPS.match(pattern):
            errors.append(f"metricsFormat {pattern!r}: two top subexpressions are required")
    return errors


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_example_passes_katib_admission_webhook(path: Path) -> None:
    assert webhook_errors(load_yaml(path)) == []


#: Kubeflow Trainer v2.1.0's reserved torchrun variables (pkg/constants: TorchRunReservedEnvNames).
TORCHRUN_RESERVED = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}


def trainjob_errors(trial_spec: dict[str, Any], trial_name: str) -> list[str]:
    """Kubeflow Trainer v2.1.0's TrainJob CRD validation rules and its torch plugin's Validate."""
    errors = []
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", trial_name) or len(trial_name) > 63:
        errors.append("metadata.name must match RFC 1035 DNS label format")
    if not (trial_spec["spec"].get("runtimeRef") or {}).get("name"):
        errors.append("spec.runtimeRef.name: must be specified")
    trainer = trial_spec["spec"].get("trainer") or {}
    procs = trainer.get("numProcPerNode")
    if isinstance(procs, str) and procs not in ("auto", "cpu", "gpu"):
        errors.append("spec.trainer.numProcPerNode: must have an int value or [auto cpu gpu]")
    if isinstance(trainer.get("numNodes"), int) and trainer["numNodes"] < 1:
        errors.append("spec.trainer.numNodes: must be at least 1")
    reserved = sorted({e["name"] for e in trainer.get("env") or []} & TORCHRUN_RESERVED)
    if reserved:
        errors.append(f"spec.trainer.env: must not have reserved envs, invalid envs configured: {reserved}")
    return errors


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
        assert template["trialSpec"]["spec"]["runtimeRef"] == {"name": "torch-distributed"}
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

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Kubernetes' restricted Pod Security Standard (v1.25+) for a pod spec, plus a read-only root."""
    spec, problems = pod["spec"], []
    pod_context = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(flag)
    problems += [f"volume {v['name']}" for v in spec.get("volumes") or [] if not set(v) - {"name"} <= RESTRICTED_VOLUMES]
    for container in spec["containers"] + (spec.get("initContainers") or []):
        context, name = container.get("securityContext") or {}, container["name"]
        capabilities = context.get("capabilities") or {}
        checks = {
            "privileged": not context.get("privileged"),
            "allowPrivilegeEscalation: false": context.get("allowPrivilegeEscalation") is False,
            "capabilities drop ALL": "ALL" in (capabilities.get("drop") or []),
            "capabilities add": set(capabilities.get("add") or []) <= {"NET_BIND_SERVICE"},
            "runAsNonRoot": context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True,
            "runAsUser 0": context.get("runAsUser", pod_context.get("runAsUser")) != 0,
            "seccompProfile": ((context.get("seccompProfile") or pod_context.get("seccompProfile") or {})
                               .get("type") in ("RuntimeDefault", "Localhost")),
            "readOnlyRootFilesystem": context.get("readOnlyRootFilesystem") is True,
        }
        problems += [f"{name}: {check}" for check, ok in checks.items() if not ok]
    return problems


WITH_POD_TEMPLATES = [p for p in sorted((REPO / "examples").glob("*.yaml"))
                      if trial_pod_templates(load_yaml(p)["spec"]["trialTemplate"]["trialSpec"])]


def test_only_the_trainjob_example_has_no_pod_template() -> None:
    """A TrainJob's pods come from its training runtime (torch-distributed): there is no pod to secure here."""
    without = sorted(set(sorted((REPO / "examples").glob("*.yaml"))) - set(WITH_POD_TEMPLATES))
    assert [p.stem for p in without] == ["nas-random-fashion-mnist-trainjob"]


@pytest.mark.parametrize("path", WITH_POD_TEMPLATES, ids=example_id)
def test_trial_pod_meets_restricted_pod_security_with_scratch_space(path: Path) -> None:
    for where, pod in trial_pod_templates(load_yaml(path)["spec"]["trialTemplate"]["trialSpec"]).items():
        assert restricted_violations(pod) == [], where
        assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        scratch = {v["name"] for v in pod["spec"]["volumes"] if "emptyDir" in v}
        [container] = pod["spec"]["containers"]
        assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] in scratch} == {"/tmp"}


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

def rendered_trial_spec(document: dict[str, Any], assignments: dict[str, str], trial: str) -> dict[str, Any]:
    """Katib's substitution: plain text over the trialSpec."""
    template = document["spec"]["trialTemplate"]
    text = json.dumps(template["trialSpec"])
    for parameter in template["trialParameters"]:
        meta = META_REFERENCE.match(parameter["reference"])
        value = trial if meta and meta.group(1) == "Name" else assignments[parameter["reference"]]
        text = text.replace("${trialParameters.%s}" % parameter["name"], value)
    return json.loads(text)


def rendered_command(document: dict[str, Any], assignments: dict[str, str], trial: str) -> tuple[str, list[str]]:
    """Katib's substitution, then the primary container as its shell runs it."""
    template = document["spec"]["trialTemplate"]
    containers = trial_containers(rendered_trial_spec(document, assignments, trial))
    container = next(c for c in containers if c["name"] == template["primaryContainerName"])
    argv = shlex.split(" ".join((container.get("command") or []) + (container.get("args") or [])))
    if argv[:2] == ["torchrun", "--no-python"]:  # torchrun starts the program as it is, once per process
        argv = argv[2:]
    return container["image"], argv  # the StdOut collector runs the command with sh -c


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
