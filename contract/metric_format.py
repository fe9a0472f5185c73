"""Metric lines as the trials print them and Katib's collectors read them.

Every metric is one `name=value` line; numbers are written with %.6g and a
non-finite number as `nan`. String metrics (Branch-Stats, Skip-Gates,
Best-Architecture) start with letters, so Katib's default numeric regex
reads no number out of them; an Experiment collects them with a second
metricsFormat regex.
"""

from __future__ import annotations

import math
import re
from typing import Union

MetricValue = Union[float, int, str]

#: Where Katib names the trial in its pod (the Push collector needs it; the local runner sets it as Katib does).
TRIAL_NAME_ENV = "KATIB_TRIAL_NAME"
#: Katib's default filter for the StdOut and TEXT File collectors (pkg/metricscollector common).
KATIB_DEFAULT_REGEX = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
#: The numeric metricsFormat regex the examples use next to a string one (Katib's default also matches '-').
NUMERIC_METRIC_REGEX = r"([\w-]+)=([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
#: metricsFormat regex for EnvelopeNet's branch statistics and skip gates.
BRANCH_STATS_REGEX = r"(Branch-Stats|Skip-Gates)=([\w./+-]+)"
#: The metrics every trial reports: the examples' objective and its loss on the validation split, the final
#: network's latency measured on the trial's device and, with a latency table, the table's prediction.
VALIDATION_ACCURACY = "Validation-Accuracy"
VALIDATION_LOSS = "Validation-Loss"
LATENCY_MS = "latency-ms"
PREDICTED_LATENCY_MS = "predicted-latency-ms"
#: The string metric a one-shot search reports its derived network in, and the regex that collects it.
BEST_ARCHITECTURE_METRIC = "Best-Architecture"
#: A network's size as raw counts (parameters, multiply-accumulates); MILLION_PARAMS and GIGA_FLOPS hold the
#: same on the scale of an accuracy, which the Katib UI draws on one axis with it.
PARAMS = "params"
FLOPS = "flops"
MILLION_PARAMS = "mparams"
GIGA_FLOPS = "gflops"
BEST_ARCHITECTURE_REGEX = r"(Best-Architecture)=([\w./:+@-]+)"


def format_number(value: float) -> str:
    """%.6g, or `nan` for anything not finite."""
    return "nan" if not math.isfinite(value) else "%.6g" % value


def format_value(value: MetricValue) -> str:
    """A metric value as printed: strings as they are, numbers through format_number."""
    return value if isinstance(value, str) else format_number(float(value))


def metric_line(name: str, value: MetricValue) -> str:
    return f"{name}={format_value(value)}"


#: A metric line as a trial writes it (metric_line), optionally after its RFC 3339 timestamp.
METRIC_LINE = re.compile(r"^(?:\d{4}-\d\d-\d\dT\S+\s+)?([A-Za-z][\w-]*)=(\S+)$")


def parse_metric_line(line: str) -> tuple[str, str] | None:
    """(name, value) of one line a trial printed, or None when the line is no metric line."""
    match = METRIC_LINE.match(line.strip())
    return (match.group(1), match.group(2)) if match else None


def read_metric_lines(text: str) -> dict[str, str]:
    """Every metric in a trial's output, by name; a later line wins, as with Katib's `latest`."""
    return dict(pair for pair in map(parse_metric_line, text.splitlines()) if pair is not None)
