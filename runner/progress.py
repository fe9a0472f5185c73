"""Live view of a run: trials done/running/failed, best so far, elapsed and ETA.

On a terminal it is a tqdm bar with one line per finished trial above it;
elsewhere (logs, CI) it prints just the per-trial lines, each with the same
counters, so the output stays readable when captured.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .status import Summary


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressView:
    """Shows progress of one runner session; `total` is maxTrialCount (None when unbounded)."""

    def __init__(self, total: int | None, objective: str, completed_before: int, stream: TextIO | None = None,
                 live: bool | None = None):
        self.stream = stream or sys.stderr
        self.total = total
        self.objective = objective
        self.started = time.monotonic()
        self.completed_before = completed_before
        self.live = self.stream.isatty() if live is None else live
        self._bar = None
        if self.live:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=completed_before, desc="trials", unit="trial", file=self.stream,
                             dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} "
                                                            "[{elapsed}<{remaining}{postfix}]")

    def eta(self, summary: Summary) -> float | None:
        done_now = summary.completed - self.completed_before
        if self.total is None or done_now <= 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / done_now * max(self.total - summary.completed, 0)

    def counters(self, summary: Summary) -> str:
        best = f"best {self.objective}={summary.best_value}" if summary.best else "best -"
        total = "?" if self.total is None else str(self.total)
        return (f"{summary.completed}/{total} done, {summary.running} running, {summary.failed} failed | {best} | "
                f"elapsed {format_duration(time.monotonic() - self.started)} eta {format_duration(self.eta(summary))}")

    def update(self, summary: Summary, line: str | None = None) -> None:
        """Refresh the counters; `line` (a finished trial) is printed above the bar."""
        if self._bar is not None:
            if line:
                self._bar.write(line, file=self.stream)
            self._bar.n = summary.completed
            best = summary.best_value if summary.best else "-"
            self._bar.set_postfix_str(f"running={summary.running} failed={summary.failed} best={best}", refresh=False)
            self._bar.refresh()
        elif line:
            print(f"{line} [{self.counters(summary)}]", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
