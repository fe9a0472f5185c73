"""argparse value types shared by the subcommands: each refuses bad text with a message naming the rule."""

from __future__ import annotations

import argparse


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


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, optimiser, device and metrics-file flags that every training subcommand takes alike."""
    from katib_nas.trial_image.data import DATASETS

    parser.add_argument("--dataset", choices=DATASETS, default="fashion-mnist",
                        help="training data (default fashion-mnist from /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--data-dir", metavar="PATH",
                        help="data location: Fashion-MNIST idx.gz folder, CIFAR-10 binary batches folder, "
                             "or the .npz file (arrays x and y)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="batch size (default 128)")
    parser.add_argument("--lr", type=positive_float, default=0.05, help="peak learning rate (default 0.05)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=3e-4, help="weight decay (default 3e-4)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto picks CUDA when available (default auto)")
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads (default: OMP_NUM_THREADS, else the CPUs the container may use)")
    parser.add_argument("--val-fraction", type=fraction, default=0.1,
                        help="share of the training file held out for validation (default 0.1)")
    parser.add_argument("--max-train-samples", type=positive_int, help="train on at most this many images")
    parser.add_argument("--metrics-file", metavar="PATH", help="also write the metrics here for Katib's File collector")
    parser.add_argument("--metrics-format", choices=("text", "json"), default="text",
                        help="metrics file format: text (name=value lines) or json (one object per line, "
                             "string values)")
