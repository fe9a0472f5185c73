"""Katib's Experiment as a strict JSON schema, generated from the typed models kubeflow-katib ships.

kubeflow-katib's model classes (V1beta1Experiment and the types it references) and the kubernetes
client's (ObjectMeta, Container, Job, ...) carry every field's JSON name and type; the schema built from
them refuses unknown fields and mistyped values. Katib's trialSpec is untyped in the Experiment (an
unstructured object): `job_schema()` checks it as the batch/v1 Job it is.

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
    import kubernetes.client as kubernetes_models

    for module in (katib_models, kubernetes_models):
        if hasattr(module, type_name):
            return getattr(module, type_name)
    raise KeyError(f"no model class {type_name} in kubeflow-katib or the kubernetes client")


def schema_of(type_name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    """JSON schema of a model type name such as 'V1beta1Experiment' or 'list[V1Container]'."""
    if type_name in SIMPLE:
        return SIMPLE[type_name]
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


def load_schemas() -> dict[str, dict[str, Any]]:
    """{"experiment": ..., "job": ...}."""
    return {"experiment": build("V1beta1Experiment"), "job": build("V1Job")}


if __name__ == "__main__":
    print(json.dumps(load_schemas()))
