"""Metric output in the forms Katib collects: stdout lines, a metrics file (TEXT or JSON), a push to Katib.

The line format itself is the shared contract's (katib_nas.contract.metric_format). Every text line starts
with an RFC 3339 timestamp in UTC (`2025-01-31T12:00:00.123456Z Validation-Accuracy=0.91`), and every
JSON object carries it under "timestamp": Katib's collectors date each value by it, so the Katib UI draws
one point per report and `latest` is the value reported last.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, TextIO

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.metric_format import MetricValue, format_value, metric_line

METRIC_FORMATS = ("text", "json")
DB_MANAGER_ENV = "KATIB_DB_MANAGER_ADDRESS"
#: The key Katib's File collector reads a JSON object's time from.
TIMESTAMP_KEY = "timestamp"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    """UTC time with microseconds and a `Z`, a form Go's time.RFC3339Nano parses."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReportError(RuntimeError):
    """Metrics could not be delivered where the user asked."""


class MetricsWriter:
    """Writes each group of metrics to stdout and, when asked, to a metrics file for Katib's File collector.

    TEXT files hold the same timestamped `name=value` lines as stdout; JSON files hold one object per group
    with string values (Katib's File collector reads only string values in JSON) and its timestamp. All
    metrics of one group share one timestamp.
    """

    def __init__(self, path: str | None = None, file_format: str = "text", stream: TextIO | None = None,
                 clock: Clock = utc_now):
        if file_format not in METRIC_FORMATS:
            raise InvalidInput(f"unknown metrics format {file_format!r}; known: {', '.join(METRIC_FORMATS)}")
        self.stream = stream or sys.stdout
        self.clock = clock
        self.file_format = file_format
        self.path = Path(path) if path else None
        if self.path:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._probe()
            except OSError as err:
                raise InvalidInput(f"cannot write metrics file {self.path}: {err.strerror or err}") from None

    def _probe(self) -> None:
        """Empty the file after writing one byte to it: a full disk (or /dev/full) fails here, before training."""
        assert self.path is not None
        with open(self.path, "w") as handle:
            handle.write("\n")
            handle.flush()
            if self.path.is_file():
                handle.truncate(0)

    def write(self, metrics: Mapping[str, MetricValue]) -> None:
        stamp = rfc3339(self.clock())
        text = "".join(f"{stamp} {metric_line(name, value)}\n" for name, value in metrics.items())
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError as err:
            raise OSError(err.errno, err.strerror, getattr(self.stream, "name", "the output stream")) from None
        if self.path:
            try:
                with open(self.path, "a") as handle:
                    if self.file_format == "json":
                        values = {name: format_value(v) for name, v in metrics.items()}
                        handle.write(json.dumps({TIMESTAMP_KEY: stamp, **values}) + "\n")
                    else:
                        handle.write(text)
            except OSError as err:
                raise OSError(err.errno, err.strerror, str(self.path)) from None


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
