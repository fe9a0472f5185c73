"""Translate Katib's protobuf messages to the core's plain objects and back; nothing else.

Enum fields are checked here: protobuf keeps any integer in an enum field, and
an unknown ParameterType or objective type, or a negative trial condition, is
bad input (INVALID_ARGUMENT), not a failed lookup.
"""

from __future__ import annotations

import secrets
from typing import Any

from katib_nas.contract.errors import InvalidInput
from katib_nas.proto import api_pb2

from ..core.algorithms import Proposal
from ..core.algorithms.base import NAME_TOKEN_ALPHABET, NAME_TOKEN_LENGTH
from ..core.experiment import CONDITIONS, ExperimentInfo, TrialRecord, make_trial
from ..core.settings import settings_from_pairs

OBJECTIVE_TYPES = {api_pb2.MINIMIZE: False, api_pb2.MAXIMIZE: True}


def experiment_info(experiment: api_pb2.Experiment) -> ExperimentInfo:
    spec = experiment.spec
    objective = spec.objective
    algorithm = spec.algorithm.algorithm_name
    return ExperimentInfo(
        name=experiment.name,
        algorithm=algorithm,
        settings=settings_from_pairs(((s.name, s.value) for s in spec.algorithm.algorithm_settings), algorithm),
        objective_metric=objective.objective_metric_name,
        maximize=_maximize(objective.type),
        additional_metrics=tuple(objective.additional_metric_names),
        goal=objective.goal or None,  # proto3 double: 0 means "not set"
        parallel_trial_count=spec.parallel_trial_count,
        max_trial_count=spec.max_trial_count,
        nas_config=nas_config_dict(spec.nas_config) if spec.HasField("nas_config") else None,
        early_stopping=spec.early_stopping.algorithm_name if spec.HasField("early_stopping") else "",
    )


def nas_config_dict(nas_config: api_pb2.NasConfig) -> dict[str, Any]:
    """The nasConfig in the camelCase form an Experiment YAML uses."""
    graph = nas_config.graph_config
    return {
        "graphConfig": {
            "numLayers": graph.num_layers,
            "inputSizes": list(graph.input_sizes),
            "outputSizes": list(graph.output_sizes),
        },
        "operations": [
            {
                "operationType": op.operation_type,
                "parameters": [_parameter_dict(p) for p in op.parameter_specs.parameters],
            }
            for op in nas_config.operations.operation
        ],
    }


def _maximize(objective_type: int) -> bool:
    if objective_type not in OBJECTIVE_TYPES:
        raise InvalidInput(f"objective type {objective_type} must be MINIMIZE ({api_pb2.MINIMIZE}) or MAXIMIZE "
                           f"({api_pb2.MAXIMIZE})")
    return OBJECTIVE_TYPES[objective_type]


def _parameter_type(parameter: api_pb2.ParameterSpec) -> str:
    """The ParameterType's name in lower case, or the number as text when it is not a known value."""
    known = api_pb2.ParameterType.values()
    value = parameter.parameter_type
    return api_pb2.ParameterType.Name(value).lower() if value in known else str(value)


def _parameter_dict(parameter: api_pb2.ParameterSpec) -> dict[str, Any]:
    space = parameter.feasible_space
    return {
        "name": parameter.name,
        "parameterType": _parameter_type(parameter),
        "feasibleSpace": {"min": space.min, "max": space.max, "step": space.step, "list": list(space.list)},
    }


def trial_record(trial: api_pb2.Trial, index: int = 0) -> TrialRecord:
    """The core's record of request.trials[index]. A condition past the known ones is UNKNOWN (a newer Katib's
    value); a negative one is bad input (Python's indexing would read it as another condition)."""
    status = trial.status
    condition = status.condition
    if condition < 0:
        raise InvalidInput(f"trials[{index}].status.condition={condition} must not be negative (TrialConditionType "
                           f"is 0 to {len(CONDITIONS) - 1})")
    spec = trial.spec
    return make_trial(
        name=trial.name,
        assignments={a.name: a.value for a in spec.parameter_assignments.assignments},
        condition=CONDITIONS[condition] if condition < len(CONDITIONS) else "UNKNOWN",
        metrics=[(m.name, m.value) for m in status.observation.metrics],
        labels=dict(spec.labels) if len(spec.labels) else None,
    )


def name_token() -> str:
    """The random part of a trial name the service asks for (NAME_TOKEN_LENGTH of NAME_TOKEN_ALPHABET)."""
    return "".join(secrets.choice(NAME_TOKEN_ALPHABET) for _ in range(NAME_TOKEN_LENGTH))


def suggestions_reply(proposal: Proposal, algorithm_name: str) -> api_pb2.GetSuggestionsReply:
    reply = api_pb2.GetSuggestionsReply()
    for index, assignment in enumerate(proposal.assignments):
        entry = reply.parameter_assignments.add()
        for name, value in assignment.items():
            entry.assignments.add(name=name, value=value)
        if index < len(proposal.labels):
            entry.labels.update(proposal.labels[index])
        if index < len(proposal.trial_names):
            entry.trial_name = f"{proposal.trial_names[index]}-{name_token()}"
    if proposal.state:
        reply.algorithm.algorithm_name = algorithm_name
        for name, value in sorted(proposal.state.items()):
            reply.algorithm.algorithm_settings.add(name=name, value=value)
    return reply
