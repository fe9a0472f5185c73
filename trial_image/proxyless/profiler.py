"""Measure a latency table: every layer position a ProxylessNAS supernet can put an op on, on one device.

Entries are timed in context: the supernet itself runs at batch 1 in eval mode
without autograd, one op active per block, and forward hooks time each module
the network calls (the stem, each widener, each block with its residual add,
the head). The active ops are cycled so that every op of every block runs
once per cycle, after the others, as in a real network, with the cache and
allocator state that brings (timing a module alone, repeatedly on the same
input, measures it with its data hot in cache and underestimates it inside a
network). Samples of positions with the same key are pooled, and the hooks'
own cost (timed on an empty module the same way) is subtracted. On a CPU with
one torch thread the clock is the CPU time of the measuring thread (it does
all the work then), so other processes sharing the CPU cannot stretch the
figure by preempting it; otherwise wall time. The statistic is the minimum
by default, the estimate least disturbed by noise (the median is available).
A whole network is measured with the same clock and statistic to compare
against the table's prediction.
"""

from __future__ import annotations

import statistics
from typing import Callable

import numpy as np
import torch
from torch import nn

from katib_nas.contract.spec import Architecture

from ..cells import ChoiceBody
from ..model import build_model
from .table import LatencyTable, block_option_keys, fixed_keys, load_table
from .timing import Timing

#: Key of an empty module timed through the same hooks: the hooks' own cost, subtracted from every entry.
HOOK_PROBE = "probe:hook-overhead"
#: The --latency-table value that profiles the trial's own network instead of reading a file.
MEASURE = "measure"


class HookTimer:
    """Forward hooks that time modules of a running network and file the durations under a key."""

    def __init__(self, clock: Callable[[], float], synchronize: Callable[[], None]):
        self.clock, self.synchronize = clock, synchronize
        self.recording = False
        self.samples: dict[str, list[float]] = {}
        self._started: dict[int, float] = {}

    def attach(self, module: nn.Module, key: Callable[[], str]) -> None:
        def before(mod: nn.Module, inputs: object) -> None:
            self.synchronize()
            self._started[id(mod)] = self.clock()

        def after(mod: nn.Module, inputs: object, output: object) -> None:
            self.synchronize()
            if self.recording:
                self.samples.setdefault(key(), []).append(self.clock() - self._started[id(mod)])

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)


def profile_supernet(supernet: Architecture, device: torch.device, timing: Timing,
                     progress: Callable[[str, float], None] = lambda key, ms: None) -> LatencyTable:
    """Time every position of the supernet in context; `repeats` cycles after `warmup` cycles, each cycle
    running every op of every block once (blocks permuted independently)."""
    network = build_model(supernet).to(device).eval()
    choice = {b: cell.body for b, cell in enumerate(network.cells) if isinstance(cell.body, ChoiceBody)}
    fixed, options = fixed_keys(supernet), block_option_keys(supernet)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timer = HookTimer(timing.clock_for(device), synchronize)
    timer.attach(network.stem, lambda: fixed[0])
    for s, widener in enumerate(network.wideners):
        timer.attach(widener, (lambda k: lambda: k)(fixed[1 + s]))
    timer.attach(network.head, lambda: fixed[-1])
    for b, cell in enumerate(network.cells):
        timer.attach(cell, (lambda b: lambda: options[b][choice[b].active[0] if b in choice else 0])(b))
    probe = nn.Identity()
    timer.attach(probe, lambda: HOOK_PROBE)
    height, width, channels = supernet.input_shape
    sample = torch.randn(1, channels, height, width, device=device)
    rng = np.random.default_rng(0)
    longest = max((len(body.alternatives) for body in choice.values()), default=1)
    with torch.inference_mode():
        for cycle in range(timing.warmup + timing.repeats):
            timer.recording = cycle >= timing.warmup
            orders = [rng.permutation(len(body.alternatives)) for body in choice.values()]
            for j in range(longest):
                for body, order in zip(choice.values(), orders):
                    body.set_active(int(order[j % len(order)]))
                network(sample)
                probe(sample)
    hook_ms = timing.summarise(timer.samples[HOOK_PROBE])
    entries = {}
    for key in dict.fromkeys(fixed + [k for row in options for k in row]):
        entries[key] = max(timing.summarise(timer.samples[key]) - hook_ms, 0.0)
        progress(key, entries[key])
    return LatencyTable(entries, device.type, 1, torch.get_num_threads(),
                        {"warmup": timing.warmup, "repeats": timing.repeats, "statistic": timing.statistic,
                         "rounds": timing.rounds, "clock": timing.clock, "method": "in-context hooks",
                         "hook_overhead_ms": hook_ms,
                         "torch": torch.__version__})


def time_forward_ms(module: nn.Module, sample: torch.Tensor, timing: Timing) -> float:
    """Milliseconds of module(sample) in eval mode under inference_mode (the timing's clock and statistic)."""
    module.eval()
    synchronize = torch.cuda.synchronize if sample.device.type == "cuda" else (lambda: None)
    clock = timing.clock_for(sample.device)
    times = []
    with torch.inference_mode():
        for run in range(timing.warmup + timing.repeats):
            synchronize()
            start = clock()
            module(sample)
            synchronize()
            if run >= timing.warmup:
                times.append(clock() - start)
    return timing.summarise(times)


def time_network_ms(arch: Architecture, device: torch.device, timing: Timing) -> float:
    """A freshly built network at batch 1, best (or median) of `timing.rounds` passes."""
    height, width, channels = arch.input_shape
    model = build_model(arch).to(device)
    sample = torch.randn(1, channels, height, width, device=device)
    passes = [time_forward_ms(model, sample, timing) for _ in range(timing.rounds)]
    return min(passes) if timing.statistic == "min" else statistics.median(passes)


def table_timing(table: LatencyTable) -> Timing:
    """The timing a table was measured with (defaults for fields it does not record)."""
    meta = table.meta
    return Timing(int(meta.get("warmup", Timing.warmup)), int(meta.get("repeats", Timing.repeats)),
                  str(meta.get("statistic", Timing.statistic)), int(meta.get("rounds", Timing.rounds)),
                  str(meta.get("clock", Timing.clock)))


def obtain_table(option: str | None, supernet: Architecture, device: torch.device) -> LatencyTable | None:
    """The latency table: none, read from a file, or (option `measure`) the network's own positions profiled
    here with one thread (about a second on a CPU)."""
    if option is None:
        return None
    if option != MEASURE:
        return load_table(option)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return profile_supernet(supernet, device, Timing())
    finally:
        torch.set_num_threads(before)
