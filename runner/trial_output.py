"""A trial's output read in bounded pieces: the lines the metrics collector needs, and the tail kept as its log.

A trial may print without bound (progress bars, a tensor dump, a gigabyte of anything). The runner reads the
output file in chunks of CHUNK_BYTES and hands on only complete lines that mention a wanted name. A line longer
than MAX_LINE_BYTES is skipped as it streams past and never held: no metric line is that long, and a
collector would not match it usefully. The runner's memory therefore stays bounded by a few chunks whatever
the trial prints, and its time is linear in the output's size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from .metrics_collector import (
    MetricLog,
    MetricsError,
    Observation,
    compile_filters,
    parse_json,
    parse_text,
    with_objective,
)

CHUNK_BYTES = 1 << 20
#: Longest line the collector reads (bytes, newline excluded); longer lines are skipped and counted.
MAX_LINE_BYTES = 1 << 20
#: Metric logs kept per trial (its observation's min, max and latest are still taken over every value).
MAX_METRIC_LOGS = 20_000


@dataclass
class LineReader:
    """Reads a growing file from where it stopped last time; yields batches of complete, wanted lines.

    `wanted`: a line is handed on only when it contains one of these byte strings (empty: every line). Lines
    longer than `max_line` bytes are dropped; `skipped` counts those that mentioned a wanted name."""

    path: Path
    wanted: tuple[bytes, ...] = ()
    chunk_bytes: int = CHUNK_BYTES
    max_line: int = MAX_LINE_BYTES
    offset: int = 0
    skipped: int = 0
    _pending: bytes = field(default=b"", repr=False)
    _in_long_line: bool = False
    _long_line_wanted: bool = False

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def batches(self, budget: int | None = None, final: bool = False) -> Iterator[list[str]]:
        """Lines written since the last call, read in chunks (at most `budget` bytes this call). With `final`
        (the trial has ended), the last line counts even without its newline."""
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            read = 0
            while budget is None or read < budget:
                chunk = handle.read(self.chunk_bytes)
                if not chunk:
                    break
                read += len(chunk)
                self.offset += len(chunk)
                lines = self._take(chunk)
                if lines:
                    yield lines
        if final:
            last = self._finish()
            if last:
                yield last

    def _mentions(self, data: bytes) -> bool:
        return not self.wanted or any(name in data for name in self.wanted)

    def _take(self, chunk: bytes) -> list[str]:
        data, start = self._pending + chunk, 0
        self._pending = b""
        if self._in_long_line:
            newline = data.find(b"\n")
            self._long_line_wanted = self._long_line_wanted or self._mentions(data if newline < 0 else data[:newline])
            if newline < 0:
                return []
            self._end_long_line()
            start = newline + 1
        end = data.rfind(b"\n")
        if end < start:
            self._keep_partial(data[start:])
            return []
        self._keep_partial(data[end + 1:])
        return self._wanted_lines(data[start:end])

    def _wanted_lines(self, block: bytes) -> list[str]:
        if not self._mentions(block):
            return []
        lines = block.split(b"\n")
        if len(block) > self.max_line:
            long_lines = [line for line in lines if len(line) > self.max_line]
            self.skipped += sum(1 for line in long_lines if self._mentions(line))
            lines = [line for line in lines if len(line) <= self.max_line]
        return [line.decode("utf-8", errors="replace") for line in lines if self._mentions(line)]

    def _keep_partial(self, rest: bytes) -> None:
        """Hold an incomplete last line, or start skipping it once it is longer than the limit."""
        if len(rest) > self.max_line:
            self._in_long_line, self._long_line_wanted = True, self._mentions(rest)
        else:
            self._pending = rest

    def _end_long_line(self) -> None:
        self.skipped += self._long_line_wanted
        self._in_long_line = self._long_line_wanted = False

    def _finish(self) -> list[str]:
        if self._in_long_line:
            self._end_long_line()
            return []
        last, self._pending = self._pending, b""
        return self._wanted_lines(last) if last else []


@dataclass
class Collected:
    """One trial's metrics as Katib's collector records them, and what the bounds left out."""

    logs: list[MetricLog]
    observation: Observation
    skipped_lines: int
    dropped_logs: int


def collect_file(path: Path, metrics: Sequence[str], filters: Sequence[str], file_format: str = "TEXT") -> Collected:
    """Katib's collection over a whole output or metrics file, read in bounded pieces; MetricsError as Katib's.

    The first MAX_METRIC_LOGS metric logs are kept; the observation (min, max, latest) covers all of them."""
    if file_format not in ("TEXT", "JSON"):
        raise MetricsError(f"format must be set TEXT or JSON, got {file_format!r}")
    text = file_format == "TEXT"
    patterns = compile_filters(filters) if text else []
    reader = LineReader(path, tuple(m.encode() for m in metrics) if text else ())
    observation = Observation(metrics)
    kept: list[MetricLog] = []
    dropped = read_lines = 0
    try:
        for lines in reader.batches(final=True):
            logs = parse_text(lines, metrics, patterns) if text else parse_json(lines, metrics, read_lines + 1)
            read_lines += len(lines)
            observation.add_all(logs)
            room = MAX_METRIC_LOGS - len(kept)
            kept.extend(logs[:room])
            dropped += max(len(logs) - room, 0)
    except OSError as err:
        raise MetricsError(f"failed to open the file {path}: {err.strerror or err}") from None
    if not observation.has(metrics[0]):
        kept = with_objective([], metrics)
        observation = Observation(metrics)
        observation.add_all(kept)
    return Collected(kept, observation, reader.skipped, dropped)


def read_tail(path: Path, limit: int) -> str:
    """The last `limit` bytes of a file as text ("" when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(size - limit, 0))
            return handle.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""
