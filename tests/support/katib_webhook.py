"""Katib v0.19.0's admission webhook for a new Experiment, after Katib's defaulting, against the katib-config
a Katib install has after `katib-nas register`."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from katib_nas.deploy.katib_config import register, suggestion_entries

from ..conftest import KATIB_FIXTURES

PLACEHOLDER = re.compile(r"\$\{trialParameters\..+?\}")
COLLECTORS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push")
TWO_GROUPS = re.compile(r".*\(.*\).*\(.*\).*")


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
