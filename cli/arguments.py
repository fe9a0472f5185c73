"""argparse value types shared by the subcommands: each refuses bad text with a message naming the rule.

Numbers are ASCII only (Python's int() and float() also take other scripts'
digits and `1_000`) and bounded: every integer flag has an upper limit, so no
value can overflow a C integer inside torch or numpy after the run started.
"""

from __future__ import annotations

import argparse
import math
import re
from typing import Callable

_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,3})?")
#: Upper limit of the integer flags without one of their own: a C int.
MAX_INT_FLAG = 2**31 - 1
MAX_BATCH_SIZE = 2**20
#: The largest learning rate or weight decay: torch's optimizers turn them into float32 numbers.
MAX_RATE = 3.4028234663852886e38


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]."""
    def parse(text: str) -> int:
        value = _number(int, text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} must be a whole number in [{low}, {high}]")
        return value

    return parse


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high]."""
    def parse(text: str) -> float:
        value = _number(float, text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} must be a number in [{low:g}, {high:g}]")
        return value

    return parse


def positive_int(text: str) -> int:
    value = _number(int, text)
    if not 1 <= value <= MAX_INT_FLAG:
        raise argparse.ArgumentTypeError(f"{text} must be a whole number in [1, {MAX_INT_FLAG}]")
    return value


def non_negative_int(text: str) -> int:
    value = _number(int, text)
    if not 0 <= value <= MAX_INT_FLAG:
        raise argparse.ArgumentTypeError(f"{text} must be a whole number in [0, {MAX_INT_FLAG}]")
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


def rate(zero_allowed: bool) -> Callable[[str], float]:
    """An argparse type: a learning rate (above 0) or a weight decay (0 or more) that float32 holds."""
    def parse(text: str) -> float:
        value = (non_negative_float if zero_allowed else positive_float)(text)
        if value > MAX_RATE:
            raise argparse.ArgumentTypeError(f"{text} must be a number of at most {MAX_RATE:g}, the largest a "
                                             "float32 holds")
        return value

    return parse


def fraction(text: str) -> float:
    value = _number(float, text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} must lie strictly between 0 and 1")
    return value


def _number(kind: type, text: str) -> int | float:
    """`text` as an int or a float, read from ASCII digits only; inf and nan are not numbers here."""
    pattern = _INTEGER if kind is int else _DECIMAL
    value = kind(text.strip()) if pattern.fullmatch(text.strip()) else None
    if value is None or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number")
    return value


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every field of TrainingSettings, which every training subcommand takes alike; each default
    is the settings' own (the options are built from the parsed flags by field name)."""
    from katib_nas.contract.trial_bounds import MAX_SEED
    from katib_nas.trial_image.data import DATASETS
    from katib_nas.trial_image.inputs import DEFAULTS, DEVICES, MAX_THREADS
    from katib_nas.trial_image.reporting import DB_MANAGER_ENV, METRIC_FORMATS, TRIAL_NAME_ENV

    parser.add_argument("--dataset", choices=tuple(DATASETS), default=DEFAULTS.dataset,
                        help=f"training data (default {DEFAULTS.dataset})")
    parser.add_argument("--data-dir", metavar="PATH",
                        help="where the data is: " + "; ".join(f"{n}: {d.location}" for n, d in DATASETS.items()))
    parser.add_argument("--batch-size", type=bounded_int(1, MAX_BATCH_SIZE), default=DEFAULTS.batch_size,
                        help=f"batch size (default {DEFAULTS.batch_size})")
    parser.add_argument("--lr", type=rate(zero_allowed=False), default=DEFAULTS.lr,
                        help=f"peak learning rate (default {DEFAULTS.lr:g})")
    parser.add_argument("--weight-decay", type=rate(zero_allowed=True), default=DEFAULTS.weight_decay,
                        help=f"weight decay (default {DEFAULTS.weight_decay:g})")
    parser.add_argument("--device", choices=DEVICES, default=DEFAULTS.device,
                        help=f"auto picks CUDA when available (default {DEFAULTS.device})")
    parser.add_argument("--threads", type=bounded_int(1, MAX_THREADS),
                        help="CPU threads (default: OMP_NUM_THREADS, else the CPUs the container may use)")
    parser.add_argument("--val-fraction", type=fraction, default=DEFAULTS.val_fraction,
                        help=f"share of the training file held out for validation (default {DEFAULTS.val_fraction:g})")
    parser.add_argument("--split-seed", type=bounded_int(0, MAX_SEED), metavar="N",
                        help="seed of the training/validation split (default: the same fixed split for every "
                             "trial; other seeds give other validation images)")
    parser.add_argument("--max-train-samples", type=positive_int, help="train on at most this many images")
    parser.add_argument("--metrics-file", metavar="PATH", help="also write the metrics here for Katib's File collector")
    parser.add_argument("--metrics-format", choices=METRIC_FORMATS, default=DEFAULTS.metrics_format,
                        help="metrics file format: text (name=value lines) or json (one object per line, "
                             "string values)")
    parser.add_argument("--report-to-katib", action="store_true",
                        help="also push every report's numbers with kubeflow.katib.report_metrics when "
                             f"{TRIAL_NAME_ENV} is set, for Katib's Push collector (DB manager address from "
                             f"{DB_MANAGER_ENV}, else Katib's default)")
    parser.add_argument("--tfevent-dir", metavar="DIR",
                        help="also write every report's numbers as TensorFlow event scalars here, for Katib's "
                             "TensorFlowEvent collector (needs the tfevent extra)")
    parser.add_argument("--rendezvous-timeout", type=bounded_float(1, 86400), default=DEFAULTS.rendezvous_timeout,
                        metavar="SECONDS",
                        help="with several processes: how long each waits for the others at the rendezvous and in "
                             f"every exchange before it gives up (default {DEFAULTS.rendezvous_timeout:g})")
