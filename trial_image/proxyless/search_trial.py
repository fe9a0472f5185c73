"""`katib-nas proxyless-search` end to end: data, supernet search, derived network, metrics.

The metrics are written as name=value lines for Katib's collector:
Best-Architecture (string; collect with a metricsFormat regex such as
`(Best-Architecture)=([\\w./:+@-]+)`), Validation-Accuracy and
Validation-Loss of the derived network, latency-ms (measured, batch 1, at the
latency table's thread count) and predicted-latency-ms (from the table).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import torch

from katib_nas.contract.codec import encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.exit_codes import EXIT_DIVERGED, EXIT_FAILED, EXIT_OK
from katib_nas.contract.metric_format import (
    BEST_ARCHITECTURE_METRIC,
    LATENCY_MS,
    PREDICTED_LATENCY_MS,
    VALIDATION_ACCURACY,
    VALIDATION_LOSS,
)
from katib_nas.contract.oneshot_settings import SearchConfig, from_text
from katib_nas.contract.spec import Architecture

from ..allocator import describe as describe_allocator
from ..allocator import release_free_memory
from ..data import Split, load_dataset, seeded_split, split_dataset
from ..distributed import Parallel, PeerLost, check_shares, environment_placement, start, stop
from ..inputs import (
    SupernetSettings,
    TrainingSettings,
    check_fits,
    parse_architecture,
    split_seed,
    strip_quotes,
)
from ..model import build_model
from ..reporting import MetricsWriter, ReportError, output_sinks
from ..runtime import channels_last, configure_threads, resolve_device, seed_everything
from ..trainer import (
    Diverged,
    Tensors,
    TrainConfig,
    evaluate,
    finite_validation_loss,
    recalibrate_batchnorm,
    train,
)
from .latency_loss import LatencyModel
from .profiler import MEASURE, Timing, obtain_table, table_timing, time_network_ms
from .search import Optimisation, PathConfidence, SearchData, evaluate_derived, rank_against_uniform, run_search
from .table import LatencyTable

LOG = logging.getLogger("katib_nas.trial_image.proxyless")
ARCH_SPLIT_SEED = 2019
#: --latency-table value that profiles the supernet on the trial's own device before searching.


@dataclass(frozen=True, kw_only=True)
class SearchOptions(TrainingSettings, SupernetSettings):
    """Everything `katib-nas proxyless-search` takes (the training settings and its own); see its --help."""

    supernet: str
    search: str
    latency_table: str | None = None


def parse_inputs(options: SearchOptions) -> tuple[Architecture, SearchConfig]:
    """Supernet and search config; InvalidInput when the supernet has no searchable block."""
    supernet = parse_architecture(options.supernet)
    if not any(cell.choice for cell in supernet.cells):
        raise InvalidInput("--architecture has no searchable block (a choice cell such as mb3e3_mb5e6_zero@r)")
    if any(cell.skips or not cell.choice for cell in supernet.cells):
        raise InvalidInput("--architecture must consist of choice cells without skip inputs, as proxylessnas proposes")
    return supernet, from_text(strip_quotes(options.search.strip()))


def run_proxyless_search(options: SearchOptions, stream: TextIO | None = None) -> int:
    """Search, derive, evaluate, measure and report; InvalidInput before any training on bad input.

    Under torchrun (or a PyTorchJob or TrainJob) with several processes the supernet trains data-parallel;
    rank 0 profiles the latency table (`measure`) and hands it to the others, and reports alone."""
    supernet, config = parse_inputs(options)
    placement = environment_placement()
    device = resolve_device(options.device)
    measuring_elsewhere = options.latency_table == MEASURE and not placement.is_main
    table = None if measuring_elsewhere else obtain_table(options.latency_table, supernet, device)
    if config.hardware_aware and options.latency_table is None:
        raise InvalidInput(f"the search has a latency target ({config.target:g} ms): pass --latency-table "
                           f"(made by `katib-nas profile`)")
    writer = MetricsWriter(options.metrics_file, options.metrics_format, stream,
                           sinks=output_sinks(options.report_to_katib, options.tfevent_dir)) if placement.is_main \
        else MetricsWriter(None, options.metrics_format, io.StringIO())
    latency = LatencyModel.from_table(table, supernet) if table else None
    threads = configure_threads(options.threads)
    data = load_dataset(options.dataset, options.data_dir)
    check_fits(supernet, data.shape, data.num_classes, options.dataset, first_label=data.first_label)
    split = split_dataset(data, options.val_fraction, options.max_train_samples, *split_seed(options.split_seed))
    del data  # the whole training file; from here on only the split's rows are kept
    search_data = split_search_data(split, options.arch_fraction, device)
    del split
    release_free_memory()
    check_shares(placement, options.batch_size, len(search_data.weight_y))
    check_shares(placement, options.batch_size, len(search_data.arch_y), "--batch-size (architecture steps)",
                 ("architecture images", "--arch-fraction, --max-train-samples"))
    try:
        parallel = start(placement, device, options.rendezvous_timeout)
    except PeerLost as err:
        print(f"katib-nas proxyless-search: error: {err}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    code = EXIT_FAILED
    try:
        if measuring_elsewhere:
            table = _shared_table(table, parallel)
            latency = LatencyModel.from_table(table, supernet)
        elif options.latency_table == MEASURE and placement.active:
            _shared_table(table, parallel)
        LOG.info("%s: %d weight, %d architecture and %d validation images, device %s, %d threads, rank %d of %d; "
                 "memory from %s", options.dataset, len(search_data.weight_y), len(search_data.arch_y),
                 len(search_data.val_y), device, threads, placement.rank, placement.world_size,
                 describe_allocator(os.environ))
        code = _search_and_report(supernet, config, options, search_data, (table, latency), parallel, writer,
                                  threads)
        return code
    finally:
        stop(parallel, finished=code == EXIT_OK)


def _shared_table(table: LatencyTable | None, parallel: Parallel) -> LatencyTable:
    """The table rank 0 measured, on every process (each must weigh latency alike)."""
    payload = parallel.broadcast_bytes(json.dumps(table.to_json()).encode() if table is not None else b"")
    data = json.loads(payload)
    return LatencyTable({k: float(v) for k, v in data["entries"].items()}, data["device"], int(data["batch_size"]),
                        int(data["threads"]), dict(data["meta"]))


def _search_and_report(supernet: Architecture, config: SearchConfig, options: SearchOptions, search_data: SearchData,
                       latencies: tuple[LatencyTable | None, LatencyModel | None], parallel: Parallel,
                       writer: MetricsWriter, threads: int) -> int:
    """Run the search on every process; rank 0 measures the derived network and writes the metrics."""
    device = search_data.weight_x.device
    table, latency = latencies
    seed_everything(config.seed, device)
    optimisation = Optimisation(options.batch_size, options.lr, options.weight_decay, options.arch_every)
    try:
        search, result = run_search(supernet, config, optimisation, search_data, latency, parallel=parallel,
                                    on_epoch=lambda epoch, loss, probabilities: writer.write({"Train-Loss": loss}))
        ranking_started = time.process_time()
        ranking = rank_against_uniform(search, result.choices, search_data, options.rank_paths, config.seed) \
            if options.rank_paths else None
        ranking_cpu_s = time.process_time() - ranking_started
        if config.retrain:
            val_loss, val_accuracy = retrain(result.derived, search_data, config, optimisation, parallel)
        else:
            val_loss, val_accuracy = evaluate_derived(search, result.choices, search_data)
        finite_validation_loss(val_loss, config.epochs)
    except Diverged as err:
        if parallel.is_main:
            print(f"katib-nas proxyless-search: error: {err}", file=sys.stderr, flush=True)
        return EXIT_DIVERGED
    except ReportError as err:
        print(f"katib-nas proxyless-search: error: {err}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except RuntimeError as err:
        lost = parallel.lost(err)
        if lost is None:
            raise
        print(f"katib-nas proxyless-search: error: {lost}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    if not parallel.is_main:
        return EXIT_OK
    confidence = PathConfidence.of(result.probabilities)
    metrics: dict[str, float | int | str] = {
        BEST_ARCHITECTURE_METRIC: encode(result.derived),
        VALIDATION_ACCURACY: val_accuracy,
        VALIDATION_LOSS: val_loss,
        LATENCY_MS: measure_network_ms(result.derived, device, table, threads),
        "arch-steps": result.arch_steps,
        "path-max-probability": sum(confidence.largest) / len(confidence.largest),
        "path-entropy": sum(confidence.entropy) / len(confidence.entropy),
    }
    if table is not None:
        metrics[PREDICTED_LATENCY_MS] = table.predict_ms(result.derived)
    if ranking is not None:
        metrics["derived-rank"] = ranking.rank
        metrics["ranked-paths"] = len(ranking.sampled_accuracies) + 1
        metrics["rank-cpu-s"] = ranking_cpu_s
        LOG.info("derived paths: validation accuracy %.4f on the supernet's weights, rank %d of %d (uniform paths: "
                 "%s)", ranking.derived_accuracy, ranking.rank, len(ranking.sampled_accuracies) + 1,
                 ", ".join(f"{a:.4f}" for a in sorted(ranking.sampled_accuracies, reverse=True)))
    LOG.info("after %d architecture steps: %s", result.arch_steps, confidence.summary())
    LOG.info("path probabilities: %s", [[round(p, 3) for p in row] for row in result.probabilities])
    try:
        writer.write(metrics)
    except ReportError as err:
        print(f"katib-nas proxyless-search: error: {err}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    return EXIT_OK


def split_search_data(split: Split, arch_fraction: float, device: torch.device) -> SearchData:
    """Hold out `arch_fraction` of the training images (fixed seed) for architecture steps."""
    count = len(split.train_y)
    arch_count = int(round(count * arch_fraction))
    if arch_count < 2 or count - arch_count < 2:
        raise InvalidInput(f"{count} training images cannot be split with --arch-fraction {arch_fraction} into "
                           f"at least 2 weight and 2 architecture images")
    arch_index, weight_index = seeded_split(count, arch_count, ARCH_SPLIT_SEED)

    def tensor(array: np.ndarray) -> torch.Tensor:
        return channels_last(torch.from_numpy(np.ascontiguousarray(array)).to(device))

    return SearchData(tensor(split.train_x[weight_index]), tensor(split.train_y[weight_index]),
                      tensor(split.train_x[arch_index]), tensor(split.train_y[arch_index]),
                      tensor(split.val_x), tensor(split.val_y))


def retrain(derived: Architecture, data: SearchData, config: SearchConfig, optimisation: Optimisation,
            parallel: Parallel | None = None) -> tuple[float, float]:
    """Train the derived network from scratch on all training images for config.retrain epochs (data-parallel
    with several processes)."""
    model = build_model(derived).to(data.weight_x.device, memory_format=torch.channels_last)
    tensors = Tensors(torch.cat([data.weight_x, data.arch_x]), torch.cat([data.weight_y, data.arch_y]),
                      data.val_x, data.val_y)
    parallel = parallel or Parallel()
    train(parallel.wrap(model), tensors, TrainConfig(epochs=config.retrain, batch_size=optimisation.batch_size,
                                                     lr=optimisation.lr, weight_decay=optimisation.weight_decay,
                                                     seed=config.seed), parallel=parallel)
    recalibrate_batchnorm(model, data.weight_x)
    parallel.broadcast_buffers(model)
    return evaluate(model, data.val_x, data.val_y, parallel=parallel)


def measure_network_ms(arch: Architecture, device: torch.device, table: LatencyTable | None, threads: int) -> float:
    """Batch-1 latency of a freshly built network, timed like the table's entries and at its thread count."""
    if table is None:
        return time_network_ms(arch, device, Timing())
    configure_threads(table.threads)
    try:
        return time_network_ms(arch, device, table_timing(table))
    finally:
        configure_threads(threads)

