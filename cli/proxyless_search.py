"""`katib-nas proxyless-search`: the ProxylessNAS one-shot trial (train the supernet, report the derived network).

Imports nothing heavy: torch is loaded by the handler.
"""

from __future__ import annotations

import argparse
import logging

from .arguments import add_training_arguments, fraction, non_negative_int, positive_int

DESCRIPTION = """\
Train the supernet given by --architecture (choice cells such as mb3e3_mb5e6_zero@r, as the proxylessnas
suggestion proposes) with binarized path gates: weight steps with one sampled path per block on the training
images, and after the warm-up, architecture steps with two sampled paths on a held-out part of them, under the
hardware-aware loss when the search settings set a latency target (then --latency-table is required). Then
derive the most probable op of every block and print name=value lines: Train-Loss after every search epoch
(the supernet's), then Best-Architecture (the derived network's text), Validation-Accuracy, Validation-Loss,
latency-ms (measured), predicted-latency-ms (from the table), and how decided the search was: arch-steps,
path-max-probability and path-entropy (means over blocks). With --report-to-katib the numbers are also
pushed to Katib after every epoch and at the end (Best-Architecture, a string, only reaches Katib through the
StdOut or File collector).
--search takes the compact settings text of the suggestion, e.g. epochs-12_warmup-2_loss-mullog_target-1.5.
Under torchrun (torchrun --nproc-per-node N --no-python katib-nas proxyless-search ...), a PyTorchJob or a
TrainJob the supernet trains data-parallel across the processes; --batch-size is the global batch.
Exit codes: 0 done, 2 bad input (one line names it), 3 training diverged, 1 a push to Katib failed or another
process of the run failed."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from katib_nas.trial_image.inputs import SUPERNET_DEFAULTS as DEFAULTS

    parser = subparsers.add_parser("proxyless-search", help="ProxylessNAS one-shot trial: search a supernet",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   allow_abbrev=False)
    parser.add_argument("--architecture", required=True, metavar="TEXT",
                        help="the supernet's architecture text (choice cells), as the suggestion assigns it")
    parser.add_argument("--search", required=True, metavar="TEXT",
                        help="search settings text, e.g. epochs-12_warmup-2_loss-mullog_target-1.5_beta-0.6")
    parser.add_argument("--latency-table", metavar="PATH",
                        help="latency table JSON from `katib-nas profile` (e.g. a mounted ConfigMap), or `measure` "
                             "to profile the supernet on this trial's device (one thread) before searching")
    add_training_arguments(parser)
    parser.add_argument("--arch-fraction", type=fraction, default=DEFAULTS.arch_fraction,
                        help="share of the training images held out for architecture steps "
                             f"(default {DEFAULTS.arch_fraction:g})")
    parser.add_argument("--arch-every", type=positive_int, default=DEFAULTS.arch_every,
                        help=f"one architecture step every this many weight steps (default {DEFAULTS.arch_every})")
    parser.add_argument("--rank-paths", type=non_negative_int, default=DEFAULTS.rank_paths, metavar="N",
                        help="also evaluate N uniformly sampled paths on the supernet's weights and report the "
                             "derived network's rank among them as derived-rank (1 is best; default "
                             f"{DEFAULTS.rank_paths}: skip)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.trial_image.inputs import options_from
    from katib_nas.trial_image.proxyless.search_trial import SearchOptions, run_proxyless_search

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_proxyless_search(options_from(SearchOptions, args, supernet=args.architecture))
