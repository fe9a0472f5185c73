"""How latency entries and networks are timed. Imports no torch, so `katib-nas profile --help` shows the
defaults without loading it; the profiler and the command's flags both read them from here."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

STATISTICS = ("min", "median")
CLOCKS = ("auto", "wall", "thread")


@dataclass(frozen=True)
class Timing:
    """How entries and networks are timed: untimed and timed cycles, statistic, passes, clock."""

    warmup: int = 10
    repeats: int = 50
    statistic: str = "min"
    rounds: int = 3
    clock: str = "auto"

    def clock_for(self, device: torch.device) -> Callable[[], float]:
        """Wall time, or (clock `thread`, and `auto` on a CPU with one torch thread) the CPU time of the
        calling thread, which does all the work then and which other processes cannot inflate."""
        import torch  # loaded already wherever a device exists

        if self.clock not in CLOCKS:
            raise ValueError(f"unknown clock {self.clock!r}; known: {', '.join(CLOCKS)}")
        single_cpu_thread = device.type == "cpu" and torch.get_num_threads() == 1
        if self.clock == "thread" or (self.clock == "auto" and single_cpu_thread):
            return time.thread_time
        return time.perf_counter

    def summarise(self, seconds: list[float]) -> float:
        """Milliseconds from the timed runs."""
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown timing statistic {self.statistic!r}; known: {', '.join(STATISTICS)}")
        return (min(seconds) if self.statistic == "min" else statistics.median(seconds)) * 1000.0


TIMING_DEFAULTS = Timing()
