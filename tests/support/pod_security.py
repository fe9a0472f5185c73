"""Kubernetes' restricted Pod Security Standard for a trial's pod."""

from __future__ import annotations

import copy
from typing import Any

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Kubernetes' restricted Pod Security Standard (v1.25+) for a pod spec, plus a read-only root."""
    spec, problems = pod["spec"], []
    pod_context = spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(flag)
    problems += [f"volume {v['name']}" for v in spec.get("volumes") or [] if not set(v) - {"name"} <= RESTRICTED_VOLUMES]
    for container in spec["containers"] + (spec.get("initContainers") or []):
        context, name = container.get("securityContext") or {}, container["name"]
        capabilities = context.get("capabilities") or {}
        checks = {
            "privileged": not context.get("privileged"),
            "allowPrivilegeEscalation: false": context.get("allowPrivilegeEscalation") is False,
            "capabilities drop ALL": "ALL" in (capabilities.get("drop") or []),
            "capabilities add": set(capabilities.get("add") or []) <= {"NET_BIND_SERVICE"},
            "runAsNonRoot": context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True,
            "runAsUser 0": context.get("runAsUser", pod_context.get("runAsUser")) != 0,
            "seccompProfile": ((context.get("seccompProfile") or pod_context.get("seccompProfile") or {})
                               .get("type") in ("RuntimeDefault", "Localhost")),
            "readOnlyRootFilesystem": context.get("readOnlyRootFilesystem") is True,
        }
        problems += [f"{name}: {check}" for check, ok in checks.items() if not ok]
    return problems


#: The container Katib's webhook adds for a StdOut, File or TensorFlowEvent collector. Its images
#: (file-metricscollector, tfevent-metricscollector: alpine and python bases with no USER) run as root.
COLLECTOR_CONTAINER = "metrics-logger-and-collector"


def with_katib_collector(pod: dict[str, Any], inject_security_context: bool) -> dict[str, Any]:
    """The pod as Katib's webhook leaves it (pkg/webhook/v1beta1/pod/inject_webhook.go): the collector appended
    with no security context of its own, or with a copy of the first container's when katib-config sets
    init.controller.injectSecurityContext."""
    injected = copy.deepcopy(pod)
    collector: dict[str, Any] = {"name": COLLECTOR_CONTAINER, "image": "docker.io/kubeflowkatib/file-metrics-collector"}
    first = injected["spec"]["containers"][0].get("securityContext")
    if inject_security_context and first is not None:
        collector["securityContext"] = copy.deepcopy(first)
    injected["spec"]["containers"].append(collector)
    return injected


def kubelet_refusals(pod: dict[str, Any], root_images: set[str]) -> list[str]:
    """Containers the kubelet will not start (CreateContainerConfigError): runAsNonRoot (the container's, else
    the pod's) with runAsUser 0, or with no runAsUser and an image that runs as root (`root_images`, by
    container name)."""
    pod_context, problems = pod["spec"].get("securityContext") or {}, []
    for container in pod["spec"]["containers"] + (pod["spec"].get("initContainers") or []):
        context = container.get("securityContext") or {}
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            continue
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        if user == 0 or (user is None and container["name"] in root_images):
            problems.append(f"{container['name']}: container has runAsNonRoot and image will run as root")
    return problems
