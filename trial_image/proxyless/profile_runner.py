"""Profile the supernet of a proxylessnas Experiment file into a latency table."""

from __future__ import annotations

import logging
from pathlib import Path

from katib_nas.suggestion.core.algorithms.proxylessnas import ProxylessNas
from katib_nas.suggestion.core.errors import InvalidInput
from katib_nas.suggestion.core.experiment import ExperimentInfo
from katib_nas.suggestion.core.spec import Architecture
from katib_nas.suggestion.local.manifest import load_experiment

from ..runtime import configure_threads, resolve_device
from .profiler import Timing, profile_supernet
from .table import LatencyTable

LOG = logging.getLogger("katib_nas.trial.proxyless")


def experiment_supernet(path: str | Path) -> Architecture:
    """The supernet the proxylessnas suggestion builds for this Experiment file."""
    spec = load_experiment(path)
    if spec.algorithm != ProxylessNas.name:
        raise InvalidInput(f"{path}: algorithmName is {spec.algorithm!r}; profiling needs a proxylessnas experiment")
    info = ExperimentInfo(spec.name, spec.algorithm, dict(spec.algorithm_settings), spec.objective.metric,
                          spec.objective.maximize, tuple(spec.objective.additional), nas_config=spec.nas_config)
    _, supernet = ProxylessNas().validate(info)
    return supernet


def profile_experiment(path: str | Path, out: str | Path, device_name: str, threads: int, repeats: int,
                       warmup: int) -> LatencyTable:
    supernet = experiment_supernet(path)
    out_path = Path(out)
    if not out_path.parent.is_dir():
        raise InvalidInput(f"--out {out}: folder {out_path.parent} does not exist")
    device = resolve_device(device_name)
    configure_threads(threads)
    table = profile_supernet(supernet, device, Timing(warmup, repeats),
                             progress=lambda key, ms: LOG.info("%-40s %.4f ms", key, ms))
    table.save(out_path)
    return table
