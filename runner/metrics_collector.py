"""Katib's metrics collection, step for step: log lines -> metric logs -> one observation per trial.

Text logs: a line is considered only if it contains one of the metric names;
an RFC 3339 timestamp before the first space dates its metrics (otherwise
the zero time); every match of every filter regex (Katib's default one when
the Experiment sets no metricsFormat) yields (name, value) from its first two
groups. The regexes run on RE2, the engine and syntax of Go's regexp, which
Katib's collector uses: matching is linear in a line's length. JSON logs: one object per line, string values only, an optional
"timestamp" key (RFC 3339 text or Unix seconds). Without any objective value
the observation is the objective metric with the value "unavailable".

Observations keep min, max and latest per metric: min and max over values
that parse as numbers, latest by timestamp (ties go to the later line).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Protocol, Sequence

import re2

from katib_nas.contract.metric_format import KATIB_DEFAULT_REGEX

UNAVAILABLE = "unavailable"
ZERO_TIME = "0001-01-01T00:00:00Z"
TIMESTAMP_KEY = "timestamp"
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Each digit can be taken by one quantifier only, so a long run of digits does not backtrack.
_GO_FLOAT = re.compile(r"[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)", re.IGNORECASE)
#: Capturing groups a metricsFormat regex needs: the metric name, then its value.
FILTER_GROUPS = 2


class MetricsError(Exception):
    """The metrics source cannot be read or parsed (Katib's collector fails the same way)."""


class Pattern(Protocol):
    """A compiled filter regex, matched against UTF-8 bytes (RE2's compiled pattern; `re.Pattern`'s interface)."""

    groups: int

    def finditer(self, text: bytes) -> Iterable[Any]: ...


@dataclass(frozen=True)
class MetricLog:
    """One reported value: RFC 3339 timestamp text, metric name, value text."""

    timestamp: str
    name: str
    value: str


@dataclass(frozen=True)
class MetricSummary:
    """Katib's per-metric observation; every field is text and may be "unavailable"."""

    name: str
    min: str = UNAVAILABLE
    max: str = UNAVAILABLE
    latest: str = UNAVAILABLE

    def value(self, strategy: str) -> str:
        """The value Katib sends to the suggestion service for this strategy."""
        if strategy == "min":
            return self.latest if self.min == UNAVAILABLE else self.min
        if strategy == "max":
            return self.latest if self.max == UNAVAILABLE else self.max
        if strategy == "latest":
            return self.latest
        return ""


def compile_regex(pattern: str) -> Pattern:
    """A regex compiled as Katib compiles metricsFormat (Go's RE2 syntax); MetricsError saying why not."""
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern.encode(), options)  # bytes: half the cost of matching str, same matches
    except re2.error as err:
        raise MetricsError(f"is not a valid regular expression in Go's syntax (RE2), which Katib uses: "
                           f"{_re2_reason(err)}") from None


def _re2_reason(err: Exception) -> str:
    """RE2's reason for refusing a pattern: the error's one argument (bytes in this binding)."""
    (reason,) = err.args or (str(err),)
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


def too_few_groups(pattern: Pattern) -> str:
    """Why a filter cannot yield a metric name and value (fewer than two capturing groups), or ""."""
    if pattern.groups >= FILTER_GROUPS:
        return ""
    plural = "" if pattern.groups == 1 else "s"
    return f"has {pattern.groups} capturing group{plural}; it needs two: the metric name, then its value"


def compile_filter(pattern: str) -> Pattern:
    """One metricsFormat regex, ready to match; MetricsError naming it when Katib's collector could not use it."""
    try:
        compiled = compile_regex(pattern)
    except MetricsError as err:
        raise MetricsError(f"metricsFormat {pattern!r} {err}") from None
    problem = too_few_groups(compiled)
    if problem:
        raise MetricsError(f"metricsFormat {pattern!r} {problem}")
    return compiled


def compile_filters(filters: Sequence[str]) -> list[Pattern]:
    """The regexes to apply: the Experiment's metricsFormat, or Katib's default."""
    return [compile_filter(pattern) for pattern in (filters or [KATIB_DEFAULT_REGEX])]


def parse_text(lines: Iterable[str], metrics: Sequence[str], filters: Sequence[Pattern]) -> list[MetricLog]:
    """Metric logs found in text lines (Katib's TEXT format and StdOut collector)."""
    logs: list[MetricLog] = []
    wanted = set(metrics)
    for line in lines:
        if not any(metric in line for metric in metrics):
            continue
        head, space, _ = line.partition(" ")
        timestamp = head if space and rfc3339_nanos(head) is not None else ZERO_TIME
        encoded = line.encode()  # valid UTF-8: bytes Go cannot decode are U+FFFD here, as in Go's regexp
        for pattern in filters:
            for match in pattern.finditer(encoded):
                name = (match.group(1) or b"").decode().strip()
                if name in wanted:
                    logs.append(MetricLog(timestamp, name, (match.group(2) or b"").decode().strip()))
    return logs


def parse_json(lines: Iterable[str], metrics: Sequence[str], first_line: int = 1) -> list[MetricLog]:
    """Metric logs from JSON lines; raises MetricsError on a line that is not a JSON object."""
    logs: list[MetricLog] = []
    for number, line in enumerate(lines, first_line):
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise MetricsError(f"failed to parse the json object on line {number}: {err}") from None
        if record is None:
            record = {}
        if not isinstance(record, dict):
            raise MetricsError(f"failed to parse the json object on line {number}: not an object")
        timestamp = json_timestamp(record[TIMESTAMP_KEY]) if TIMESTAMP_KEY in record else ""
        for metric in metrics:
            value = record.get(metric)
            if isinstance(value, str):
                logs.append(MetricLog(timestamp or ZERO_TIME, metric, value))
    return logs


def with_objective(logs: list[MetricLog], metrics: Sequence[str]) -> list[MetricLog]:
    """The logs, or the single "unavailable" objective log when the objective was never reported."""
    if any(log.name == metrics[0] for log in logs):
        return logs
    return [MetricLog(ZERO_TIME, metrics[0], UNAVAILABLE)]


def collect_text(text: str, metrics: Sequence[str], filters: Sequence[str], file_format: str = "TEXT") -> list[
        MetricLog]:
    """Observation log of one trial's output, as Katib's collector would store it."""
    lines = text.split("\n")
    if file_format == "TEXT":
        logs = parse_text(lines, metrics, compile_filters(filters))
    elif file_format == "JSON":
        logs = parse_json(lines, metrics)
    else:
        raise MetricsError(f"format must be set TEXT or JSON, got {file_format!r}")
    return with_objective(logs, metrics)


class Observation:
    """Katib's getMetrics, value by value: min, max and latest per metric; names outside `metric_names` are
    ignored. Holds one summary per metric, however many values are added."""

    def __init__(self, metric_names: Sequence[str]):
        self._fields = {name: [UNAVAILABLE, UNAVAILABLE, UNAVAILABLE] for name in metric_names}
        self._bounds: dict[str, list[float]] = {}  # the numbers of min and max, parsed once
        self._newest: dict[str, int] = {}

    def add(self, log: MetricLog) -> None:
        summary = self._fields.get(log.name)
        if summary is None:
            return
        number = go_float(log.value)
        if number is not None:
            bounds = self._bounds.get(log.name)
            if bounds is None:
                summary[0] = summary[1] = log.value
                self._bounds[log.name] = [number, number]
            elif number < bounds[0]:
                summary[0], bounds[0] = log.value, number
            elif number > bounds[1]:
                summary[1], bounds[1] = log.value, number
        moment = rfc3339_nanos(log.timestamp)
        if moment is None:
            raise MetricsError(f"failed to parse timestamp {log.timestamp!r}")
        if log.name not in self._newest or not self._newest[log.name] > moment:
            self._newest[log.name] = moment
            summary[2] = log.value

    def add_all(self, logs: Iterable[MetricLog]) -> None:
        for log in logs:
            self.add(log)

    def has(self, name: str) -> bool:
        """Whether any value of `name` was added."""
        return name in self._newest

    def summaries(self) -> dict[str, MetricSummary]:
        return {name: MetricSummary(name, *values) for name, values in self._fields.items()}


def summarize(logs: Iterable[MetricLog], metric_names: Sequence[str]) -> dict[str, MetricSummary]:
    """min, max and latest per metric (Katib's getMetrics); names outside metric_names are ignored."""
    observation = Observation(metric_names)
    observation.add_all(logs)
    return observation.summaries()


def go_float(text: str) -> float | None:
    """The number in `text` as Go's strconv.ParseFloat reads it, or None where it reports an error."""
    number = go_float_value(text)
    if number is not None and math.isinf(number) and "inf" not in text.lower():
        return None  # out of range: ParseFloat returns ±Inf with an error
    return number


def finite_value(text: str) -> float | None:
    """The number in `text` when it is a finite one (as Go reads numbers); None for NaN, infinities, numbers
    beyond float64's range and text that is not a number."""
    number = go_float_value(text)
    return number if number is not None and math.isfinite(number) else None


def go_float_value(text: str) -> float | None:
    """The value Go's strconv.ParseFloat returns for `text`, also when it reports a range error (then ±Inf, as a
    number too large for float64 is); None for text that is not a number at all."""
    if text.lower().startswith(("0x", "+0x", "-0x")):
        try:
            return float.fromhex(text)
        except OverflowError:
            return -math.inf if text.startswith("-") else math.inf
        except ValueError:
            return None
    if not _GO_FLOAT.fullmatch(text):
        return None
    return float(text)


@functools.lru_cache(maxsize=4096)
def rfc3339_nanos(text: str) -> int | None:
    """Nanoseconds since the Unix epoch of an RFC 3339 timestamp, or None if it is not one."""
    match = _RFC3339.fullmatch(text)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7) or "", match.group(8)
    try:
        offset = timedelta(0) if zone == "Z" else _offset(zone)
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None
    delta = moment - _EPOCH
    nanos = int((fraction + "000000000")[:9])
    return (delta.days * 86400 + delta.seconds) * 10**9 + nanos


def json_timestamp(value: Any) -> str:
    """A JSON "timestamp" as Katib reads it: RFC 3339 text as is, Unix seconds formatted; "" if neither."""
    if isinstance(value, str):
        return value if value and rfc3339_nanos(value) is not None else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    digits = format(Decimal(repr(float(value))), "f")
    whole, _, fraction = digits.partition(".")
    try:
        seconds, nanos = divmod(int(whole) * 10**9 + (int(fraction) if fraction else 0), 10**9)
        moment = _EPOCH + timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        return ""
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (("." + f"{nanos:09d}".rstrip("0")) if nanos else "") + "Z"


def _offset(zone: str) -> timedelta:
    """The offset of "+hh:mm" or "-hh:mm"; ValueError past 59 minutes (timezone() refuses 24 hours and more)."""
    hours, minutes = int(zone[1:3]), int(zone[4:])
    if minutes >= 60:
        raise ValueError(zone)
    sign = -1 if zone[0] == "-" else 1
    return sign * timedelta(hours=hours, minutes=minutes)
