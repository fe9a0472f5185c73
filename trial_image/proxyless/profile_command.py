"""`katib-nas profile`: measure the latency table a ProxylessNAS experiment's one-shot search needs.

Imports nothing heavy: torch is loaded by the handler.
"""

from __future__ import annotations

import argparse
import logging

from ..command import positive_int

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
    from .profile_runner import profile_experiment

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    table = profile_experiment(args.experiment, args.out, args.device, args.threads, args.repeats, args.warmup)
    print(f"wrote {len(table.entries)} entries to {args.out}")
    return 0
