"""Every examples/*.yaml is an Experiment Katib accepts and runs.

- Schema: Katib's v1beta1 OpenAPI definitions (../shared/katib/swagger.json) with unknown fields as
  errors; the Kubernetes types they reference (ObjectMeta, Container, and the trial's batch/v1 Job) come
  from the kubernetes client's models, the same structure Katib's webhook converts the Job into.
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

import jsonschema
import kubernetes.client
import pytest
import yaml

from katib_nas.pipelines.experiment import check_experiment, experiment_info
from katib_nas.suggestion.cli import build_parser
from katib_nas.suggestion.core.algorithms import get_algorithm
from katib_nas.suggestion.core.codec import decode
from katib_nas.suggestion.local.manifest import experiment_from_document

from .conftest import KATIB_REFERENCE, REPO, load_yaml

# The examples, plus the experiment `katib-nas demo` runs (it ships inside the package).
EXAMPLES = sorted((REPO / "examples").glob("*.yaml")) + [REPO / "suggestion" / "local" / "demo-experiment.yaml"]
TRIAL_IMAGES = ("docker.io/katibnas/trial-cpu:0.1.0", "docker.io/katibnas/trial-cuda:0.1.0")
PLACEHOLDER = re.compile(r"\$\{trialParameters\..+?\}")
META_REFERENCE = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|(Labels|Annotations)\[.+\])\}$")
COLLECTORS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push")
KATIB_CONFIG_COLLECTORS = ("StdOut", "File", "TensorFlowEvent")
TWO_GROUPS = re.compile(r".*\(.*\).*\(.*\).*")
QUANTITY = {"type": ["string", "number"]}


def example_id(path: Path) -> str:
    return path.stem


# --- schema -------------------------------------------------------------------------------------------

def kubernetes_schema(type_name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    """JSON schema of a kubernetes client type (e.g. 'V1Job', 'list[V1Container]'); unknown keys are errors."""
    simple = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
              "bool": {"type": "boolean"}, "datetime": {"type": "string"}, "date": {"type": "string"},
              "object": {}}
    if type_name in simple:
        return simple[type_name]
    if type_name.startswith("list["):
        return {"type": "array", "items": kubernetes_schema(type_name[5:-1], definitions)}
    if type_name.startswith("dict("):
        value = type_name[5:-1].split(", ", 1)[1]
        return {"type": "object", "additionalProperties": kubernetes_schema(value, definitions)}
    if type_name not in definitions:
        model = getattr(kubernetes.client, type_name)
        definitions[type_name] = {}  # reserve the name before recursing (types refer to themselves)
        definitions[type_name] = {
            "type": "object", "additionalProperties": False,
            "properties": {model.attribute_map[attr]: kubernetes_schema(kind, definitions)
                           for attr, kind in model.openapi_types.items()}}
        if type_name == "V1ResourceRequirements":  # a Quantity is a string or a number in JSON
            for key in ("limits", "requests"):
                definitions[type_name]["properties"][key]["additionalProperties"] = QUANTITY
    return {"$ref": f"#/definitions/{type_name}"}


def strict(node: Any) -> Any:
    """The swagger definitions with every object that lists its properties closed to other keys."""
    if isinstance(node, dict):
        result = {k: strict(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if "properties" in result and "additionalProperties" not in result:
            result["additionalProperties"] = False
        return result
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


@pytest.fixture(scope="module")
def experiment_validator() -> jsonschema.Draft4Validator:
    swagger = json.loads((KATIB_REFERENCE / "swagger.json").read_text())
    definitions = strict(swagger["definitions"])
    for name, type_name in {"v1.ObjectMeta": "V1ObjectMeta", "v1.ListMeta": "V1ListMeta",
                            "v1.Container": "V1Container", "v1.HTTPGetAction": "V1HTTPGetAction"}.items():
        definitions[name] = kubernetes_schema(type_name, definitions)
    definitions["v1.Time"] = {"type": "string"}
    definitions["v1.unstructured.Unstructured"] = {"type": "object"}  # the trialSpec: checked as a Job below
    schema = {"$ref": "#/definitions/v1beta1.Experiment", "definitions": definitions}
    return jsonschema.Draft4Validator(schema)


@pytest.fixture(scope="module")
def job_validator() -> jsonschema.Draft4Validator:
    definitions: dict[str, Any] = {}
    root = kubernetes_schema("V1Job", definitions)
    return jsonschema.Draft4Validator({**root, "definitions": definitions})


def schema_errors(validator: jsonschema.Draft4Validator, document: Any) -> list[str]:
    return [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("path", EXAMPLES, ids=example_id)
def test_example_matches_katib_openapi_with_unknown_fields_refused(path: Path, experiment_validator: Any,
                                                                  job_validator: Any) -> None:
    document = load_yaml(path)
    assert schema_errors(experiment_validator, document) == []
    trial_spec = document["spec"]["trialTemplate"]["trialSpec"]
    assert (trial_spec["apiVersion"], trial_spec["kind"]) == ("batch/v1", "Job")
    assert schema_errors(job_validator, trial_spec) == []


def test_schema_refuses_unknown_and_mistyped_fields(experiment_validator: Any, job_validator: Any) -> None:
    document = load_yaml(EXAMPLES[0])
    broken = copy.deepcopy(document)
    broken["spec"]["objective"]["objectiveMetricNmae"] = "typo"
    broken["spec"]["maxTrialCount"] = "twelve"
    errors = schema_errors(experiment_validator, broken)
    assert any("objectiveMetricNmae" in e for e in errors) and any("maxTrialCount" in e for e in errors)
    job = copy.deepcopy(document["spec"]["trialTemplate"]["trialSpec"])
    job["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    assert any("comand" in e for e in schema_errors(job_validator, job))


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
    done = subprocess.run([sys.executable, "-m", "katib_nas.suggestion.cli", "run", str(path), "--workdir",
                           str(workdir), "--max-trials", "1", "--parallel", "1", "--max-failed", "0",
                           "--trial-arg=--max-train-samples=256", "--trial-arg=--val-fraction=0.02",
                           "--trial-arg=--threads=1",
                           "--trial-arg=--batch-size=64"],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    best = json.loads((workdir / "report" / "best_architecture.json").read_text())
    assert 0.0 <= float(best["metrics"]["Validation-Accuracy"]) <= 1.0
    decode(best["architecture"]["text"])
