"""One trial, end to end: decode, load data, build, train, evaluate, measure, export, report.

Bad input is found before any training (InvalidInput, exit 2). A diverged run
prints one line on stderr, reports no objective and exits 3. A failed push
or export exits 1.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

from katib_nas.contract.codec import decode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture

if TYPE_CHECKING:
    import torch

    from .data import Split
    from .model import Network
    from .proxyless.table import LatencyTable
    from .reporting import MetricsWriter
    from .trainer import EpochResult, Tensors, TrainConfig

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DIVERGED = 3
#: Branch statistics are recorded over this last share of the training steps, once the network has learned.
STATISTICS_FRACTION = 0.5
LOG = logging.getLogger("katib_nas.trial_image")
#: Seeds numpy and torch both take.
MAX_SEED = 2**32 - 1
#: CPU threads; OMP_NUM_THREADS is held to the same bound.
MAX_THREADS = 1024
MAX_EPOCHS = 1_000_000


@dataclass(frozen=True)
class TrialOptions:
    """Everything `katib-nas trial` takes; see `katib-nas trial --help`."""

    architecture: str
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    epochs: int = 1
    steps: int | None = None
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 3e-4
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    val_fraction: float = 0.1
    split_seed: int | None = None
    max_train_samples: int | None = None
    branch_stats: bool = False
    branch_statistic: str = "taylor"
    test: bool = False
    metrics_file: str | None = None
    metrics_format: str = "text"
    report_to_katib: bool = False
    export_dir: str | None = None
    latency_table: str | None = None


def split_seed(option: int | None) -> tuple[int, ...]:
    """split_dataset's seed argument for a --split-seed option: none given keeps the data module's fixed split."""
    return () if option is None else (option,)


def strip_quotes(text: str) -> str:
    """Drop one pair of surrounding double quotes, which Katib passes through literally from `--x="${...}"`."""
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def parse_architecture(text: str) -> Architecture:
    return decode(strip_quotes(text.strip()))


def check_fits(arch: Architecture, shape: tuple[int, int, int], num_classes: int, source: str) -> None:
    """The network must take the data's image shape and have an output for every label."""
    if tuple(arch.input_shape) != tuple(shape):
        raise InvalidInput(f"architecture input {_shape_text(arch.input_shape)} does not match the images of "
                           f"{source} ({_shape_text(shape)}); change the 'in' part of the architecture text")
    if arch.num_classes < num_classes:
        raise InvalidInput(f"architecture has {arch.num_classes} classes but {source} has labels up to "
                           f"{num_classes - 1}; change the 'cls' part of the architecture text")


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def check_options(options: TrialOptions) -> None:
    """Numbers within the bounds torch and numpy take, and every output path writable: before any work."""
    _check_range("--seed", options.seed, 0, MAX_SEED)
    _check_range("--epochs", options.epochs, 1, MAX_EPOCHS)
    if options.split_seed is not None:
        _check_range("--split-seed", options.split_seed, 0, MAX_SEED)
    if options.threads is not None:
        _check_range("--threads", options.threads, 1, MAX_THREADS)
    else:
        _check_omp_threads(os.environ.get("OMP_NUM_THREADS", ""))
    if options.export_dir:
        check_export_dir(Path(options.export_dir))


def _check_range(flag: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidInput(f"{flag} {value} must be in [{low}, {high}]")


def _check_omp_threads(text: str) -> None:
    """OMP_NUM_THREADS, which sets the thread count without --threads, must be a count torch accepts."""
    if text.isascii() and text.isdigit() and (len(text) > 7 or not 1 <= int(text) <= MAX_THREADS):
        raise InvalidInput(f"OMP_NUM_THREADS={text} must be in [1, {MAX_THREADS}] (or pass --threads)")


def check_export_dir(path: Path) -> None:
    """--export-dir must be a writable directory (created here) whose export file names are free for files."""
    from .export import METADATA_FILE, ONNX_FILE, TORCHSCRIPT_FILE

    if path.exists() and not path.is_dir():
        raise InvalidInput(f"--export-dir {path} is a file, not a directory; give a directory to export into")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInput(f"--export-dir {path} cannot be created: {err.strerror or err}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise InvalidInput(f"--export-dir {path} is not writable")
    for name in (TORCHSCRIPT_FILE, ONNX_FILE, METADATA_FILE):
        if (path / name).is_dir():
            raise InvalidInput(f"--export-dir {path} holds a directory named {name}, where the export writes a file")


def run_trial(options: TrialOptions, stream: TextIO | None = None) -> int:
    """Run the trial and return its exit code; raises InvalidInput for bad input before training."""
    check_options(options)
    arch = parse_architecture(options.architecture)
    from .reporting import MetricsWriter, check_push_available, push_requested

    if push_requested(options.report_to_katib):
        check_push_available()
    writer = MetricsWriter(options.metrics_file, options.metrics_format, stream)
    started = time.perf_counter()
    from .data import load_dataset, load_test_set, normalise, split_dataset

    data = load_dataset(options.dataset, options.data_dir)
    check_fits(arch, data.shape, data.num_classes, options.dataset)
    test_data = load_test_set(options.dataset, options.data_dir) if options.test else None
    split = split_dataset(data, options.val_fraction, options.max_train_samples, *split_seed(options.split_seed))
    del data  # the whole training file; from here on only the split's rows are kept

    import torch

    from .model import build_model
    from .runtime import channels_last, configure_threads, resolve_device, seed_everything
    from .trainer import Tensors, TrainConfig

    device = resolve_device(options.device)
    threads = configure_threads(options.threads)
    LOG.info("%s: %d training and %d validation images, device %s, %d CPU thread(s)", options.dataset,
             len(split.train_y), len(split.val_y), device, threads)
    table = _latency_table(options.latency_table, arch, device)
    seed_everything(options.seed, device)
    model = build_model(arch).to(device)
    tensors = Tensors(*(torch.from_numpy(a).to(device) for a in (split.train_x, split.train_y, split.val_x,
                                                                  split.val_y)))
    # channels_last on every device (see runtime.channels_last): 5x5 and 7x7 depthwise kernels above all.
    model = model.to(memory_format=torch.channels_last)
    tensors.train_x, tensors.val_x = channels_last(tensors.train_x), channels_last(tensors.val_x)
    test = None if test_data is None else (
        channels_last(torch.from_numpy(normalise(test_data.images, split.mean, split.std)).to(device)),
        torch.from_numpy(test_data.labels).to(device))
    config = TrainConfig(epochs=options.epochs, steps=options.steps, batch_size=options.batch_size, lr=options.lr,
                         weight_decay=options.weight_decay, seed=options.seed)
    LOG.info("ready after %.1f s; training %s", time.perf_counter() - started, model.arch_text)
    return _train_and_report(model, arch, split, tensors, config, options, writer, test, table)


def _latency_table(option: str | None, arch: Architecture, device: torch.device) -> LatencyTable | None:
    """The table whose entries predict this network's latency (checked to cover it before any training)."""
    if option is None:
        return None
    from .proxyless.profiler import obtain_table
    from .proxyless.table import network_keys

    table = obtain_table(option, arch, device)
    table.require(network_keys(arch), "the network")
    return table


def epoch_reporter(model: Network, tensors: Tensors, config: TrainConfig, writer: MetricsWriter
                   ) -> Callable[[EpochResult], None]:
    """The per-epoch report: training metrics after every epoch, and after every epoch but the last also
    Validation-Accuracy and Validation-Loss, so Katib draws a curve and early stopping has values to compare.
    The last epoch's validation metrics are the final report's, measured once."""
    from .trainer import evaluate_trained, total_steps

    last_step = total_steps(len(tensors.train_y), config)

    def report(result: EpochResult) -> None:
        metrics: dict[str, float] = {}
        if result.steps < last_step:
            val_loss, val_accuracy = evaluate_trained(model, tensors)
            model.train()
            metrics = {"Validation-Accuracy": val_accuracy, "Validation-Loss": val_loss}
        writer.write({**metrics, "Train-Loss": result.train_loss, "Train-Accuracy": result.train_accuracy})

    return report


def _train_and_report(model: Network, arch: Architecture, split: Split, tensors: Tensors, config: TrainConfig,
                      options: TrialOptions, writer: MetricsWriter,
                      test: tuple[torch.Tensor, torch.Tensor] | None = None,
                      table: LatencyTable | None = None) -> int:
    """Train, then measure, export and report; the objective is written only after everything succeeded."""
    from katib_nas.contract.branch_stats import (
        BRANCH_STATS_METRIC,
        SKIP_GATES_METRIC,
        format_branch_stats,
        format_skip_gates,
    )

    from .cost import count_macs, count_parameters, measure_latency_ms
    from .reporting import ReportError, push_requested, push_to_katib
    from .trainer import Diverged, evaluate, evaluate_trained, train

    def start_statistics(step: int, steps: int) -> None:
        if options.branch_stats and step == int(steps * (1.0 - STATISTICS_FRACTION)):
            model.record_branch_stats(True)  # the last part of the run: statistics of a trained network

    try:
        results = train(model, tensors, config, before_step=start_statistics,
                        on_epoch=epoch_reporter(model, tensors, config, writer))
        val_loss, val_accuracy = evaluate_trained(model, tensors)
        if val_loss != val_loss:
            raise Diverged(results[-1].epoch, 1, results[-1].steps)
        test_metrics = {} if test is None else dict(zip(("Test-Loss", "Test-Accuracy"), evaluate(model, *test)))
    except Diverged as err:
        print(f"katib-nas trial: error: {err}", file=sys.stderr, flush=True)
        return EXIT_DIVERGED
    model.record_branch_stats(False)
    if next(model.parameters()).device.type == "cpu":
        import torch

        model = model.to(memory_format=torch.contiguous_format)  # latency and export in the default layout
    final: dict[str, float | int | str] = {
        "Validation-Accuracy": val_accuracy,
        "Validation-Loss": val_loss,
        **test_metrics,
        "Train-Loss": results[-1].train_loss,
        "Train-Accuracy": results[-1].train_accuracy,
        "params": count_parameters(model),
        "flops": count_macs(model, arch.input_shape),
        "latency-ms": measure_latency_ms(model, arch.input_shape),
    }
    if table is not None:
        final["predicted-latency-ms"] = table.predict_ms(arch)
    if options.branch_stats:
        final[BRANCH_STATS_METRIC] = format_branch_stats(model.branch_stats(options.branch_statistic),
                                                         options.branch_statistic)
        final[SKIP_GATES_METRIC] = format_skip_gates(model.skip_gates())
    if options.export_dir:
        from .export import export_model

        files = export_model(model, model.arch_text, arch.input_shape, split.mean, split.std, final,
                             options.export_dir)
        LOG.info("exported %s to %s", ", ".join(files.values()), options.export_dir)
    writer.write(final)
    if push_requested(options.report_to_katib):
        try:
            push_to_katib(final)
        except ReportError as err:
            print(f"katib-nas trial: error: {err}", file=sys.stderr, flush=True)
            return EXIT_FAILED
    elif options.report_to_katib:
        LOG.warning("--report-to-katib given but KATIB_TRIAL_NAME is not set: metrics were not pushed")
    return EXIT_OK
