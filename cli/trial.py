"""`katib-nas trial`: train one candidate architecture for a truncated budget and report its metrics.

Imports nothing heavy: torch is loaded by the handler, so `katib-nas --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging

from katib_nas.contract.branch_stats import DEFAULT_STATISTIC, STATISTIC_PREFIXES

from .arguments import add_training_arguments, bounded_int, positive_int

DESCRIPTION = """\
Decode the architecture text, build the network, train it with SGD (Nesterov momentum, cosine learning
rate, weight decay) for the given epochs or steps, evaluate it on a fixed held-out validation split and
print one name=value line per metric: Validation-Accuracy, Validation-Loss, Train-Loss, Train-Accuracy,
params, flops (multiply-accumulates), latency-ms, and with --branch-stats the string metrics Branch-Stats
and Skip-Gates. An architecture wrapped in one pair of double quotes is accepted (Katib passes the quotes
of --architecture="${trialParameters.x}" through literally).
Under torchrun (torchrun --nproc-per-node N --no-python katib-nas trial ...), a PyTorchJob or a TrainJob the
trial trains data-parallel across the processes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT;
gloo on CPU, nccl on CUDA); --batch-size is the global batch and rank 0 alone reports and exports.
Exit codes: 0 done, 2 bad input (one line names it), 3 training diverged (no objective reported),
1 export (the metrics are printed first, the export folder keeps its earlier set) or push to Katib failed, a
checkpoint could not be written, or another process of the run failed."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from katib_nas.contract.trial_bounds import MAX_EPOCHS, MAX_SEED
    from katib_nas.trial_image.data import test_sets_text
    from katib_nas.trial_image.trial import TrialOptions

    # Flags only as written: the local runner finds --trial-arg overrides and per-trial folders by their names.
    parser = subparsers.add_parser("trial", help="train one candidate architecture and report its metrics",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   allow_abbrev=False)
    parser.add_argument("--architecture", required=True, metavar="TEXT",
                        help="architecture text, e.g. in28x28x1-cls10-stem16/w32:c3+s5/w64s2:mb3e6")
    add_training_arguments(parser)
    budget = parser.add_mutually_exclusive_group()
    # No default here: argparse would not notice an explicit `--epochs 1` next to `--steps` otherwise.
    budget.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS),
                        help=f"training epochs (default {TrialOptions.epochs})")
    budget.add_argument("--steps", type=positive_int, help="training steps instead of epochs")
    parser.add_argument("--seed", type=bounded_int(0, MAX_SEED), default=TrialOptions.seed,
                        help=f"seed for weights and batch order, in [0, {MAX_SEED}]")
    parser.add_argument("--test", action="store_true",
                        help="after training, also report Test-Accuracy and Test-Loss on the dataset's separate "
                             f"test set: {test_sets_text()}")
    parser.add_argument("--branch-stats", action="store_true",
                        help="report Branch-Stats and Skip-Gates (EnvelopeNet construction reads them), recorded "
                             "over the last half of the training steps")
    parser.add_argument("--branch-statistic", choices=tuple(STATISTIC_PREFIXES), default=DEFAULT_STATISTIC,
                        help=f"what Branch-Stats measures (default {DEFAULT_STATISTIC}): taylor, the first-order "
                             "change of the loss when a branch is removed; mean-square, the branch output's mean "
                             "squared activation")
    parser.add_argument("--latency-table", metavar="PATH",
                        help="also report predicted-latency-ms, the sum of this latency table's entries for the "
                             "network (a table from `katib-nas profile`, e.g. a mounted ConfigMap), or `measure` to "
                             "profile the network's own layers on this device (one thread) first; networks of "
                             "single-op cells without skip inputs, as proxylessnas proposes")
    parser.add_argument("--export-dir", metavar="DIR",
                        help="write TorchScript (and ONNX when onnx is installed) and model.json here")
    parser.add_argument("--checkpoint-dir", metavar="DIR",
                        help="write a checkpoint after every epoch into DIR (e.g. on a PersistentVolumeClaim) and, "
                             "when DIR already holds one of this run, continue from it")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from katib_nas.trial_image.inputs import options_from
    from katib_nas.trial_image.trial import TrialOptions, run_trial

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # --epochs has no argparse default (see register): the options' own applies when neither budget flag is given
    values = {k: v for k, v in vars(args).items() if not (k == "epochs" and v is None)}
    return run_trial(options_from(TrialOptions, values))
