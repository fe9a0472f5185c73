"""Metric lines and files as Katib's collectors read them: default StdOut regex, metricsFormat regexes, JSON."""

from __future__ import annotations

import io
import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from katib_nas.contract.branch_stats import format_branch_stats, format_skip_gates
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.metric_format import BRANCH_STATS_REGEX, KATIB_DEFAULT_REGEX, NUMERIC_METRIC_REGEX
from katib_nas.trial_image.reporting import MetricsWriter

MOMENT = datetime(2025, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
STAMP = "2025-03-04T05:06:07.890123Z"

STATS = [[0.536924, 1.5e-05, 2.0], [math.nan, 12345678.0], [0.0]]
GATES = [[], [-0.25, 1.0], [3e-07]]
FINAL = {
    "Validation-Accuracy": 0.9277777,
    "Validation-Loss": 0.3415013,
    "Train-Loss": 1.2e-05,
    "Train-Accuracy": 1.0,
    "params": 8058,
    "flops": 204656,
    "latency-ms": 1.3671834,
    "Branch-Stats": format_branch_stats(STATS),
    "Skip-Gates": format_skip_gates(GATES),
}
NUMERIC = {name: value for name, value in FINAL.items() if not isinstance(value, str)}


def written(metrics: dict, **kwargs) -> str:  # type: ignore[type-arg]
    stream = io.StringIO()
    MetricsWriter(stream=stream, clock=lambda: MOMENT, **kwargs).write(metrics)
    return stream.getvalue()


def test_string_metric_values() -> None:
    assert FINAL["Branch-Stats"] == "ta/0.536924_1.5e-05_2/nan_1.23457e+07/0"
    assert FINAL["Skip-Gates"] == "g/-/-0.25_1/3e-07"
    assert format_branch_stats([[math.inf]]) == "ta/nan"


def test_lines_are_a_timestamp_then_name_equals_value_with_six_significant_digits() -> None:
    lines = written(FINAL).splitlines()
    assert lines[0] == f"{STAMP} Validation-Accuracy=0.927778"
    assert all(line.startswith(STAMP + " ") for line in lines)
    bare = [line.split(" ", 1)[1] for line in lines]
    assert "params=8058" in bare and "Train-Loss=1.2e-05" in bare and "latency-ms=1.36718" in bare


def test_timestamp_is_utc_rfc3339_as_katibs_collector_reads_it() -> None:
    """The collector takes the text before the first space as the time when it parses as RFC 3339."""
    from katib_nas.runner.metrics_collector import collect_text

    local = MOMENT.astimezone(timezone(timedelta(hours=-5)))
    stream = io.StringIO()
    MetricsWriter(stream=stream, clock=lambda: local).write({"Validation-Accuracy": 0.5})
    [log] = collect_text(stream.getvalue(), ["Validation-Accuracy"], [])
    assert (log.timestamp, log.value) == (STAMP, "0.5")


def test_katib_default_regex_reads_every_number_and_no_number_from_string_metrics() -> None:
    found = {m.group(1): m.group(2) for m in re.finditer(KATIB_DEFAULT_REGEX, written(FINAL))}
    for name, value in NUMERIC.items():
        assert float(found[name]) == pytest.approx(value, rel=1e-5)
    assert found["Branch-Stats"] == "" and found["Skip-Gates"] == ""


def test_metrics_format_regexes_extract_exactly_what_is_printed() -> None:
    text = written(FINAL)
    numeric = [(m.group(1), m.group(2)) for m in re.finditer(NUMERIC_METRIC_REGEX, text)]
    assert [name for name, _ in numeric] == list(NUMERIC)
    assert all(float(value) == pytest.approx(NUMERIC[name], rel=1e-5) for name, value in numeric)
    strings = {m.group(1): m.group(2) for m in re.finditer(BRANCH_STATS_REGEX, text)}
    assert strings == {"Branch-Stats": FINAL["Branch-Stats"], "Skip-Gates": FINAL["Skip-Gates"]}


def test_text_file_repeats_the_stdout_lines(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "metrics.log"
    stream = io.StringIO()
    writer = MetricsWriter(str(path), "text", stream)
    writer.write({"Train-Loss": 0.5})
    writer.write(FINAL)
    assert path.read_text() == stream.getvalue()


def test_json_file_has_one_object_per_group_with_string_values(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    writer = MetricsWriter(str(path), "json", io.StringIO(), clock=lambda: MOMENT)
    writer.write({"Train-Loss": 0.5, "Train-Accuracy": 0.25})
    writer.write(FINAL)
    objects = [json.loads(line) for line in path.read_text().splitlines()]
    assert objects[0] == {"timestamp": STAMP, "Train-Loss": "0.5", "Train-Accuracy": "0.25"}
    assert objects[1]["Validation-Accuracy"] == "0.927778" and objects[1]["Skip-Gates"] == FINAL["Skip-Gates"]
    assert all(isinstance(v, str) for obj in objects for v in obj.values())


def test_unwritable_metrics_file_is_bad_input(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidInput, match="cannot write metrics file"):
        MetricsWriter(str(blocker / "metrics.txt"))


@pytest.mark.parametrize("file_format", ["text", "json"])
def test_restored_groups_are_written_again_as_first_stamped_and_not_pushed_twice(tmp_path: Path,
                                                                                 file_format: str) -> None:
    pushed: list[dict] = []  # type: ignore[type-arg]
    first, again = tmp_path / "first", tmp_path / "again"
    writer = MetricsWriter(str(first), file_format, io.StringIO(), clock=lambda: MOMENT,
                           sinks=[lambda metrics: pushed.append(dict(metrics))])
    writer.write(NUMERIC)
    later = datetime(2025, 3, 5, tzinfo=timezone.utc)  # the restarted trial's clock
    restarted = MetricsWriter(str(again), file_format, io.StringIO(), clock=lambda: later,
                              sinks=[lambda metrics: pushed.append(dict(metrics))])
    restarted.rewrite(STAMP, NUMERIC)
    assert again.read_text() == first.read_text()  # Katib's database and the event files kept it: no sink
    assert pushed == [NUMERIC]
