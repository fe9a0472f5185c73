"""Kubeflow Trainer v2.1.0's validation of a TrainJob."""

from __future__ import annotations

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
