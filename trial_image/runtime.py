"""Where the trial runs: device choice, CPU thread count within the container's CPU limit, seeding."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path

import numpy as np
import torch

from katib_nas.contract.errors import InvalidInput

from .inputs import DEVICES

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise InvalidInput(f"unknown device {name!r}; known: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("--device cuda was asked for, but no CUDA device is available (use --device auto or cpu)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cgroup_cpu_limit() -> float | None:
    """The container's CPU quota in cores, or None when unlimited or unknown."""
    try:
        if CGROUP_V2_CPU_MAX.is_file():
            quota, period = CGROUP_V2_CPU_MAX.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if CGROUP_V1_QUOTA.is_file() and CGROUP_V1_PERIOD.is_file():
            quota_us = int(CGROUP_V1_QUOTA.read_text())
            return None if quota_us <= 0 else quota_us / int(CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return None


def default_threads() -> int:
    """CPUs this process may use, capped by the container's CPU limit (a Katib trial pod's resources.limits)."""
    available = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit()
    return max(1, min(available, math.ceil(limit))) if limit else available


def configure_threads(threads: int | None) -> int:
    """Use `threads` intra-op threads; without it, OMP_NUM_THREADS if set, else default_threads()."""
    if threads is None:
        threads = int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit() \
            else default_threads()
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def seed_everything(seed: int, device: torch.device) -> None:
    """Same seed, same device, same thread count -> same run."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """Images in channels_last: oneDNN's depthwise-convolution backward is many times faster in it on CPU."""
    return tensor.contiguous(memory_format=torch.channels_last) if tensor.dim() == 4 else tensor
