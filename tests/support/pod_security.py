"""Kubernetes' restricted Pod Security Standard for a trial's pod."""

from __future__ import annotations

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
