"""One trial, end to end: decode, load data, build, train, evaluate, measure, export, report.

Bad input is found before any training (InvalidInput, exit 2). A diverged run
prints one line on stderr, reports no objective and exits 3. A failed push
or export exits 1 with one line; the final metrics are written first, so an
export that fails (a full disk) does not lose the trained result.

Started by torchrun (or a PyTorchJob or TrainJob) with several processes, the
trial trains data-parallel (see distributed.py); rank 0 alone writes metrics,
statistics, checkpoints and exports, and a process that fails or vanishes
makes every other one stop with one line and exit 1. With --checkpoint-dir
every epoch ends with a checkpoint and a restarted trial continues from it.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from katib_nas.contract.branch_stats import DEFAULT_STATISTIC
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.exit_codes import EXIT_DIVERGED, EXIT_FAILED, EXIT_OK
from katib_nas.contract.metric_format import (
    FLOPS,
    GIGA_FLOPS,
    LATENCY_MS,
    MILLION_PARAMS,
    PARAMS,
    PREDICTED_LATENCY_MS,
    VALIDATION_ACCURACY,
    VALIDATION_LOSS,
)
from katib_nas.contract.spec import Architecture
from katib_nas.contract.trial_bounds import MAX_EPOCHS, MAX_SEED

from .allocator import describe as describe_allocator
from .allocator import release_free_memory
from .inputs import (
    MAX_THREADS,
    TrainingSettings,
    check_fits,
    check_output_dir,
    parse_architecture,
    split_seed,
)

if TYPE_CHECKING:
    import torch

    from .checkpoint import Checkpoint
    from .data import ImageData, Split
    from .distributed import Parallel, Placement
    from .model import Network
    from .proxyless.table import LatencyTable
    from .reporting import MetricsWriter
    from .trainer import EpochReport, EpochResult, Tensors, TrainConfig

#: Branch statistics are recorded over this last share of the training steps, once the network has learned.
STATISTICS_FRACTION = 0.5
LOG = logging.getLogger("katib_nas.trial_image")


@dataclass(frozen=True, kw_only=True)
class TrialOptions(TrainingSettings):
    """Everything `katib-nas trial` takes (the training settings and its own); see `katib-nas trial --help`."""

    architecture: str
    epochs: int = 1
    steps: int | None = None
    seed: int = 0
    branch_stats: bool = False
    branch_statistic: str = DEFAULT_STATISTIC
    test: bool = False
    export_dir: str | None = None
    latency_table: str | None = None
    checkpoint_dir: str | None = None


def _error_line(err: Exception, parallel: Parallel) -> None:
    """One line on stderr for an error every process meets alike: printed by rank 0 only."""
    if parallel.is_main:
        print(f"katib-nas trial: error: {err}", file=sys.stderr, flush=True)


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
    if options.checkpoint_dir:
        from .checkpoint import check_checkpoint_dir

        check_checkpoint_dir(Path(options.checkpoint_dir))


def _check_range(flag: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidInput(f"{flag} {value} must be in [{low}, {high}]")


def _check_omp_threads(text: str) -> None:
    """OMP_NUM_THREADS, which sets the thread count without --threads, must be a count torch accepts."""
    if text.isascii() and text.isdigit() and (len(text) > 7 or not 1 <= int(text) <= MAX_THREADS):
        raise InvalidInput(f"OMP_NUM_THREADS={text} must be in [1, {MAX_THREADS}] (or pass --threads)")


def check_export_dir(path: Path) -> None:
    """--export-dir must be a writable directory (created here) whose export file names are free for files."""
    from .export import EXPORT_FILES

    check_output_dir(path, "--export-dir", "to export into", EXPORT_FILES)


def run_trial(options: TrialOptions, stream: TextIO | None = None) -> int:
    """Run the trial and return its exit code; raises InvalidInput for bad input before training."""
    check_options(options)
    from .distributed import environment_placement

    placement = environment_placement()
    arch = parse_architecture(options.architecture)
    from .reporting import MetricsWriter, output_sinks

    sinks = output_sinks(options.report_to_katib, options.tfevent_dir) if placement.is_main else []
    writer = MetricsWriter(options.metrics_file, options.metrics_format, stream, sinks=sinks) if placement.is_main \
        else MetricsWriter(None, options.metrics_format, io.StringIO())
    started = time.perf_counter()
    from .data import load_dataset, load_test_set, split_dataset

    data = load_dataset(options.dataset, options.data_dir)
    check_fits(arch, data.shape, data.num_classes, options.dataset, first_label=data.first_label)
    test_data = load_test_set(options.dataset, options.data_dir) if options.test else None
    split = split_dataset(data, options.val_fraction, options.max_train_samples, *split_seed(options.split_seed))
    del data  # the whole training file; from here on only the split's rows are kept
    release_free_memory()
    from .distributed import PeerLost, check_shares, start, stop
    from .runtime import resolve_device

    check_shares(placement, options.batch_size, len(split.train_y))
    device = resolve_device(options.device)
    # Profiling (`measure`) is rank 0's alone; a table file is checked by every process before training.
    measuring_elsewhere = options.latency_table == "measure" and not placement.is_main
    table = None if measuring_elsewhere else _latency_table(options.latency_table, arch, device)
    try:
        parallel = start(placement, device, options.rendezvous_timeout)
    except PeerLost as err:
        print(f"katib-nas trial: error: {err}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    code = EXIT_FAILED
    try:
        run = _prepare(options, arch, split, test_data, parallel, placement)
        LOG.info("ready after %.1f s; training %s; memory from %s", time.perf_counter() - started,
                 run.model.arch_text, describe_allocator(os.environ))
        code = _train_and_report(run, arch, split, options, writer, table)
        return code
    finally:
        stop(parallel, finished=code == EXIT_OK)


@dataclass
class PreparedRun:
    """The network and tensors on the training device, the configuration and the processes' group."""

    model: Network
    tensors: Tensors
    config: TrainConfig
    parallel: Parallel
    test: tuple[torch.Tensor, torch.Tensor] | None


def _prepare(options: TrialOptions, arch: Architecture, split: Split, test_data: ImageData | None,
             parallel: Parallel, placement: Placement) -> PreparedRun:
    """Build the network and move the data to the device, in channels_last (see runtime.channels_last)."""
    import torch

    from .data import normalise
    from .model import build_model
    from .runtime import channels_last, configure_threads, seed_everything
    from .trainer import Tensors, TrainConfig

    device = parallel.device
    threads = configure_threads(options.threads)
    LOG.info("%s: %d training and %d validation images, device %s, %d CPU thread(s), rank %d of %d",
             options.dataset, len(split.train_y), len(split.val_y), device, threads, placement.rank,
             placement.world_size)
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
    return PreparedRun(model, tensors, config, parallel, test)


def _latency_table(option: str | None, arch: Architecture, device: torch.device) -> LatencyTable | None:
    """The table whose entries predict this network's latency (checked to cover it before any training)."""
    if option is None:
        return None
    from .proxyless.profiler import obtain_table
    from .proxyless.table import network_keys

    table = obtain_table(option, arch, device)
    table.require(network_keys(arch), "the network")
    return table


def cost_metrics(params: int, macs: int) -> dict[str, float | int]:
    """params and flops (multiply-accumulates) as counts, and as mparams (millions) and gflops (billions): on the
    scale of an accuracy, so the Katib UI's one-axis trial plot keeps the accuracy curve readable. No name
    starts with another (Katib's TensorFlowEvent collector matches tags by prefix)."""
    return {PARAMS: params, MILLION_PARAMS: params / 1e6, FLOPS: macs, GIGA_FLOPS: macs / 1e9}


class EpochMetrics:
    """The per-epoch report: training metrics after every epoch, and after every epoch but the last also
    Validation-Accuracy and Validation-Loss, so Katib draws a curve and early stopping has values to compare.
    The last epoch's validation metrics are the final report's, measured once. Restored epochs are written
    again with their first timestamps."""

    def __init__(self, model: Network, tensors: Tensors, config: TrainConfig, writer: MetricsWriter,
                 parallel: Parallel | None = None):
        from .trainer import SINGLE, total_steps

        self.model, self.tensors, self.writer = model, tensors, writer
        self.batch_size = config.batch_size
        self.parallel = parallel or SINGLE
        self.last_step = total_steps(len(tensors.train_y), config, self.parallel.world_size)
        self.started, self.first_step = time.perf_counter(), 0  # when the epoch started, its first step

    def measure(self, result: EpochResult) -> EpochReport:
        from .trainer import EpochReport, evaluate_trained, finite_validation_loss

        steps = result.steps - self.first_step
        seconds = time.perf_counter() - self.started
        LOG.info("epoch %d: %d steps in %.2f s, %.0f images/s over %d process(es)", result.epoch, steps, seconds,
                 steps * self.batch_size / max(seconds, 1e-9), self.parallel.world_size)
        metrics: dict[str, float] = {}
        if result.steps < self.last_step:
            val_loss, val_accuracy = evaluate_trained(self.model, self.tensors, parallel=self.parallel)
            finite_validation_loss(val_loss, result.epoch)
            self.model.train()
            metrics = {VALIDATION_ACCURACY: val_accuracy, VALIDATION_LOSS: val_loss}
        metrics.update({"Train-Loss": result.train_loss, "Train-Accuracy": result.train_accuracy})
        return EpochReport(self.writer.stamp(), metrics, result.steps)

    def report(self, report: EpochReport, restored: bool) -> None:
        if restored:
            self.writer.rewrite(report.stamp, report.metrics)
        else:
            self.writer.write(report.metrics, stamp=report.stamp)
        self.started, self.first_step = time.perf_counter(), report.steps


def checkpoint_identity(model: Network, options: TrialOptions, training_images: int) -> dict[str, object]:
    """What a checkpoint must share with this run to continue it: the network, the data (--data-dir as an
    absolute path and --split-seed: other data of the same size would resume silently) and the settings that
    shape the training trajectory (not the number of processes: batches are global)."""
    data_dir = os.path.abspath(options.data_dir) if options.data_dir else None
    return {"architecture": model.arch_text, "--dataset": options.dataset, "--data-dir": data_dir,
            "--epochs": options.epochs, "--steps": options.steps, "--batch-size": options.batch_size,
            "--lr": options.lr, "--weight-decay": options.weight_decay, "--seed": options.seed,
            "--split-seed": options.split_seed,
            "--val-fraction": options.val_fraction, "--max-train-samples": options.max_train_samples,
            "training images": training_images}


def _checkpoint(run: PreparedRun, options: TrialOptions) -> Checkpoint | None:
    """The run's checkpoint, loaded (weights in the model) when one is there; None without --checkpoint-dir."""
    if not options.checkpoint_dir:
        return None
    from .checkpoint import Checkpoint

    checkpoint = Checkpoint(Path(options.checkpoint_dir), run.model,
                            checkpoint_identity(run.model, options, len(run.tensors.train_y)), run.parallel)
    checkpoint.load()
    return checkpoint


def _train(run: PreparedRun, options: TrialOptions, writer: MetricsWriter
           ) -> tuple[list[EpochResult], float, float, dict[str, float]]:
    """Train (data-parallel with several processes) and evaluate; (results, val loss, val accuracy, test
    metrics). Raises Diverged, PeerLost or CheckpointError."""
    from .trainer import evaluate, evaluate_trained, finite_validation_loss, train

    model, parallel = run.model, run.parallel
    recording = False

    def start_statistics(step: int, steps: int) -> None:
        # the last part of the run: statistics of a trained network (also when a resumed run starts past it)
        nonlocal recording
        if options.branch_stats and not recording and step >= int(steps * (1.0 - STATISTICS_FRACTION)):
            recording = True
            model.record_branch_stats(True)

    checkpoint = _checkpoint(run, options)
    results = train(parallel.wrap(model), run.tensors, run.config, before_step=start_statistics,
                    reporter=EpochMetrics(model, run.tensors, run.config, writer, parallel), parallel=parallel,
                    checkpoint=checkpoint)
    val_loss, val_accuracy = evaluate_trained(model, run.tensors, parallel=parallel)
    finite_validation_loss(val_loss, results[-1].epoch)
    test_metrics = {} if run.test is None else dict(zip(("Test-Loss", "Test-Accuracy"),
                                                        evaluate(model, *run.test, parallel=parallel)))
    model.record_branch_stats(False)
    parallel.average_statistics(model)
    return results, val_loss, val_accuracy, test_metrics


def _train_and_report(run: PreparedRun, arch: Architecture, split: Split, options: TrialOptions,
                      writer: MetricsWriter, table: LatencyTable | None = None) -> int:
    """Train, then (rank 0) measure, export and report; the objective is written only after training and
    measuring succeeded. A failed export is one line after the metrics (they still reach the collector), exit 1."""
    from katib_nas.contract.branch_stats import (
        BRANCH_STATS_METRIC,
        SKIP_GATES_METRIC,
        format_branch_stats,
        format_skip_gates,
    )

    from .checkpoint import CheckpointError
    from .measure import count_parameters, measure_latency_ms, model_macs
    from .reporting import TRIAL_NAME_ENV, ReportError, push_requested
    from .trainer import Diverged

    try:
        results, val_loss, val_accuracy, test_metrics = _train(run, options, writer)
    except Diverged as err:
        _error_line(err, run.parallel)
        return EXIT_DIVERGED
    except ReportError as err:
        print(f"katib-nas trial: error: {err}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except (RuntimeError, CheckpointError) as err:
        lost = err if isinstance(err, CheckpointError) else run.parallel.lost(err)
        if lost is None:
            raise
        print(f"katib-nas trial: error: {lost}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    if not run.parallel.is_main:
        return EXIT_OK
    model = run.model
    if next(model.parameters()).device.type == "cpu":
        import torch

        model = model.to(memory_format=torch.contiguous_format)  # latency and export in the default layout
    final: dict[str, float | int | str] = {
        VALIDATION_ACCURACY: val_accuracy,
        VALIDATION_LOSS: val_loss,
        **test_metrics,
        "Train-Loss": results[-1].train_loss,
        "Train-Accuracy": results[-1].train_accuracy,
        **cost_metrics(count_parameters(model), model_macs(model, arch.input_shape)),
        LATENCY_MS: measure_latency_ms(model, arch.input_shape),
    }
    if table is not None:
        final[PREDICTED_LATENCY_MS] = table.predict_ms(arch)
    if options.branch_stats:
        final[BRANCH_STATS_METRIC] = format_branch_stats(model.branch_stats(options.branch_statistic),
                                                         options.branch_statistic)
        final[SKIP_GATES_METRIC] = format_skip_gates(model.skip_gates())
    failures: list[Exception] = []
    if options.export_dir:
        from .export import ExportError, export_model

        try:
            files = export_model(model, model.arch_text, arch.input_shape, split.mean, split.std, final,
                                 options.export_dir, scale=split.scale)
            LOG.info("exported %s to %s", ", ".join(files.values()), options.export_dir)
        except ExportError as err:
            failures.append(err)  # reported after the metrics: the trained result still reaches the collector
    try:
        writer.write(final)
    except ReportError as err:
        failures.insert(0, err)
    for failure in failures:
        print(f"katib-nas trial: error: {failure}", file=sys.stderr, flush=True)
    if failures:
        return EXIT_FAILED
    if options.report_to_katib and not push_requested(True):
        LOG.warning("--report-to-katib given but %s is not set: metrics were not pushed", TRIAL_NAME_ENV)
    return EXIT_OK
