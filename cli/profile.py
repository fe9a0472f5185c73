"""`katib-nas profile`: measure the latency table a ProxylessNAS experiment's one-shot search needs.

Imports nothing heavy: torch is loaded by the handler.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture

from .arguments import positive_int

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
    parser = subparsers.add_parser("profile", help="measure a latency table for a proxylessnas experiment",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", metavar="EXPERIMENT.yaml", help="a Katib Experiment with algorithm proxylessnas")
    parser.add_argument("--out", required=True, metavar="TABLE", help="where to write the latency table (JSON)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="target device (default cpu)")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads while timing (default 1)")
    parser.add_argument("--repeats", type=positive_int, default=50,
                        help="timed cycles; each cycle runs every candidate of every block once (default 50)")
    parser.add_argument("--warmup", type=positive_int, default=10, help="untimed cycles first (default 10)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.trial_image.proxyless.profiler import Timing, profile_supernet
    from katib_nas.trial_image.runtime import configure_threads, resolve_device

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supernet = experiment_supernet(args.experiment)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise InvalidInput(f"--out {args.out}: folder {out.parent} does not exist")
    device = resolve_device(args.device)
    configure_threads(args.threads)
    table = profile_supernet(supernet, device, Timing(args.warmup, args.repeats),
                             progress=lambda key, ms: LOG.info("%-40s %.4f ms", key, ms))
    table.save(out)
    print(f"wrote {len(table.entries)} entries to {args.out}")
    return 0


def experiment_supernet(path: str | Path) -> Architecture:
    """The supernet the proxylessnas suggestion builds for this Experiment file."""
    from katib_nas.pipelines.search_request import experiment_info
    from katib_nas.runner.manifest import load_experiment
    from katib_nas.suggestion.core.algorithms.proxylessnas import ProxylessNas

    spec = load_experiment(path)
    if spec.algorithm != ProxylessNas.name:
        raise InvalidInput(f"{path}: algorithmName is {spec.algorithm!r}; profiling needs a proxylessnas experiment")
    _, supernet = ProxylessNas().validate(experiment_info(spec))
    return supernet
