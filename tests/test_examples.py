"""Every examples/*.yaml is an Experiment Katib accepts and runs.

- Schema: Katib's Experiment as kubeflow-katib's typed models define it, unknown fields refused; the
  trial's batch/v1 Job from the kubernetes client's models, the structure Katib's webhook converts it into.
- Katib's admission webhook (pkg/webhook/v1beta1/experiment/validator/validator.go), after Katib's
  defaulting, rule by rule; each rule is shown to fire on a broken copy.
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
from katib_nas.pipelines.search_request import check_experiment, experiment_info
from katib_nas.runner.manifest import experiment_from_document
from katib_nas.suggestion.core.algorithms import get_algorithm

from .conftest import REPO, load_yaml, schema_errors

# The examples, plus the experiment `katib-nas demo` runs (it ships inside the package).
EXAMPLES = sorted((REPO / "examples").glob("*.yaml")) + [REPO / "runner" / "demo-experiment.yaml"]
TRIAL_IMAGES = ("docker.io/katibnas/trial-cpu:0.1.0", "docker.io/katibnas/trial-cuda:0.1.0")
PLACEHOLDER = re.compile(r"\$\{trialParameters\..+?\}")
META_REFERENCE = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(Labels|Annotations)\[.+\])\}$")
COLLECTORS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push")
KATIB_CONFIG_COLLECTORS = ("StdOut", "File", "TensorFlowEvent")
TWO_GROUPS = re.compile(r".*\(.*\).*\(.*\).*")


def example_id(path: Path) -> str:
    return path.stem


# --- schema -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_example_matches_katib_schema_with_unknown_fields_refused(path: Path, katib_schemas: dict[str, Any]) -> None:
    document = load_yaml(path)
    assert schema_errors(katib_schemas["experiment"], document) == []
    trial_spec = document["spec"]["trialTemplate"]["trialSpec"]
    assert (trial_spec["apiVersion"], trial_spec["kind"]) == ("batch/v1", "Job")
    assert schema_errors(katib_schemas["job"], trial_spec) == []


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

def registered_algorithms() -> set[str]:
    """Algorithms with a suggestion in the katib-config our manifests install (Katib's and ours)."""
    config = yaml.safe_load((REPO / "manifests" / "katib-config.yaml").read_text())
    return {s["algorithmName"] for s in config["runtime"]["suggestions"] if s.get("image", "").strip()}


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
    if spec.get("earlyStopping"):
        errors.append("spec.earlyStopping: no early stopping algorithm is used with NAS examples")
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


def trial_template_errors(spec: dict[str, Any]) -> list[str]:
    template = spec.get("trialTemplate")
    if not template:
        return ["spec.trialTemplate: must be specified"]
    errors = []
    if not template.get("primaryContainerName"):
        errors.append("spec.trialTemplate.primaryContainerName")
    trial_spec = template.get("trialSpec")
    is_job = bool(trial_spec) and trial_spec.get("kind") == "Job"  # Katib defaults the conditions of a Job
    if not is_job and not (template.get("successCondition") and template.get("failureCondition")):
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
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_webhook_checker_catches_each_rule(case: str) -> None:
    change, expected = BROKEN[case]
    errors = webhook_errors(_mutate(change))
    assert any(expected in error for error in errors), errors


# --- trialTemplate -> trial command ----------------------------------------------------------------------

def rendered_command(document: dict[str, Any], assignments: dict[str, str], trial: str) -> tuple[str, list[str]]:
    """Katib's substitution (plain text over the trialSpec), then the primary container as its shell runs it."""
    template = document["spec"]["trialTemplate"]
    text = json.dumps(template["trialSpec"])
    for parameter in template["trialParameters"]:
        meta = META_REFERENCE.match(parameter["reference"])
        value = trial if meta and meta.group(1) == "Name" else assignments[parameter["reference"]]
        text = text.replace("${trialParameters.%s}" % parameter["name"], value)
    pod = json.loads(text)["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == template["primaryContainerName"])
    argv = (container.get("command") or []) + (container.get("args") or [])
    return container["image"], shlex.split(" ".join(argv))  # the StdOut collector runs it with sh -c


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

CPU_EXAMPLES = [p for p in EXAMPLES if "trial-cpu" in p.read_text()]


@pytest.mark.parametrize("path", CPU_EXAMPLES, ids=example_id)
def test_cpu_example_runs_locally_with_a_tiny_budget(path: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "katib_nas.cli", "run", str(path), "--workdir",
                           str(workdir), "--max-trials", "1", "--parallel", "1", "--max-failed", "0",
                           "--trial-arg=--max-train-samples=256", "--trial-arg=--val-fraction=0.02",
                           "--trial-arg=--threads=1",
                           "--trial-arg=--batch-size=64"],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    best = json.loads((workdir / "report" / "best_architecture.json").read_text())
    assert 0.0 <= float(best["metrics"]["Validation-Accuracy"]) <= 1.0
    decode(best["architecture"]["text"])
