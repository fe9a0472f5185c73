"""Measure a latency table: every layer position a ProxylessNAS supernet can put an op on, on one device.

Each entry is timed as the module the network runs (the stem, a widener, a
one-op residual block, the head) on a batch-1 input of its position's shape,
in eval mode without autograd, `repeats` runs after `warmup` runs. The
statistic is the minimum by default: on a CPU shared with other processes it
is the estimate least disturbed by them (the median is available). A whole
network is measured the same way to compare against the table's prediction.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from katib_nas.suggestion.core.spec import Architecture, Cell

from ..cells import CellBlock
from ..model import build_model, widener
from ..ops import conv_bn_relu
from .table import LatencyTable, block_key, block_option_keys, fixed_keys, head_key, stem_key, widen_key


STATISTICS = ("min", "median")


@dataclass(frozen=True)
class Timing:
    """How each entry is timed."""

    warmup: int = 10
    repeats: int = 50
    statistic: str = "min"

    def summarise(self, seconds: list[float]) -> float:
        """Milliseconds from the timed runs."""
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown timing statistic {self.statistic!r}; known: {', '.join(STATISTICS)}")
        return (min(seconds) if self.statistic == "min" else statistics.median(seconds)) * 1000.0


class CellRunner(nn.Module):
    """A cell called the way the network calls it (no earlier outputs: supernet blocks take no skips)."""

    def __init__(self, cell: nn.Module):
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell(x, [])


def time_forward_ms(module: nn.Module, sample: torch.Tensor, timing: Timing) -> float:
    """Milliseconds of module(sample) in eval mode under inference_mode (the timing's statistic)."""
    module.eval()
    synchronize = torch.cuda.synchronize if sample.device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for run in range(timing.warmup + timing.repeats):
            synchronize()
            start = time.perf_counter()
            module(sample)
            synchronize()
            if run >= timing.warmup:
                times.append(time.perf_counter() - start)
    return timing.summarise(times)


def layer_positions(supernet: Architecture) -> dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]]:
    """Key -> (module factory, input shape as (channels, height, width)) for every key the supernet needs."""
    height, width, channels = supernet.input_shape
    positions: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int]]] = {
        stem_key(supernet): (lambda: nn.Sequential(*conv_bn_relu(channels, supernet.stem, 3)),
                             (channels, height, width)),
    }
    size, current = (height, width), supernet.stem
    for stage, stage_size in zip(supernet.stages, supernet.spatial_sizes()):
        key = widen_key(size, current, stage.width, stage.stride)
        positions[key] = (_widener_factory(current, stage.width, stage.stride), (current, *size))
        for cell in stage.cells:
            for op in cell.ops:
                one = Cell((op,), residual=cell.residual)
                positions[block_key(one, stage_size, stage.width)] = (_cell_factory(one, stage.width),
                                                                      (stage.width, *stage_size))
        size, current = stage_size, stage.width
    positions[head_key(size, current, supernet.num_classes)] = (
        _head_factory(current, supernet.num_classes), (current, *size))
    return positions


def profile_supernet(supernet: Architecture, device: torch.device, timing: Timing,
                     progress: Callable[[str, float], None] = lambda key, ms: None) -> LatencyTable:
    """Time every position of the supernet; keys in network order."""
    expected = list(dict.fromkeys(fixed_keys(supernet) + [k for row in block_option_keys(supernet) for k in row]))
    positions = layer_positions(supernet)
    entries = {}
    for key in expected:
        factory, shape = positions[key]
        module = factory().to(device)
        entries[key] = time_forward_ms(module, torch.randn(1, *shape, device=device), timing)
        progress(key, entries[key])
    return LatencyTable(entries, device.type, 1, torch.get_num_threads(),
                        {"warmup": timing.warmup, "repeats": timing.repeats, "statistic": timing.statistic,
                         "torch": torch.__version__})


def time_network_ms(arch: Architecture, device: torch.device, timing: Timing) -> float:
    """A freshly built network timed like the table's entries (batch 1)."""
    height, width, channels = arch.input_shape
    return time_forward_ms(build_model(arch).to(device), torch.randn(1, channels, height, width, device=device),
                           timing)


def table_timing(table: LatencyTable) -> Timing:
    """The timing a table was measured with (defaults for fields it does not record)."""
    meta = table.meta
    return Timing(int(meta.get("warmup", Timing.warmup)), int(meta.get("repeats", Timing.repeats)),
                  str(meta.get("statistic", Timing.statistic)))


def _widener_factory(in_channels: int, out_channels: int, stride: int) -> Callable[[], nn.Module]:
    return lambda: widener(in_channels, out_channels, stride)


def _cell_factory(cell: Cell, width: int) -> Callable[[], nn.Module]:
    return lambda: CellRunner(CellBlock(cell, width, []))


def _head_factory(channels: int, classes: int) -> Callable[[], nn.Module]:
    return lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))
