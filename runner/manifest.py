"""Read a Katib Experiment YAML, check it as Katib's admission webhook would, and apply Katib's defaults.

The result is a typed, immutable `ExperimentSpec`. Every problem is an
`ExperimentError` naming the field (``spec.maxTrialCount``) and what it must be.
Parts Katib supports but a single machine cannot run (image entrypoints,
Push or Prometheus collectors) are refused with a line that says so, rather
than ignored. Early stopping runs locally with Katib's medianstop settings
(checked as Katib's medianstop service checks them).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.kubernetes_names import is_dns1123_label

from .metrics_collector import MetricsError, compile_regex, too_few_groups
from .paths import EXPERIMENT_NAME_MAX_LENGTH, has_backsteps, is_experiment_name

API_VERSION = "kubeflow.org/v1beta1"
DEFAULT_PARALLEL = 3  # Katib's DefaultTrialParallelCount
DEFAULT_NAMESPACE = "default"
DEFAULT_FILE_PATH = "/var/log/katib/metrics.log"
STRATEGIES = ("min", "max", "latest")
COLLECTORS_LOCAL = ("StdOut", "File")
#: Trial kinds whose success and failure conditions Katib sets when the Experiment leaves them out (a Job and
#: KubeflowJobKinds, experiment_defaults.go setDefaultTrialTemplate).
CONDITIONS_DEFAULTED = ("Job", "TFJob", "PyTorchJob", "XGBoostJob", "MPIJob", "TrainJob")
#: Katib's default port of a PrometheusMetric collector's source (common.DefaultPrometheusPort).
PROMETHEUS_PORT = 8080
COLLECTORS_KATIB = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push")
PARAM_PLACEHOLDER = "${trialParameters.%s}"
PLACEHOLDER_PATTERN = re.compile(r"\$\{trialParameters\..+?\}")
META_PATTERN = re.compile(r"\$\{trialSpec\.(.+?)\}")
META_INDEX_PATTERN = re.compile(r"(.+)\[(.+)]")
META_KEYS = ("Name", "Namespace", "Kind", "APIVersion", "Annotations", "Labels")
TWO_GROUPS = re.compile(r".*\(.*\).*\(.*\).*")
MEDIANSTOP = "medianstop"


class ExperimentError(InvalidInput):
    """An Experiment document that Katib would reject or that cannot run locally."""


@dataclass(frozen=True)
class Objective:
    """spec.objective with Katib's default metric strategies filled in."""

    type: str
    metric: str
    additional: tuple[str, ...] = ()
    goal: float | None = None
    strategies: tuple[tuple[str, str], ...] = ()

    @property
    def maximize(self) -> bool:
        return self.type == "maximize"

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Objective first, as Katib's collector expects."""
        return (self.metric,) + self.additional

    def strategy(self, name: str) -> str:
        return dict(self.strategies).get(name, "")


@dataclass(frozen=True)
class Collector:
    """spec.metricsCollectorSpec, defaulted: kind, file path and format, metricsFormat regexes."""

    kind: str = "StdOut"
    path: str = ""
    format: str = "TEXT"
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class MedianStop:
    """spec.earlyStopping with Katib's medianstop defaults: once `min_trials_required` trials succeeded, a
    trial whose best objective after `start_step` reports is worse than theirs is stopped."""

    min_trials_required: int = 3
    start_step: int = 4


@dataclass(frozen=True)
class TrialParameter:
    name: str
    reference: str
    description: str = ""


@dataclass(frozen=True)
class TrialTemplate:
    primary_container: str
    parameters: tuple[TrialParameter, ...]
    spec: dict[str, Any]


@dataclass(frozen=True)
class ExperimentSpec:
    """Everything the runner needs from one Experiment, after Katib's defaults."""

    name: str
    namespace: str
    objective: Objective
    algorithm: str
    algorithm_settings: tuple[tuple[str, str], ...]
    nas_config: dict[str, Any]
    parameters: tuple[dict[str, Any], ...]
    parallel_trial_count: int
    max_trial_count: int | None
    max_failed_trial_count: int | None
    collector: Collector
    template: TrialTemplate
    document: dict[str, Any]
    early_stopping: MedianStop | None = None

    def with_budget(self, max_trials: int | None = None, parallel: int | None = None,
                    max_failed: int | None = None) -> "ExperimentSpec":
        """The same experiment with the only fields Katib lets a user edit after creation replaced."""
        spec = dataclasses.replace(
            self,
            max_trial_count=self.max_trial_count if max_trials is None else max_trials,
            parallel_trial_count=self.parallel_trial_count if parallel is None else parallel,
            max_failed_trial_count=self.max_failed_trial_count if max_failed is None else max_failed,
        )
        _check_budget(spec.max_trial_count, spec.parallel_trial_count, spec.max_failed_trial_count)
        return spec

    def fitted_budget(self, max_trials: int | None = None, parallel: int | None = None,
                      max_failed: int | None = None) -> tuple["ExperimentSpec", tuple[str, ...]]:
        """`with_budget`, except that a parallelTrialCount or maxFailedTrialCount the caller leaves as it is
        (None) is lowered to maxTrialCount when above it. Returns the spec and one note per lowered field."""
        limit = self.max_trial_count if max_trials is None else max_trials
        notes: list[str] = []
        if limit is not None and limit > 0:
            if parallel is None and self.parallel_trial_count > limit:
                notes.append(_lowered("parallelTrialCount", self.parallel_trial_count, limit))
                parallel = limit
            if max_failed is None and self.max_failed_trial_count is not None and self.max_failed_trial_count > limit:
                notes.append(_lowered("maxFailedTrialCount", self.max_failed_trial_count, limit))
                max_failed = limit
        return self.with_budget(max_trials, parallel, max_failed), tuple(notes)

    def identity(self) -> dict[str, Any]:
        """The document without the editable budget fields: what must not change on resume."""
        spec = {k: v for k, v in self.document.get("spec", {}).items()
                if k not in ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount")}
        return {"name": self.name, "namespace": self.namespace, "spec": spec}


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Parse and check the Experiment in a YAML file (one Experiment document)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ExperimentError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ExperimentError(f"{path} is not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start}; save "
                              "the Experiment as UTF-8") from None
    return parse_experiment(text, str(path))


def parse_experiment(text: str, source: str = "<experiment>") -> ExperimentSpec:
    """Parse and check Experiment YAML text."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ExperimentError(f"{source} is not valid YAML{where}: {problem}") from None
    experiments = [d for d in documents if _is_experiment(d)]
    if not experiments:
        raise ExperimentError(f"{source} is not a Katib Experiment: {_describe(documents)}; "
                              f"expected apiVersion: {API_VERSION} and kind: Experiment")
    if len(experiments) > 1:
        raise ExperimentError(f"{source} holds {len(experiments)} Experiments; pass a file with exactly one")
    return experiment_from_document(experiments[0])


def experiment_from_document(document: dict[str, Any]) -> ExperimentSpec:
    """Check an Experiment document (already parsed) and build its spec."""
    metadata = _mapping(document.get("metadata"), "metadata")
    name = _string(metadata.get("name"), "metadata.name", required=True)
    if not is_experiment_name(name):
        raise ExperimentError(f"metadata.name {name[:80]!r} must be lower case letters, digits and '-', start with a "
                              f"letter, end with a letter or digit, and be at most {EXPERIMENT_NAME_MAX_LENGTH} "
                              "characters (Kubernetes' DNS-1123 label, as Katib requires)")
    namespace = _string(metadata.get("namespace"), "metadata.namespace") or DEFAULT_NAMESPACE
    if not is_dns1123_label(namespace):
        raise ExperimentError(f"metadata.namespace {namespace[:80]!r} must be a Kubernetes DNS-1123 label: lower "
                              "case letters, digits and '-', at most 63 characters")
    spec = _mapping(document.get("spec"), "spec", required=True)
    parallel = _int(spec.get("parallelTrialCount"), "spec.parallelTrialCount")
    max_trials = _int(spec.get("maxTrialCount"), "spec.maxTrialCount")
    max_failed = _int(spec.get("maxFailedTrialCount"), "spec.maxFailedTrialCount")
    parallel = DEFAULT_PARALLEL if parallel is None else parallel
    _check_budget(max_trials, parallel, max_failed)
    objective = _objective(spec.get("objective"))
    algorithm, settings = _algorithm(spec.get("algorithm"))
    early_stopping = _early_stopping(spec.get("earlyStopping"))
    _resume_policy(spec.get("resumePolicy"))
    parameters = tuple(_list(spec.get("parameters"), "spec.parameters"))
    nas_config = _nas_config(spec.get("nasConfig"), bool(parameters))
    template = _trial_template(spec.get("trialTemplate"), parameters)
    collector = _collector(spec.get("metricsCollectorSpec"))
    return ExperimentSpec(name, namespace, objective, algorithm, settings, nas_config, parameters, parallel,
                          max_trials, max_failed, collector, template, document, early_stopping)


def check_runs_locally(spec: ExperimentSpec) -> None:
    """ExperimentError for what Katib runs but the local runner cannot: a collector other than StdOut and File."""
    if spec.collector.kind not in COLLECTORS_LOCAL:
        raise ExperimentError(f"spec.metricsCollectorSpec.collector.kind {spec.collector.kind} cannot run locally; "
                              f"the local runner collects {' and '.join(COLLECTORS_LOCAL)} metrics")


def _is_experiment(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == "Experiment" \
        and document.get("apiVersion") == API_VERSION


def _describe(documents: list[Any]) -> str:
    if not documents:
        return "the file is empty"
    first = documents[0]
    if not isinstance(first, dict):
        return f"it holds a YAML {type(first).__name__}, not a mapping"
    return f"found apiVersion {first.get('apiVersion')!r} and kind {first.get('kind')!r}"


def _check_budget(max_trials: int | None, parallel: int, max_failed: int | None) -> None:
    if max_failed is not None and max_failed < 0:
        raise ExperimentError(f"spec.maxFailedTrialCount={max_failed} must not be less than 0")
    if max_trials is not None and max_trials <= 0:
        raise ExperimentError(f"spec.maxTrialCount={max_trials} must be greater than 0")
    if parallel <= 0:
        raise ExperimentError(f"spec.parallelTrialCount={parallel} must be greater than 0")
    if max_failed is not None and max_trials is not None and max_failed > max_trials:
        raise ExperimentError(f"spec.maxFailedTrialCount={max_failed} must be at most spec.maxTrialCount={max_trials} "
                              "(lower it with --max-failed)")
    if max_trials is not None and parallel > max_trials:
        raise ExperimentError(f"spec.parallelTrialCount={parallel} must be at most spec.maxTrialCount={max_trials} "
                              "(lower it with --parallel)")


def _lowered(field: str, value: int, limit: int) -> str:
    return f"spec.{field} lowered from {value} to {limit}, the maximum number of trials"


def _early_stopping(raw: Any) -> MedianStop | None:
    """spec.earlyStopping, checked as Katib's webhook and its medianstop service check it."""
    if raw is None:
        return None
    where = "spec.earlyStopping"
    early = _mapping(raw, where, required=True)
    name = _string(early.get("algorithmName"), f"{where}.algorithmName", required=True)
    if name != MEDIANSTOP:
        raise ExperimentError(f"{where}.algorithmName {name!r} is not an early stopping algorithm Katib ships; "
                              f"use {MEDIANSTOP}")
    values: dict[str, int] = {}
    for i, item in enumerate(_list(early.get("algorithmSettings"), f"{where}.algorithmSettings")):
        entry = _mapping(item, f"{where}.algorithmSettings[{i}]", required=True)
        setting = _string(entry.get("name"), f"{where}.algorithmSettings[{i}].name", required=True)
        values[setting] = _medianstop_setting(setting, _string(entry.get("value"), f"{where}.algorithmSettings[{i}]"
                                                               ".value"))
    return MedianStop(**values)


def _medianstop_setting(name: str, text: str) -> int:
    """One medianstop setting: min_trials_required > 0, start_step >= 1 (Katib's medianstop service rules)."""
    lowest = {"min_trials_required": 1, "start_step": 1}
    if name not in lowest:
        raise ExperimentError(f"spec.earlyStopping: unknown setting {name!r} for medianstop; settings: "
                              f"{', '.join(lowest)}")
    try:
        value = int(text)
    except ValueError:
        raise ExperimentError(f"spec.earlyStopping: {name} must be a whole number, got {text!r}") from None
    if value < lowest[name]:
        raise ExperimentError(f"spec.earlyStopping: {name} must be at least {lowest[name]}, got {value}")
    return value


def objective_from_document(document: dict[str, Any]) -> Objective:
    """An Experiment's spec.objective with Katib's default strategies, checked alone (for reading an Experiment
    that runs elsewhere, whose other parts this machine need not be able to run)."""
    return _objective(_mapping(_mapping(document, "experiment").get("spec"), "spec", required=True).get("objective"))


def _objective(raw: Any) -> Objective:
    objective = _mapping(raw, "spec.objective", required=True)
    kind = _string(objective.get("type"), "spec.objective.type")
    if kind not in ("minimize", "maximize"):
        raise ExperimentError(f"spec.objective.type {kind!r} must be minimize or maximize")
    metric = _string(objective.get("objectiveMetricName"), "spec.objective.objectiveMetricName", required=True)
    additional = tuple(_string(v, f"spec.objective.additionalMetricNames[{i}]", required=True)
                       for i, v in enumerate(_list(objective.get("additionalMetricNames"),
                                                   "spec.objective.additionalMetricNames")))
    if metric in additional:
        raise ExperimentError("spec.objective.additionalMetricNames must not contain the objectiveMetricName "
                              f"{metric!r}")
    goal = objective.get("goal")
    if goal is not None and (isinstance(goal, bool) or not isinstance(goal, (int, float))):
        raise ExperimentError(f"spec.objective.goal must be a number, got {goal!r}")
    if goal is not None and not _finite(goal):  # YAML's .nan and .inf: Katib's JSON cannot carry them
        raise ExperimentError(f"spec.objective.goal must be a finite number, got {goal!r:.40}")
    strategies: dict[str, str] = {}
    for i, item in enumerate(_list(objective.get("metricStrategies"), "spec.objective.metricStrategies")):
        where = f"spec.objective.metricStrategies[{i}]"
        entry = _mapping(item, where, required=True)
        strategy = _string(entry.get("value"), f"{where}.value")
        if strategy not in STRATEGIES:
            raise ExperimentError(f"{where}.value {strategy!r} must be one of {', '.join(STRATEGIES)}")
        strategies[_string(entry.get("name"), f"{where}.name", required=True)] = strategy
    default = "max" if kind == "maximize" else "min"  # Katib's SetDefault, for objective and additional metrics
    for name in (metric,) + additional:
        strategies.setdefault(name, default)
    return Objective(kind, metric, additional, None if goal is None else float(goal), tuple(strategies.items()))


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer beyond every float
        return False


def _algorithm(raw: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    algorithm = _mapping(raw, "spec.algorithm", required=True)
    name = _string(algorithm.get("algorithmName"), "spec.algorithm.algorithmName", required=True)
    settings = []
    for i, item in enumerate(_list(algorithm.get("algorithmSettings"), "spec.algorithm.algorithmSettings")):
        where = f"spec.algorithm.algorithmSettings[{i}]"
        entry = _mapping(item, where, required=True)
        settings.append((_string(entry.get("name"), f"{where}.name", required=True),
                         _string(entry.get("value"), f"{where}.value")))
    return name, tuple(settings)


def _resume_policy(raw: Any) -> None:
    policy = _string(raw, "spec.resumePolicy")
    if policy not in ("", "Never", "LongRunning", "FromVolume"):
        raise ExperimentError(f"spec.resumePolicy {policy!r} must be Never, LongRunning or FromVolume")


def _nas_config(raw: Any, has_parameters: bool) -> dict[str, Any]:
    if raw is None:
        if has_parameters:
            raise ExperimentError("spec.nasConfig is missing: katib-nas algorithms search architectures; "
                                  "spec.parameters alone describes a hyperparameter search")
        raise ExperimentError("spec.nasConfig is missing: a NAS Experiment needs spec.nasConfig "
                              "(graphConfig and operations)")
    if has_parameters:
        raise ExperimentError("only one of spec.parameters and spec.nasConfig can be specified")
    nas = _mapping(raw, "spec.nasConfig", required=True)
    graph = _mapping(nas.get("graphConfig"), "spec.nasConfig.graphConfig")
    _int(graph.get("numLayers"), "spec.nasConfig.graphConfig.numLayers")
    for key in ("inputSizes", "outputSizes"):
        for i, value in enumerate(_list(graph.get(key), f"spec.nasConfig.graphConfig.{key}")):
            _int(value, f"spec.nasConfig.graphConfig.{key}[{i}]")
    for i, operation in enumerate(_list(nas.get("operations"), "spec.nasConfig.operations")):
        where = f"spec.nasConfig.operations[{i}]"
        entry = _mapping(operation, where, required=True)
        _string(entry.get("operationType"), f"{where}.operationType")
        for j, parameter in enumerate(_list(entry.get("parameters"), f"{where}.parameters")):
            _parameter(parameter, f"{where}.parameters[{j}]")
    return nas


def _parameter(raw: Any, where: str) -> None:
    parameter = _mapping(raw, where, required=True)
    _string(parameter.get("name"), f"{where}.name")
    _string(parameter.get("parameterType"), f"{where}.parameterType")
    space = _mapping(parameter.get("feasibleSpace"), f"{where}.feasibleSpace")
    for key in ("min", "max", "step", "distribution"):
        _string(space.get(key), f"{where}.feasibleSpace.{key}")
    for k, value in enumerate(_list(space.get("list"), f"{where}.feasibleSpace.list")):
        _string(value, f"{where}.feasibleSpace.list[{k}]")


def _trial_template(raw: Any, parameters: tuple[dict[str, Any], ...]) -> TrialTemplate:
    template = _mapping(raw, "spec.trialTemplate", required=True)
    where = "spec.trialTemplate"
    primary = _string(template.get("primaryContainerName"), f"{where}.primaryContainerName", required=True)
    if template.get("configMap") is not None:
        raise ExperimentError(f"{where}.configMap cannot be read without a cluster; inline the template as "
                              f"{where}.trialSpec to run locally")
    trial_spec = _mapping(template.get("trialSpec"), f"{where}.trialSpec", required=True)
    if template.get("trialParameters") is None:
        raise ExperimentError(f"{where}.trialParameters must be specified")
    parameter_names = {p.get("name") for p in parameters if isinstance(p, dict)}
    trial_parameters: list[TrialParameter] = []
    text = _template_text(trial_spec)
    for i, item in enumerate(_list(template.get("trialParameters"), f"{where}.trialParameters")):
        entry = _mapping(item, f"{where}.trialParameters[{i}]", required=True)
        name = _string(entry.get("name"), f"{where}.trialParameters[{i}].name")
        reference = _string(entry.get("reference"), f"{where}.trialParameters[{i}].reference")
        if not name or not reference or "{" in name or "}" in name:
            raise ExperimentError(f"{where}.trialParameters[{i}]: name and reference must be set and the name "
                                  "must not contain '{' or '}'")
        if any(p.name == name for p in trial_parameters):
            raise ExperimentError(f"{where}.trialParameters[{i}].name {name!r} is duplicated")
        if any(p.reference == reference for p in trial_parameters):
            raise ExperimentError(f"{where}.trialParameters[{i}].reference {reference!r} is duplicated")
        if parameter_names and not is_meta_reference(reference) and reference not in parameter_names:
            raise ExperimentError(f"{where}.trialParameters[{i}].reference {reference!r} is not in spec.parameters")
        placeholder = PARAM_PLACEHOLDER % name
        if placeholder not in text:
            raise ExperimentError(f"{where}.trialParameters[{i}] {name!r} is not used in {where}.trialSpec "
                                  f"(expected {placeholder})")
        text = text.replace(placeholder, "test-value")
        trial_parameters.append(TrialParameter(name, reference, _string(entry.get("description"), "description")))
    leftover = PLACEHOLDER_PATTERN.findall(text)
    if leftover:
        raise ExperimentError(f"{where}.trialSpec uses {leftover[0]}, which is not in {where}.trialParameters")
    metadata = _mapping(trial_spec.get("metadata"), f"{where}.trialSpec.metadata")
    if metadata.get("name") or metadata.get("namespace"):
        raise ExperimentError(f"{where}.trialSpec.metadata.name and .namespace must be omitted")
    if not trial_spec.get("apiVersion") or not trial_spec.get("kind"):
        raise ExperimentError(f"{where}.trialSpec needs apiVersion and kind")
    if trial_spec["kind"] not in CONDITIONS_DEFAULTED and not (template.get("successCondition")
                                                               and template.get("failureCondition")):
        raise ExperimentError(f"{where}.successCondition and .failureCondition are required for a trialSpec of "
                              f"kind {trial_spec['kind']!r} (Katib sets them only for "
                              f"{', '.join(CONDITIONS_DEFAULTED)})")
    return TrialTemplate(primary, tuple(trial_parameters), trial_spec)


def is_meta_reference(reference: str) -> bool:
    """True for ${trialSpec.Name}-style references to trial metadata rather than to an assignment."""
    match = META_PATTERN.search(reference)
    if not match:
        return False
    key = match.group(1)
    indexed = META_INDEX_PATTERN.fullmatch(key)
    return key in META_KEYS or bool(indexed and indexed.group(1) in META_KEYS)


def _template_text(trial_spec: dict[str, Any]) -> str:
    """The trialSpec as one text, the form Katib substitutes placeholders in."""
    return json.dumps(trial_spec, ensure_ascii=False, sort_keys=True)


def _collector(raw: Any) -> Collector:
    where = "spec.metricsCollectorSpec"
    spec = _mapping(raw, where)
    collector = _mapping(spec.get("collector"), f"{where}.collector")
    kind = _string(collector.get("kind"), f"{where}.collector.kind")
    if not kind and spec.get("collector") is not None:  # Katib defaults only a missing collector to StdOut
        raise ExperimentError(f"{where}.collector.kind is required when {where}.collector is given (omit the "
                              f"collector for StdOut)")
    kind = kind or "StdOut"
    if kind not in COLLECTORS_KATIB:
        raise ExperimentError(f"{where}.collector.kind {kind!r} must be one of {', '.join(COLLECTORS_KATIB)}")
    source = _mapping(spec.get("source"), f"{where}.source")
    file_path = _mapping(source.get("fileSystemPath"), f"{where}.source.fileSystemPath")
    filter_spec = _mapping(source.get("filter"), f"{where}.source.filter")
    filters = tuple(_string(v, f"{where}.source.filter.metricsFormat[{i}]", required=True)
                    for i, v in enumerate(_list(filter_spec.get("metricsFormat"),
                                                f"{where}.source.filter.metricsFormat")))
    for i, pattern in enumerate(filters):
        _check_filter(pattern, f"{where}.source.filter.metricsFormat[{i}]")
    if kind == "StdOut":
        return Collector("StdOut", DEFAULT_FILE_PATH, "TEXT", filters)
    if kind not in COLLECTORS_LOCAL:
        _check_cluster_source(kind, collector, source, file_path, where)
        return Collector(kind, "", "", filters)  # collected on the cluster only (check_runs_locally)
    path = _string(file_path.get("path"), f"{where}.source.fileSystemPath.path") or DEFAULT_FILE_PATH
    file_kind = _string(file_path.get("kind"), f"{where}.source.fileSystemPath.kind") or "File"
    file_format = _string(file_path.get("format"), f"{where}.source.fileSystemPath.format") or "TEXT"
    if file_kind != "File" or not path.startswith("/"):
        raise ExperimentError(f"{where}.source.fileSystemPath needs kind File and an absolute path, got "
                              f"kind {file_kind!r} path {path!r}")
    if has_backsteps(path) or path.endswith("/"):
        raise ExperimentError(f"{where}.source.fileSystemPath.path {path!r} must name a file without '..' "
                              "components (Kubernetes refuses '..' in the mount path Katib makes of it)")
    if file_format not in ("TEXT", "JSON"):
        raise ExperimentError(f"{where}.source.fileSystemPath.format {file_format!r} must be TEXT or JSON")
    if file_format == "JSON" and source.get("filter") is not None:
        raise ExperimentError(f"{where}.source.filter must be omitted when the metrics file format is JSON")
    return Collector("File", path, file_format, filters)


def _check_cluster_source(kind: str, collector: dict[str, Any], source: dict[str, Any], file_path: dict[str, Any],
                          where: str) -> None:
    """The source rules of Katib's webhook for the collectors only a cluster runs, after Katib's defaults
    (validator.go validateMetricsCollector, experiment_defaults.go setDefaultMetricsCollector)."""
    path = _string(file_path.get("path"), f"{where}.source.fileSystemPath.path")
    file_kind = _string(file_path.get("kind"), f"{where}.source.fileSystemPath.kind")
    if kind == "TensorFlowEvent":
        if (file_kind or "Directory") != "Directory" or not (path or "/").startswith("/"):
            raise ExperimentError(f"{where}.source.fileSystemPath needs kind Directory and an absolute path for "
                                  f"TensorFlowEvent, got kind {file_kind!r} path {path!r}")
        if _string(file_path.get("format"), f"{where}.source.fileSystemPath.format"):
            raise ExperimentError(f"{where}.source.fileSystemPath.format must be empty for TensorFlowEvent")
    elif kind == "PrometheusMetric":
        http_get = _mapping(source.get("httpGet"), f"{where}.source.httpGet")
        port, http_path = http_get.get("port", PROMETHEUS_PORT), http_get.get("path") or "/metrics"
        if isinstance(port, bool) or not isinstance(port, (int, str)) or not str(port).isdigit():
            raise ExperimentError(f"{where}.source.httpGet.port {port!r} must be a positive integer (0: Katib's "
                                  f"{PROMETHEUS_PORT})")
        if not isinstance(http_path, str) or not http_path.startswith("/"):
            raise ExperimentError(f"{where}.source.httpGet.path {http_path!r} must start with '/'")
    elif kind == "Custom":
        if collector.get("customCollector") is None:
            raise ExperimentError(f"{where}.collector.customCollector is required for kind Custom")
        if file_path and (not (path or "").startswith("/") or file_kind not in ("File", "Directory")):
            raise ExperimentError(f"{where}.source.fileSystemPath needs kind File or Directory and an absolute "
                                  f"path, got kind {file_kind!r} path {path!r}")


def _check_filter(pattern: str, where: str) -> None:
    """Katib's webhook checks (Go's regexp compiles it; two groups, as text), then that both groups capture:
    without two capturing groups Katib's collector silently reads nothing."""
    try:
        compiled = compile_regex(pattern)
    except MetricsError as err:
        raise ExperimentError(f"{where} {pattern!r} {err}") from None
    if not TWO_GROUPS.match(pattern):
        raise ExperimentError(f"{where} {pattern!r} needs two groups: the metric name, then its value")
    problem = too_few_groups(compiled)
    if problem:
        raise ExperimentError(f"{where} {pattern!r} {problem}")


def _mapping(value: Any, where: str, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        if value is None:
            raise ExperimentError(f"{where} must be specified")
        raise ExperimentError(f"{where} must be a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ExperimentError(f"{where} must be a list, got {type(value).__name__}")
    return value


def _string(value: Any, where: str, required: bool = False) -> str:
    if value is None:
        if required:
            raise ExperimentError(f"{where} must be specified")
        return ""
    if not isinstance(value, str):
        hint = f' (quote it: "{value}")' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        raise ExperimentError(f"{where} must be a string, got {type(value).__name__} {value!r}{hint}")
    if required and not value:
        raise ExperimentError(f"{where} must not be empty")
    return value


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExperimentError(f"{where} must be an integer, got {type(value).__name__} {value!r}")
    if not -2**31 <= value < 2**31:
        raise ExperimentError(f"{where}={value} does not fit in int32")
    return value
