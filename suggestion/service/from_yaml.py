"""Katib's ConvertExperiment: an Experiment document (as `kubectl apply` takes it) to api.v1.beta1 messages.

The protobuf module is a parameter, so the same conversion feeds our stubs
(`katib_nas.proto.api_pb2`, used by the local runner) and kubeflow-katib's
(`kubeflow.katib.katib_api_pb2`, used by tests and benchmarks as Katib's client).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any


def experiment_message(document: dict[str, Any], pb: ModuleType, name: str | None = None) -> Any:
    """pb.Experiment for the document, with the fields Katib's controller fills."""
    spec = document.get("spec") or {}
    experiment = pb.Experiment(name=name or (document.get("metadata") or {}).get("name", ""))
    out = experiment.spec
    objective = spec.get("objective") or {}
    out.objective.type = {"maximize": pb.MAXIMIZE, "minimize": pb.MINIMIZE}.get(objective.get("type"), pb.UNKNOWN)
    if objective.get("goal") is not None:
        out.objective.goal = float(objective["goal"])
    out.objective.objective_metric_name = objective.get("objectiveMetricName", "")
    out.objective.additional_metric_names.extend(objective.get("additionalMetricNames") or [])
    algorithm = spec.get("algorithm") or {}
    out.algorithm.algorithm_name = algorithm.get("algorithmName", "")
    for setting in algorithm.get("algorithmSettings") or []:
        out.algorithm.algorithm_settings.add(name=setting.get("name", ""), value=str(setting.get("value", "")))
    out.parallel_trial_count = int(spec.get("parallelTrialCount") or 0)
    out.max_trial_count = int(spec.get("maxTrialCount") or 0)
    for parameter in spec.get("parameters") or []:
        _parameter(out.parameter_specs.parameters.add(), parameter, pb)
    if spec.get("nasConfig") is not None:
        _nas_config(out.nas_config, spec["nasConfig"], pb)
    return experiment


def _nas_config(message: Any, nas_config: dict[str, Any], pb: ModuleType) -> None:
    graph = nas_config.get("graphConfig") or {}
    message.graph_config.num_layers = int(graph.get("numLayers") or 0)
    message.graph_config.input_sizes.extend(int(v) for v in graph.get("inputSizes") or [])
    message.graph_config.output_sizes.extend(int(v) for v in graph.get("outputSizes") or [])
    message.operations.SetInParent()
    for operation in nas_config.get("operations") or []:
        op = message.operations.operation.add(operation_type=operation.get("operationType", ""))
        op.parameter_specs.SetInParent()
        for parameter in operation.get("parameters") or []:
            _parameter(op.parameter_specs.parameters.add(), parameter, pb)


def _parameter(message: Any, parameter: dict[str, Any], pb: ModuleType) -> None:
    message.name = parameter.get("name", "")
    type_name = str(parameter.get("parameterType", "")).upper()
    message.parameter_type = {"DOUBLE": pb.DOUBLE, "INT": pb.INT, "DISCRETE": pb.DISCRETE,
                              "CATEGORICAL": pb.CATEGORICAL}.get(type_name, pb.UNKNOWN_TYPE)
    space = parameter.get("feasibleSpace") or {}
    for key in ("min", "max", "step"):
        if space.get(key) is not None:
            setattr(message.feasible_space, key, str(space[key]))
    message.feasible_space.list.extend(str(v) for v in space.get("list") or [])
