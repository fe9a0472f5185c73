"""Kubeflow Trainer's validation of a TrainJob: v2.1.0's rules, and v2.2's schema beside v2.1's."""

from __future__ import annotations

import copy
import re
from typing import Any

#: Kubeflow Trainer v2.1.0's reserved torchrun variables (pkg/constants: TorchRunReservedEnvNames).
TORCHRUN_RESERVED = {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}


def trainjob_errors(trial_spec: dict[str, Any], trial_name: str) -> list[str]:
    """Kubeflow Trainer v2.1.0's TrainJob CRD validation rules and its torch plugin's Validate."""
    errors = []
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", trial_name) or len(trial_name) > 63:
        errors.append("metadata.name must match RFC 1035 DNS label format")
    if not (trial_spec["spec"].get("runtimeRef") or {}).get("name"):
        errors.append("spec.runtimeRef.name: must be specified")
    trainer = trial_spec["spec"].get("trainer") or {}
    procs = trainer.get("numProcPerNode")
    if isinstance(procs, str) and procs not in ("auto", "cpu", "gpu"):
        errors.append("spec.trainer.numProcPerNode: must have an int value or [auto cpu gpu]")
    if isinstance(trainer.get("numNodes"), int) and trainer["numNodes"] < 1:
        errors.append("spec.trainer.numNodes: must be at least 1")
    reserved = sorted({e["name"] for e in trainer.get("env") or []} & TORCHRUN_RESERVED)
    if reserved:
        errors.append(f"spec.trainer.env: must not have reserved envs, invalid envs configured: {reserved}")
    return errors


def _strict(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


def trainjob_schema_v2_2(v2_1: dict[str, Any]) -> dict[str, Any]:
    """The TrainJob of Kubeflow Trainer v2.2 and v2.3 as a strict JSON schema, from v2.1's (kubeflow-trainer-api
    2.1.0): the spec has `runtimePatches` and `activeDeadlineSeconds` where v2.1 had `podTemplateOverrides`,
    `labels` and `annotations`; the rest reads the same (pkg/apis/trainer/v1alpha1/trainjob_types.go, v2.2.0 and
    v2.3.0: TrainJobSpec, RuntimePatch down to PodSpecPatch and ContainerPatch, the fields a patch may set)."""
    schema = copy.deepcopy(v2_1)
    definitions = schema["definitions"]
    ref = {name: {"$ref": f"#/definitions/{name}"} for name in
           ("IoK8sApimachineryPkgApisMetaV1ObjectMeta", "IoK8sApiCoreV1Volume", "IoK8sApiCoreV1VolumeMount",
            "IoK8sApiCoreV1EnvVar")}
    metadata = ref["IoK8sApimachineryPkgApisMetaV1ObjectMeta"]
    container = _strict({"name": {"type": "string", "minLength": 1},
                         "env": {"type": "array", "items": ref["IoK8sApiCoreV1EnvVar"]},
                         "volumeMounts": {"type": "array", "items": ref["IoK8sApiCoreV1VolumeMount"]},
                         "securityContext": {"type": "object"}}, ("name",))
    pod_spec = _strict({"serviceAccountName": {"type": "string"},
                        "volumes": {"type": "array", "items": ref["IoK8sApiCoreV1Volume"]},
                        "initContainers": {"type": "array", "items": container},
                        "containers": {"type": "array", "items": container},
                        "imagePullSecrets": {"type": "array"}, "securityContext": {"type": "object"},
                        "nodeSelector": {"type": "object"}, "affinity": {"type": "object"},
                        "tolerations": {"type": "array"}, "schedulingGates": {"type": "array"},
                        "terminationGracePeriodSeconds": {"type": "integer"}})
    pod_template = _strict({"metadata": metadata, "spec": pod_spec})
    job_template = _strict({"metadata": metadata, "spec": _strict({"template": pod_template})})
    replicated_job = _strict({"name": {"type": "string", "minLength": 1}, "template": job_template}, ("name",))
    jobset_template = _strict({"metadata": metadata,
                               "spec": _strict({"replicatedJobs": {"type": "array", "items": replicated_job}})})
    patch = _strict({"manager": {"type": "string", "minLength": 1, "maxLength": 253}, "time": {"type": "string"},
                     "trainingRuntimeSpec": _strict({"template": jobset_template})}, ("manager",))
    properties = definitions["TrainerV1alpha1TrainJobSpec"]["properties"]
    for gone in ("podTemplateOverrides", "labels", "annotations"):
        del properties[gone]
    properties["runtimePatches"] = {"type": "array", "maxItems": 16, "items": patch}
    properties["activeDeadlineSeconds"] = {"type": "integer", "minimum": 1}
    return schema


def unknown_field_status(field: str) -> str:
    """The message of the 400 an API server answers a strictly validated TrainJob with an unknown spec field."""
    return (f'TrainJob in version "v1alpha1" cannot be handled as a TrainJob: strict decoding error: '
            f'unknown field "spec.{field}"')


def node_pod_template(document: dict[str, Any]) -> dict[str, Any]:
    """What the TrainJob's podTemplateOverrides (v2.1) or runtimePatches (v2.2 and later) merge into the pod
    template of the runtime's `node` replicated job: {"metadata": ..., "spec": ...}."""
    spec = document["spec"]
    if "podTemplateOverrides" in spec:
        templates = [{key: o.get(key) or {} for key in ("metadata", "spec")} for o in spec["podTemplateOverrides"]
                     if {"name": "node"} in o["targetJobs"]]
    else:
        templates = [job["template"]["spec"]["template"] for patch in spec["runtimePatches"]
                     for job in patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
                     if job["name"] == "node"]
    [template] = templates
    return template


def node_mounts(document: dict[str, Any]) -> dict[str, str]:
    """{claim: mount path} of the runtime's `node` container, as the TrainJob gives them; the volume names are
    unique."""
    pod_spec = node_pod_template(document)["spec"]
    names = [v["name"] for v in pod_spec["volumes"]]
    assert len(set(names)) == len(names), names
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"]}
    [container] = [c for c in pod_spec["containers"] if c["name"] == "node"]
    return {claims[m["name"]]: m["mountPath"] for m in container["volumeMounts"]}
