"""`katib-nas profile`: measure the latency table a ProxylessNAS experiment's one-shot search needs.

Imports nothing heavy: torch is loaded by the handler.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.kubernetes_names import DNS1123_SUBDOMAIN_MAX_LENGTH, is_dns1123_label, is_dns1123_subdomain
from katib_nas.contract.spec import Architecture

from .arguments import bounded_int, positive_int

if TYPE_CHECKING:
    from katib_nas.deploy.cluster import ConfigMapRef

LOG = logging.getLogger("katib_nas.cli.profile")

DESCRIPTION = """\
Read a proxylessnas Experiment YAML, build its supernet (nasConfig + algorithmSettings) and time, on the given
device, every layer position the search can use: the stem, each stage's widener, every candidate op in every
block (residual add included) and the head. The supernet runs at batch 1 in eval mode with the candidates
cycled, and forward hooks time each module inside the running network; each entry is the fastest of its
--repeats samples. With one CPU thread the clock is the thread's CPU time, which other processes on a shared
machine cannot inflate. Writes a JSON
table for `katib-nas proxyless-search --latency-table` (in a cluster: a ConfigMap mounted in the trial).
Profile with the thread count and device the search will measure latency on."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from katib_nas.trial_image.inputs import MAX_THREADS
    from katib_nas.trial_image.proxyless.timing import TIMING_DEFAULTS

    parser = subparsers.add_parser("profile", help="measure a latency table for a proxylessnas experiment",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", metavar="EXPERIMENT",
                        help="a Katib Experiment with algorithm proxylessnas: a YAML file or a shipped example's name")
    parser.add_argument("--out", required=True, metavar="TABLE", help="where to write the latency table (JSON)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="target device (default cpu)")
    parser.add_argument("--threads", type=bounded_int(1, MAX_THREADS), default=1,
                        help="CPU threads while timing (default 1)")
    parser.add_argument("--repeats", type=positive_int, default=TIMING_DEFAULTS.repeats,
                        help="timed cycles; each cycle runs every candidate of every block once "
                             f"(default {TIMING_DEFAULTS.repeats})")
    parser.add_argument("--warmup", type=positive_int, default=TIMING_DEFAULTS.warmup,
                        help=f"untimed cycles first (default {TIMING_DEFAULTS.warmup})")
    parser.add_argument("--configmap", metavar="NAME",
                        help="also store the table in this ConfigMap (key: the --out file's name), created or "
                             "updated through the Kubernetes API, as the trials mount it")
    parser.add_argument("--namespace", help="the ConfigMap's namespace (default: the pod's own, else the kubeconfig's)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.trial_image.proxyless.profiler import profile_supernet
    from katib_nas.trial_image.proxyless.timing import Timing
    from katib_nas.trial_image.runtime import configure_threads, resolve_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supernet = experiment_supernet(args.experiment)
    out = Path(args.out)
    check_out(out)
    target = config_map_target(args.configmap, args.namespace, out) if args.configmap else None
    device = resolve_device(args.device)
    configure_threads(args.threads)
    table = profile_supernet(supernet, device, Timing(args.warmup, args.repeats),
                             progress=lambda key, ms: LOG.info("%-40s %.4f ms", key, ms))
    try:
        table.save(out)
    except OSError as err:
        print(f"katib-nas profile: error: cannot write the latency table {out}: {err.strerror or err}",
              file=sys.stderr)
        return 1
    print(f"wrote {len(table.entries)} entries to {args.out}")
    return store_in_config_map(target, out) if target else 0


def check_out(out: Path) -> None:
    """--out must name a file (new, or a regular file to replace) in a writable folder: checked before profiling."""
    advice = "give the latency table's file"
    if out.is_dir():
        raise InvalidInput(f"--out {out} is a folder, not a file; {advice}")
    if out.exists() and not out.is_file():
        raise InvalidInput(f"--out {out} is not a regular file; {advice}")
    if not out.parent.is_dir():
        raise InvalidInput(f"--out {out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"--out {out}: folder {out.parent} is not writable")


#: A key of a ConfigMap's data.
CONFIG_MAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")


@dataclass(frozen=True)
class ConfigMapTarget:
    """Where --configmap stores the table: the API client, the ConfigMap and the key (the --out file's name)."""

    api: Any
    ref: ConfigMapRef
    key: str


def config_map_target(name: str, namespace: str | None, out: Path) -> ConfigMapTarget:
    """The ConfigMap --configmap names, checked and with credentials loaded before profiling (which can take
    minutes): InvalidInput naming what Kubernetes would refuse afterwards."""
    from katib_nas.deploy import cluster
    from katib_nas.pipelines.katib_experiment import default_namespace

    if not is_dns1123_subdomain(name):
        raise InvalidInput(f"--configmap {name[:80]!r} is not a ConfigMap name (lower case letters, digits, '-' and "
                           "'.', at most 253 characters)")
    if namespace is not None and not is_dns1123_label(namespace):
        raise InvalidInput(f"--namespace {namespace[:80]!r} is not a Kubernetes namespace (lower case letters, "
                           "digits and '-', at most 63 characters)")
    if len(out.name) > DNS1123_SUBDOMAIN_MAX_LENGTH or not CONFIG_MAP_KEY.fullmatch(out.name):
        raise InvalidInput(f"--out {out}: the file name {out.name[:80]!r} is the ConfigMap's key, which takes only "
                           "letters, digits, '-', '_' and '.'")
    api = cluster.core_api()
    return ConfigMapTarget(api, cluster.ConfigMapRef(namespace or default_namespace(), name), out.name)


def store_in_config_map(target: ConfigMapTarget, table: Path) -> int:
    """Put the table file into the target ConfigMap under its key; 1 with one line when the API refuses."""
    from katib_nas.deploy import cluster

    ref = target.ref
    try:
        done = cluster.write_config_map(target.api, ref, target.key, table.read_text())
    except cluster.ClusterError as err:
        print(f"katib-nas profile: error: {err}", file=sys.stderr)
        return 1
    print(f"{done} {ref} (key {target.key})")
    return 0


def experiment_supernet(path: str | Path) -> Architecture:
    """The supernet the proxylessnas suggestion builds for this Experiment file."""
    from katib_nas.pipelines.search_request import experiment_info, find_example
    from katib_nas.runner.manifest import load_experiment
    from katib_nas.suggestion.core.algorithms.proxylessnas import ProxylessNas

    spec = load_experiment(find_example(str(path)))
    if spec.algorithm != ProxylessNas.name:
        raise InvalidInput(f"{path}: algorithmName is {spec.algorithm!r}; profiling needs a proxylessnas experiment")
    _, supernet = ProxylessNas().validate(experiment_info(spec))
    return supernet
