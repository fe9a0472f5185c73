"""Katib's Experiment as a strict JSON schema, generated from the typed models kubeflow-katib ships.

kubeflow-katib's model classes (V1beta1Experiment and the types it references) and the kubernetes
client's (ObjectMeta, Container, Job, ...) carry every field's JSON name and type; the schema built from
them refuses unknown fields and mistyped values. Katib's trialSpec is untyped in the Experiment (an
unstructured object): it is checked as the resource it is, a batch/v1 Job (the kubernetes client's
models), a PyTorchJob (kubeflow-training's KubeflowOrgV1PyTorchJob, the Training Operator v1 API) or a
TrainJob (kubeflow-trainer-api 2.1.0's TrainerV1alpha1TrainJob, Kubeflow Trainer v2.1's API).

`python -m tests.katib_schema` prints both schemas as JSON.
"""

from __future__ import annotations

import json
from typing import Any

SIMPLE = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
          "bool": {"type": "boolean"}, "datetime": {"type": "string"}, "date": {"type": "string"}, "object": {}}
#: A Kubernetes Quantity is written as a string or a number in YAML.
QUANTITY = {"type": ["string", "number"]}


def model_class(type_name: str) -> Any:
    import kubeflow.katib.models as katib_models
    import kubeflow.training.models as training_models
    import kubernetes.client as kubernetes_models

    type_name = type_name.replace("K8sIoApiAutoscalingV2", "V2")  # kubeflow-training's name of autoscaling/v2 types
    for module in (katib_models, training_models, kubernetes_models):
        if hasattr(module, type_name):
            return getattr(module, type_name)
    raise KeyError(f"no model class {type_name} in kubeflow-katib, kubeflow-training or the kubernetes client")


def schema_of(type_name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    """JSON schema of a model type name such as 'V1beta1Experiment' or 'list[V1Container]'."""
    if type_name in SIMPLE:
        return SIMPLE[type_name]
    if type_name == "Quantity":  # kubeflow-training's type of resource amounts
        return QUANTITY
    if type_name.startswith("list["):
        return {"type": "array", "items": schema_of(type_name[5:-1], definitions)}
    if type_name.startswith("dict("):
        value = type_name[5:-1].split(", ", 1)[1]
        return {"type": "object", "additionalProperties": schema_of(value, definitions)}
    if type_name not in definitions:
        model = model_class(type_name)
        definitions[type_name] = {}  # reserve the name first: types refer to themselves
        properties = {model.attribute_map[attr]: schema_of(kind, definitions)
                      for attr, kind in model.openapi_types.items()}
        if type_name == "V1ResourceRequirements":
            for key in ("limits", "requests"):
                properties[key] = {"type": "object", "additionalProperties": QUANTITY}
        definitions[type_name] = {"type": "object", "additionalProperties": False, "properties": properties}
    return {"$ref": f"#/definitions/{type_name}"}


def build(root: str) -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    reference = schema_of(root, definitions)
    return {**reference, "definitions": definitions}


#: Kubernetes types the Trainer's pydantic models describe as wrapper objects: their JSON forms.
PYDANTIC_SCALARS = {"IoK8sApimachineryPkgUtilIntstrIntOrString": {"type": ["integer", "string"]},
                    "IoK8sApimachineryPkgApiResourceQuantity": QUANTITY}


def strict_pydantic(model: Any) -> dict[str, Any]:
    """The JSON schema of a pydantic model by its JSON names, with unknown fields refused everywhere."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/definitions/{model}")
    definitions = schema.pop("$defs", {})
    definitions.update(PYDANTIC_SCALARS)
    for entry in [schema, *definitions.values()]:
        if "properties" in entry:
            entry["additionalProperties"] = False
    return _without_null({**schema, "definitions": definitions})


def _without_null(node: Any) -> Any:
    """Optional fields (`anyOf: [X, null]`) as X: a YAML document leaves them out rather than writing null."""
    if isinstance(node, list):
        return [_without_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        kept = next(option for option in options if option != {"type": "null"})
        return _without_null({**{k: v for k, v in node.items() if k != "anyOf"}, **kept})
    return {key: _without_null(value) for key, value in node.items()}


def load_schemas() -> dict[str, dict[str, Any]]:
    """{"experiment": ..., "job": ..., "pytorchjob": ..., "trainjob": ...}."""
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

    return {"experiment": build("V1beta1Experiment"), "job": build("V1Job"),
            "pytorchjob": build("KubeflowOrgV1PyTorchJob"), "trainjob": strict_pydantic(TrainerV1alpha1TrainJob)}


if __name__ == "__main__":
    print(json.dumps(load_schemas()))
