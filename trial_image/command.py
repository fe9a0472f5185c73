"""`katib-nas trial`: train one candidate architecture for a truncated budget and report its metrics.

Imports nothing heavy: torch is loaded by the handler, so `katib-nas --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging

DATASETS = ("fashion-mnist", "digits", "cifar10", "npz")

DESCRIPTION = """\
Decode the architecture text, build the network, train it with SGD (Nesterov momentum, cosine learning
rate, weight decay) for the given epochs or steps, evaluate it on a fixed held-out validation split and
print one name=value line per metric: Validation-Accuracy, Validation-Loss, Train-Loss, Train-Accuracy,
params, flops (multiply-accumulates), latency-ms, and with --branch-stats the string metrics Branch-Stats
and Skip-Gates. An architecture wrapped in one pair of double quotes is accepted (Katib passes the quotes
of --architecture="${trialParameters.x}" through literally).
Exit codes: 0 done, 2 bad input (one line names it), 3 training diverged (no objective reported),
1 export or push to Katib failed."""


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be a whole number of at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be a whole number of at least 0")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a positive finite number")
    return value


def non_negative_float(text: str) -> float:
    value = _number(float, text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of at least 0")
    return value


def fraction(text: str) -> float:
    value = _number(float, text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} must lie strictly between 0 and 1")
    return value


def _number(kind: type, text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("trial", help="train one candidate architecture and report its metrics",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--architecture", required=True, metavar="TEXT",
                        help="architecture text, e.g. in28x28x1-cls10-stem16/w32:c3+s5/w64s2:mb3e6")
    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist",
                        help="training data (default fashion-mnist from /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--data-dir", metavar="PATH",
                        help="data location: Fashion-MNIST idx.gz folder, CIFAR-10 binary batches folder, "
                             "or the .npz file (arrays x and y)")
    budget = parser.add_mutually_exclusive_group()
    # No default here: argparse would not notice an explicit `--epochs 1` next to `--steps` otherwise.
    budget.add_argument("--epochs", type=positive_int, help="training epochs (default 1)")
    budget.add_argument("--steps", type=positive_int, help="training steps instead of epochs")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default 128)")
    parser.add_argument("--lr", type=positive_float, default=0.05, help="peak learning rate (default 0.05)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=3e-4, help="weight decay (default 3e-4)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed for weights and batch order")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto picks CUDA when available (default auto)")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads (default: OMP_NUM_THREADS, else the CPUs the container may use)")
    parser.add_argument("--val-fraction", type=fraction, default=0.1,
                        help="share of the training file held out for validation (default 0.1)")
    parser.add_argument("--max-train-samples", type=positive_int, help="train on at most this many images")
    parser.add_argument("--test", action="store_true",
                        help="after training, also report Test-Accuracy and Test-Loss on the dataset's separate "
                             "test set (Fashion-MNIST t10k files, CIFAR-10 test_batch.bin)")
    parser.add_argument("--branch-stats", action="store_true",
                        help="report Branch-Stats and Skip-Gates (EnvelopeNet construction reads them)")
    parser.add_argument("--metrics-file", metavar="PATH", help="also write the metrics here for Katib's File collector")
    parser.add_argument("--metrics-format", choices=("text", "json"), default="text",
                        help="metrics file format: text (name=value lines) or json (one object per line, "
                             "string values)")
    parser.add_argument("--report-to-katib", action="store_true",
                        help="push numeric metrics with kubeflow.katib.report_metrics when KATIB_TRIAL_NAME is set "
                             "(DB manager address from KATIB_DB_MANAGER_ADDRESS, else Katib's default)")
    parser.add_argument("--export-dir", metavar="DIR",
                        help="write TorchScript (and ONNX when onnx is installed) and model.json here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .runner import TrialOptions, run_trial

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = TrialOptions(
        architecture=args.architecture, dataset=args.dataset, data_dir=args.data_dir,
        epochs=1 if args.epochs is None else args.epochs,
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        device=args.device, threads=args.threads, val_fraction=args.val_fraction,
        max_train_samples=args.max_train_samples, branch_stats=args.branch_stats, test=args.test,
        metrics_file=args.metrics_file,
        metrics_format=args.metrics_format, report_to_katib=args.report_to_katib, export_dir=args.export_dir)
    return run_trial(options)
