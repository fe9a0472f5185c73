"""Build the protobuf messages Katib's controller sends to a suggestion service.

Mirrors Katib's suggestion client: ConvertExperiment (camelCase Experiment ->
api.v1.beta1.Experiment, algorithm settings returned by earlier replies
merged over the Experiment's), ConvertTrials (trials whose metrics are
unavailable are left out; each trial carries its latest condition and one
value per metric picked by the metric's strategy).
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ...proto import api_pb2
from .manifest import ExperimentSpec
from .store import TrialRow

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_PARAMETER_TYPES = {"double": api_pb2.DOUBLE, "int": api_pb2.INT, "discrete": api_pb2.DISCRETE,
                    "categorical": api_pb2.CATEGORICAL}
_DISTRIBUTIONS = {"uniform": api_pb2.UNIFORM, "logUniform": api_pb2.LOG_UNIFORM, "normal": api_pb2.NORMAL,
                  "logNormal": api_pb2.LOG_NORMAL}
_CONDITIONS = {"Created": api_pb2.TrialStatus.CREATED, "Running": api_pb2.TrialStatus.RUNNING,
               "Succeeded": api_pb2.TrialStatus.SUCCEEDED, "Killed": api_pb2.TrialStatus.KILLED,
               "Failed": api_pb2.TrialStatus.FAILED, "EarlyStopped": api_pb2.TrialStatus.EARLYSTOPPED}


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


def experiment_message(spec: ExperimentSpec, suggestion_settings: Sequence[tuple[str, str]] = ()) -> api_pb2.Experiment:
    """api.v1.beta1.Experiment for this spec, with settings from earlier replies merged in."""
    experiment = api_pb2.Experiment(name=spec.name)
    out = experiment.spec
    out.algorithm.algorithm_name = spec.algorithm
    for name, value in merge_settings(spec.algorithm_settings, suggestion_settings):
        out.algorithm.algorithm_settings.add(name=name, value=value)
    _objective(out.objective, spec)
    for parameter in spec.parameters:
        _parameter(out.parameter_specs.parameters.add(), parameter, default_distribution="uniform")
    nas = spec.nas_config
    graph = nas.get("graphConfig") or {}
    out.nas_config.graph_config.num_layers = graph.get("numLayers") or 0
    out.nas_config.graph_config.input_sizes.extend(graph.get("inputSizes") or [])
    out.nas_config.graph_config.output_sizes.extend(graph.get("outputSizes") or [])
    for operation in nas.get("operations") or []:
        op = out.nas_config.operations.operation.add(operation_type=operation.get("operationType") or "")
        for parameter in operation.get("parameters") or []:
            _parameter(op.parameter_specs.parameters.add(), parameter, default_distribution="")
    out.parallel_trial_count = spec.parallel_trial_count
    if spec.max_trial_count is not None:
        out.max_trial_count = spec.max_trial_count
    return experiment


def trial_messages(spec: ExperimentSpec, trials: Sequence[TrialRow]) -> list[api_pb2.Trial]:
    """Every trial Katib would send: all but those whose metrics are unavailable."""
    messages = []
    for trial in trials:
        if trial.condition == "MetricsUnavailable":
            continue
        message = api_pb2.Trial(name=trial.name)
        _objective(message.spec.objective, spec)
        for name, value in trial.assignments.items():
            message.spec.parameter_assignments.assignments.add(name=name, value=value)
        message.spec.labels.update(trial.labels)
        status = message.status
        status.start_time = _time(trial.created_at)
        status.completion_time = _time(trial.completed_at) if trial.condition not in ("Created", "Running") else ""
        status.condition = _CONDITIONS.get(trial.condition, api_pb2.TrialStatus.UNKNOWN)
        for summary in trial.observation.values():
            status.observation.metrics.add(name=summary.name, value=summary.value(spec.objective.strategy(
                summary.name)))
        messages.append(message)
    return messages


def suggestions_request(spec: ExperimentSpec, settings: Sequence[tuple[str, str]], trials: Sequence[TrialRow],
                        count: int) -> api_pb2.GetSuggestionsRequest:
    """GetSuggestions for `count` new trials; total_request_number counts every trial so far plus these."""
    return api_pb2.GetSuggestionsRequest(experiment=experiment_message(spec, settings),
                                         trials=trial_messages(spec, trials),
                                         current_request_number=count, total_request_number=len(trials) + count)


def _objective(objective: api_pb2.ObjectiveSpec, spec: ExperimentSpec) -> None:
    objective.type = api_pb2.MAXIMIZE if spec.objective.maximize else api_pb2.MINIMIZE
    objective.objective_metric_name = spec.objective.metric
    objective.additional_metric_names.extend(spec.objective.additional)
    if spec.objective.goal is not None:
        objective.goal = spec.objective.goal


def _parameter(out: api_pb2.ParameterSpec, parameter: dict[str, Any], default_distribution: str) -> None:
    space = parameter.get("feasibleSpace") or {}
    out.name = parameter.get("name") or ""
    out.parameter_type = _PARAMETER_TYPES.get(parameter.get("parameterType") or "", api_pb2.UNKNOWN_TYPE)
    out.feasible_space.min = space.get("min") or ""
    out.feasible_space.max = space.get("max") or ""
    out.feasible_space.step = space.get("step") or ""
    out.feasible_space.list.extend(space.get("list") or [])
    distribution = space.get("distribution") or default_distribution
    out.feasible_space.distribution = _DISTRIBUTIONS.get(distribution, api_pb2.DISTRIBUTION_UNSPECIFIED)


def _time(moment: float | None) -> str:
    return time.strftime(TIME_FORMAT, time.gmtime(moment)) if moment is not None else ""
