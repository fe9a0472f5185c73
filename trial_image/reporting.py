"""Metric output in the forms Katib collects: stdout lines, a metrics file (TEXT or JSON), a push to Katib's DB
manager (Push collector), TensorFlow event files (TensorFlowEvent collector).

The line format itself is the shared contract's (katib_nas.contract.metric_format). Every text line starts
with an RFC 3339 timestamp in UTC (`2025-01-31T12:00:00.123456Z Validation-Accuracy=0.91`), and every
JSON object carries it under "timestamp": Katib's collectors date each value by it, so the Katib UI draws
one point per report and `latest` is the value reported last. Every report (each epoch's and the final one)
goes to every output the trial was given: pushes and event files get each epoch too. Pushes and event files
carry numbers only (Katib's report_metrics takes numbers; event scalars are numbers).
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping, Sequence, TextIO

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.metric_format import FLOPS, PARAMS, TRIAL_NAME_ENV, MetricValue, format_value, metric_line

METRIC_FORMATS = ("text", "json")
DB_MANAGER_ENV = "KATIB_DB_MANAGER_ADDRESS"
#: Seconds one push may take (Katib's SDK default).
PUSH_TIMEOUT = 60
#: The key Katib's File collector reads a JSON object's time from.
TIMESTAMP_KEY = "timestamp"
Clock = Callable[[], datetime]
#: Another output of every report, e.g. a push to Katib or an event file.
Sink = Callable[[Mapping[str, MetricValue]], None]


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
                 clock: Clock = utc_now, sinks: Sequence[Sink] = ()):
        if file_format not in METRIC_FORMATS:
            raise InvalidInput(f"unknown metrics format {file_format!r}; known: {', '.join(METRIC_FORMATS)}")
        self.stream = stream or sys.stdout
        self.clock = clock
        self.file_format = file_format
        self.sinks = tuple(sinks)
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

    def stamp(self) -> str:
        """The timestamp of a group measured now."""
        return rfc3339(self.clock())

    def write(self, metrics: Mapping[str, MetricValue], stamp: str | None = None) -> None:
        """Report a group to stdout, the metrics file and the sinks; `stamp` when it was measured earlier."""
        self._emit(stamp or self.stamp(), metrics)
        for sink in self.sinks:
            sink(metrics)

    def rewrite(self, stamp: str, metrics: Mapping[str, MetricValue]) -> None:
        """A group an earlier start of this run reported, again to stdout and the metrics file, which start
        empty at every start; not to the sinks, which kept it (Katib's database, the event files)."""
        self._emit(stamp, metrics)

    def _emit(self, stamp: str, metrics: Mapping[str, MetricValue]) -> None:
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


def output_sinks(report_to_katib: bool, tfevent_dir: str | None) -> list[Sink]:
    """The outputs asked for besides stdout and the metrics file, checked before any training."""
    sinks: list[Sink] = []
    if push_requested(report_to_katib):
        check_push_available()
        sinks.append(push_to_katib)
    if tfevent_dir:
        sinks.append(EventFileWriter(Path(tfevent_dir)))
    return sinks


class EventFileWriter:
    """Each report's numbers as TensorFlow event scalars (tag = metric name, step = report number), written and
    flushed as they come, the form Katib's TensorFlowEvent collector reads from the Experiment's
    fileSystemPath (kind Directory)."""

    def __init__(self, directory: Path):
        try:
            with warnings.catch_warnings():  # google.api_core, imported with it, warns of Python versions
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.api_core")
                from tensorboardX.event_file_writer import EventsWriter
        except ImportError:
            raise InvalidInput("--tfevent-dir needs the tfevent extra: pip install 'katib-nas[tfevent]'") from None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.events = EventsWriter(str(directory / "events"))
        except OSError as err:
            raise InvalidInput(f"cannot write event files to {directory}: {err.strerror or err}") from None
        self.step = 0

    def __call__(self, metrics: Mapping[str, MetricValue]) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        self.step += 1
        values = [Summary.Value(tag=name, simple_value=float(value)) for name, value in metrics.items()
                  if not isinstance(value, str)]
        self.events.write_event(Event(wall_time=time.time(), step=self.step, summary=Summary(value=values)))
        self.events.flush()


def push_requested(report_to_katib: bool) -> bool:
    """True when the user asked for a push and Katib has named the trial."""
    return report_to_katib and bool(os.environ.get(TRIAL_NAME_ENV))


def check_push_available() -> None:
    """Fail early, before training, when kubeflow-katib is missing."""
    import importlib.util

    if importlib.util.find_spec("kubeflow") is None or importlib.util.find_spec("kubeflow.katib") is None:
        raise InvalidInput("--report-to-katib needs Katib's SDK, kubeflow-katib (pip install 'katib-nas[trial]')")


def push_to_katib(metrics: Mapping[str, MetricValue], address: str | None = None, timeout: int | None = None) -> None:
    """Push the numeric metrics through kubeflow.katib.report_metrics (string metrics cannot be pushed), but
    not the raw counts params and flops: Katib's UI draws every metric in its database on a trial's one axis,
    where they would flatten the accuracy curve (mparams and gflops, pushed, hold the same).

    The DB manager address comes from `address`, else $KATIB_DB_MANAGER_ADDRESS, else Katib's default.
    """
    from kubeflow.katib import report_metrics
    from kubeflow.katib.constants import constants

    numeric = {name: format_value(v) for name, v in metrics.items()
               if not isinstance(v, str) and name not in (PARAMS, FLOPS)}
    target = address or os.environ.get(DB_MANAGER_ENV) or constants.DEFAULT_DB_MANAGER_ADDRESS
    try:
        report_metrics(numeric, db_manager_address=target, timeout=timeout or PUSH_TIMEOUT)
    except (RuntimeError, ValueError, OSError) as err:
        raise ReportError(f"cannot push metrics to Katib at {target}: {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
