"""Build the protobuf messages Katib's controller sends to a suggestion service.

Mirrors Katib's suggestion client: ConvertExperiment (camelCase Experiment ->
api.v1.beta1.Experiment, algorithm settings returned by earlier replies
merged over the Experiment's), ConvertTrials (trials whose metrics are
unavailable, or that were stopped early before any observation, are left out;
each trial carries its latest condition, one value per metric picked by the
metric's strategy, and no labels).

Every function takes the generated protobuf module of Katib's api.proto as
`pb`: the runner's own (katib_nas.proto.api_pb2), or kubeflow-katib's
(kubeflow.katib.katib_api_pb2, Katib's own client) in tests and benchmarks.
The two cannot be loaded into one process, so this module imports neither.
"""

from __future__ import annotations

import dataclasses
import time
from types import ModuleType
from typing import Any, Sequence

from .manifest import MEDIANSTOP, ExperimentSpec
from .metrics_collector import UNAVAILABLE
from .store import TrialRow

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_PARAMETER_TYPES = {"double": "DOUBLE", "int": "INT", "discrete": "DISCRETE", "categorical": "CATEGORICAL"}
_DISTRIBUTIONS = {"uniform": "UNIFORM", "logUniform": "LOG_UNIFORM", "normal": "NORMAL", "logNormal": "LOG_NORMAL"}
_CONDITIONS = {"Created": "CREATED", "Running": "RUNNING", "Succeeded": "SUCCEEDED", "Killed": "KILLED",
               "Failed": "FAILED", "EarlyStopped": "EARLYSTOPPED"}


def merge_settings(base: Sequence[tuple[str, str]], updates: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Katib's merge: an update overwrites the setting of the same name in place, or is appended."""
    merged = [list(pair) for pair in base]
    for name, value in updates:
        for pair in merged:
            if pair[0] == name:
                pair[1] = value
                break
        else:
            merged.append([name, value])
    return [(name, value) for name, value in merged]


def experiment_message(pb: ModuleType, spec: ExperimentSpec, suggestion_settings: Sequence[tuple[str, str]] = ()
                       ) -> Any:
    """api.v1.beta1.Experiment for this spec, with settings from earlier replies merged in."""
    experiment = pb.Experiment(name=spec.name)
    out = experiment.spec
    out.algorithm.algorithm_name = spec.algorithm
    for name, value in merge_settings(spec.algorithm_settings, suggestion_settings):
        out.algorithm.algorithm_settings.add(name=name, value=value)
    _objective(out.objective, spec, pb)
    if spec.early_stopping is not None:
        out.early_stopping.algorithm_name = MEDIANSTOP
        for name, value in dataclasses.asdict(spec.early_stopping).items():
            out.early_stopping.algorithm_settings.add(name=name, value=str(value))
    for parameter in spec.parameters:
        _parameter(out.parameter_specs.parameters.add(), parameter, pb, default_distribution="uniform")
    nas = spec.nas_config
    graph = nas.get("graphConfig") or {}
    out.nas_config.graph_config.num_layers = graph.get("numLayers") or 0
    out.nas_config.graph_config.input_sizes.extend(graph.get("inputSizes") or [])
    out.nas_config.graph_config.output_sizes.extend(graph.get("outputSizes") or [])
    for operation in nas.get("operations") or []:
        op = out.nas_config.operations.operation.add(operation_type=operation.get("operationType") or "")
        for parameter in operation.get("parameters") or []:
            _parameter(op.parameter_specs.parameters.add(), parameter, pb, default_distribution="")
    out.parallel_trial_count = spec.parallel_trial_count
    if spec.max_trial_count is not None:
        out.max_trial_count = spec.max_trial_count
    return experiment


def trial_messages(pb: ModuleType, spec: ExperimentSpec, trials: Sequence[TrialRow]) -> list[Any]:
    """Every trial Katib would send: all but those whose metrics are unavailable and those stopped early before
    an observation of the objective. Their spec.labels stay empty, as Katib's do: it puts a reply's labels on the
    Trial's metadata, and sends the Trial's spec.labels, which nothing writes."""
    messages = []
    for trial in trials:
        objective = trial.observation.get(spec.objective.metric)
        observed = objective is not None and objective.latest != UNAVAILABLE  # Katib's IsObservationAvailable
        if trial.condition == "MetricsUnavailable" or (trial.condition == "EarlyStopped" and not observed):
            continue
        message = pb.Trial(name=trial.name)
        _objective(message.spec.objective, spec, pb)
        for name, value in trial.assignments.items():
            message.spec.parameter_assignments.assignments.add(name=name, value=value)
        status = message.status
        status.start_time = _time(trial.created_at)
        status.completion_time = _time(trial.completed_at) if trial.condition not in ("Created", "Running") else ""
        status.condition = getattr(pb.TrialStatus, _CONDITIONS.get(trial.condition, "UNKNOWN"))
        for summary in trial.observation.values():
            status.observation.metrics.add(name=summary.name, value=summary.value(spec.objective.strategy(
                summary.name)))
        messages.append(message)
    return messages


def suggestions_request(pb: ModuleType, spec: ExperimentSpec, settings: Sequence[tuple[str, str]],
                        trials: Sequence[TrialRow], count: int) -> Any:
    """GetSuggestions for `count` new trials; total_request_number counts every trial so far plus these."""
    return pb.GetSuggestionsRequest(experiment=experiment_message(pb, spec, settings),
                                    trials=trial_messages(pb, spec, trials),
                                    current_request_number=count, total_request_number=len(trials) + count)


def _objective(objective: Any, spec: ExperimentSpec, pb: ModuleType) -> None:
    objective.type = pb.MAXIMIZE if spec.objective.maximize else pb.MINIMIZE
    objective.objective_metric_name = spec.objective.metric
    objective.additional_metric_names.extend(spec.objective.additional)
    if spec.objective.goal is not None:
        objective.goal = spec.objective.goal


def _parameter(out: Any, parameter: dict[str, Any], pb: ModuleType, default_distribution: str) -> None:
    space = parameter.get("feasibleSpace") or {}
    out.name = parameter.get("name") or ""
    out.parameter_type = getattr(pb, _PARAMETER_TYPES.get(parameter.get("parameterType") or "", "UNKNOWN_TYPE"))
    out.feasible_space.min = space.get("min") or ""
    out.feasible_space.max = space.get("max") or ""
    out.feasible_space.step = space.get("step") or ""
    out.feasible_space.list.extend(space.get("list") or [])
    distribution = space.get("distribution") or default_distribution
    out.feasible_space.distribution = getattr(pb, _DISTRIBUTIONS.get(distribution, "DISTRIBUTION_UNSPECIFIED"))


def _time(moment: float | None) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(moment)) if moment is not None else ""
