"""Metric output in the forms Katib collects: stdout lines, a metrics file (TEXT or JSON), a push to Katib.

Every metric is one `name=value` line. Numbers use %.6g. Branch statistics
and skip gates travel as string metrics whose values start with letters
(`ms/...`, `g/...`), so a numeric regex never reads a number out of them.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Mapping, TextIO, Union

from katib_nas.suggestion.core.errors import InvalidInput

MetricValue = Union[float, int, str]
METRIC_FORMATS = ("text", "json")
# Katib's default StdOut/TEXT filter and the regexes an Experiment's metricsFormat uses for our metrics.
KATIB_DEFAULT_REGEX = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
NUMERIC_METRIC_REGEX = r"([\w-]+)=([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
STRING_METRIC_REGEX = r"(Branch-Stats|Skip-Gates)=([\w./+-]+)"
DB_MANAGER_ENV = "KATIB_DB_MANAGER_ADDRESS"


class ReportError(RuntimeError):
    """Metrics could not be delivered where the user asked."""


def format_number(value: float) -> str:
    return "nan" if not math.isfinite(value) else "%.6g" % value


def format_value(value: MetricValue) -> str:
    return value if isinstance(value, str) else format_number(float(value))


def branch_stats_text(per_cell: list[list[float]]) -> str:
    """Branch-Stats value: ms/<cell0>/<cell1>/..., each cell's branch values joined by '_'."""
    return "ms/" + "/".join("_".join(format_number(v) for v in cell) for cell in per_cell)


def skip_gates_text(per_cell: list[list[float]]) -> str:
    """Skip-Gates value: g/<cell0>/..., each cell's gates in skip order joined by '_', '-' without skips."""
    return "g/" + "/".join("_".join(format_number(v) for v in cell) if cell else "-" for cell in per_cell)


def parse_branch_stats(text: str) -> list[list[float]]:
    """Inverse of branch_stats_text (values rounded to 6 significant digits)."""
    if not text.startswith("ms/"):
        raise ValueError(f"Branch-Stats value {text!r} does not start with 'ms/'")
    return [[float(v) for v in cell.split("_")] for cell in text[3:].split("/")]


def parse_skip_gates(text: str) -> list[list[float]]:
    """Inverse of skip_gates_text."""
    if not text.startswith("g/"):
        raise ValueError(f"Skip-Gates value {text!r} does not start with 'g/'")
    return [[] if cell == "-" else [float(v) for v in cell.split("_")] for cell in text[2:].split("/")]


class MetricsWriter:
    """Writes each group of metrics to stdout and, when asked, to a metrics file for Katib's File collector.

    TEXT files hold the same `name=value` lines as stdout; JSON files hold one object per group with
    string values (Katib's File collector reads only string values in JSON).
    """

    def __init__(self, path: str | None = None, file_format: str = "text", stream: TextIO | None = None):
        if file_format not in METRIC_FORMATS:
            raise InvalidInput(f"unknown metrics format {file_format!r}; known: {', '.join(METRIC_FORMATS)}")
        self.stream = stream or sys.stdout
        self.file_format = file_format
        self.path = Path(path) if path else None
        if self.path:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text("")
            except OSError as err:
                raise InvalidInput(f"cannot write metrics file {self.path}: {err.strerror or err}") from None

    def write(self, metrics: Mapping[str, MetricValue]) -> None:
        lines = [f"{name}={format_value(value)}" for name, value in metrics.items()]
        self.stream.write("".join(line + "\n" for line in lines))
        self.stream.flush()
        if self.path:
            with open(self.path, "a") as handle:
                if self.file_format == "json":
                    handle.write(json.dumps({name: format_value(v) for name, v in metrics.items()}) + "\n")
                else:
                    handle.write("".join(line + "\n" for line in lines))


def push_requested(report_to_katib: bool) -> bool:
    """True when the user asked for a push and Katib has named the trial."""
    return report_to_katib and bool(os.environ.get("KATIB_TRIAL_NAME"))


def check_push_available() -> None:
    """Fail early, before training, when kubeflow-katib is missing."""
    import importlib.util

    if importlib.util.find_spec("kubeflow") is None or importlib.util.find_spec("kubeflow.katib") is None:
        raise InvalidInput("--report-to-katib needs the kubeflow-katib package (pip install kubeflow-katib==0.19.0)")


def push_to_katib(metrics: Mapping[str, MetricValue], address: str | None = None, timeout: int = 60) -> None:
    """Push the numeric metrics through kubeflow.katib.report_metrics (string metrics cannot be pushed).

    The DB manager address comes from `address`, else $KATIB_DB_MANAGER_ADDRESS, else Katib's default.
    """
    from kubeflow.katib import report_metrics
    from kubeflow.katib.constants import constants

    numeric = {name: format_value(v) for name, v in metrics.items() if not isinstance(v, str)}
    target = address or os.environ.get(DB_MANAGER_ENV) or constants.DEFAULT_DB_MANAGER_ADDRESS
    try:
        report_metrics(numeric, db_manager_address=target, timeout=timeout)
    except (RuntimeError, ValueError, OSError) as err:
        raise ReportError(f"cannot push metrics to Katib at {target}: {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
