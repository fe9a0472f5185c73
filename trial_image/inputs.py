"""What both training commands (`katib-nas trial`, `katib-nas proxyless-search`) take in alike and answer with:
bounds of their numbers, the architecture text as Katib passes it, and whether a network fits the
data. Imports no torch, so the command line can read the bounds cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

from katib_nas.contract.codec import decode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture

#: CPU threads; OMP_NUM_THREADS is held to the same bound.
MAX_THREADS = 1024
#: Channel counts of images (grey, RGB, RGBA): a first image axis of this size suggests channels-first data.
CHANNEL_COUNTS = (1, 3, 4)
#: Where a training command runs: auto picks CUDA when it is available.
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """What every training command takes alike: the data and its split, the optimiser, where it runs, where its
    metrics go. The one place of their defaults: the trainer, the commands' options, their flags and the
    pipeline's final training read them from here."""

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 3e-4
    device: str = "auto"
    threads: int | None = None
    val_fraction: float = 0.1
    split_seed: int | None = None
    max_train_samples: int | None = None
    metrics_file: str | None = None
    metrics_format: str = "text"
    report_to_katib: bool = False
    tfevent_dir: str | None = None
    rendezvous_timeout: float = 300.0


DEFAULTS = TrainingSettings()


@dataclass(frozen=True, kw_only=True)
class SupernetSettings:
    """What `katib-nas proxyless-search` takes beyond the training settings, with the one home of its
    defaults: the command's flags and the trial's options read them from here."""

    #: Share of the training images held out for architecture steps.
    arch_fraction: float = 0.2
    #: One architecture step every this many weight steps.
    arch_every: int = 2
    #: Uniformly sampled paths the derived network is ranked among (0: no ranking).
    rank_paths: int = 0


SUPERNET_DEFAULTS = SupernetSettings()
Options = TypeVar("Options", bound=TrainingSettings)


def options_from(cls: type[Options], values: Mapping[str, Any] | Any, **overrides: Any) -> Options:
    """`cls` built from the attributes (parsed flags) or items of `values` named like its fields, then
    `overrides`: each field is copied by its name, none is listed by hand."""
    get = values.get if isinstance(values, Mapping) else lambda name, default: getattr(values, name, default)
    missing = object()
    found = {f.name: get(f.name, missing) for f in fields(cls)}
    return cls(**{name: value for name, value in found.items() if value is not missing}, **overrides)


def check_output_dir(path: Path, flag: str, purpose: str, files: Sequence[str]) -> None:
    """`flag` must name a writable directory (created here) in which each of `files` can be written as a file;
    `purpose` ends the line that refuses a file in its place ("for checkpoints")."""
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"{flag} {path} is a file, not a directory; give a directory {purpose}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInput(f"{flag} {path} cannot be created: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidInput(f"{flag} {path} is not writable")
    for name in files:
        if (path / name).is_dir():
            raise InvalidInput(f"{flag} {path} holds a directory named {name}, where a file of that name is written")


def split_seed(option: int | None) -> tuple[int, ...]:
    """split_dataset's seed argument for a --split-seed option: none given keeps the data module's fixed split."""
    return () if option is None else (option,)


def strip_quotes(text: str) -> str:
    """Drop one pair of surrounding double quotes, which Katib passes through literally from `--x="${...}"`."""
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def parse_architecture(text: str) -> Architecture:
    return decode(strip_quotes(text.strip()))


def check_fits(arch: Architecture, shape: tuple[int, int, int], num_classes: int, source: str, *,
               first_label: int = 0) -> None:
    """The network must take the data's image shape and have an output for every label (`first_label`, the
    data's smallest, says whether numbering the labels from 0 would help)."""
    if tuple(arch.input_shape) != tuple(shape):
        raise InvalidInput(f"architecture input {_shape_text(arch.input_shape)} does not match the images of "
                           f"{source} ({_shape_text(shape)}); {_shape_advice(shape)}")
    if arch.num_classes < num_classes:
        raise InvalidInput(f"architecture has {arch.num_classes} classes but {source} has labels up to "
                           f"{num_classes - 1} (labels are class indices 0..K-1); change the 'cls' part of the "
                           f"architecture text (in an Experiment: graphConfig's outputSizes [{num_classes}])"
                           + (f" or number the labels from 0 (they start at {first_label})" if first_label > 0 else ""))


def _shape_advice(shape: tuple[int, int, int]) -> str:
    """How to make a network and images of another shape meet: images read as (H, W, C) whose H is a channel
    count and whose C is not were most likely saved channels-first, which a matching architecture would train on
    as a few rows of many channels."""
    height, _, channels = shape
    if height in CHANNEL_COUNTS and channels not in CHANNEL_COUNTS:
        return (f"the images look channels-first (N, C, H, W) = (N, {_shape_text(shape).replace('x', ', ')}): "
                f"the data is read as (N, H, W, C), so save x.transpose(0, 2, 3, 1)")
    return "change the 'in' part of the architecture text (in an Experiment: graphConfig's inputSizes [H, W, C])"


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)
