"""The local metrics collector's observation: min, max and latest as Katib computes them, timestamps to the
nanosecond in any time zone, metricsFormat regexes, JSON logs, and Go's number and time formats."""

from __future__ import annotations

import math

import pytest

from katib_nas.runner.metrics_collector import (
    UNAVAILABLE,
    ZERO_TIME,
    MetricLog,
    MetricsError,
    MetricSummary,
    Observation,
    collect_text,
    compile_filters,
    finite_value,
    go_float,
    go_float_value,
    json_timestamp,
    rfc3339_nanos,
    summarize,
)

SECOND = 10**9


def observe(values: list[str], timestamps: list[str] | None = None) -> MetricSummary:
    """The observation of one metric reported with these values, at these times (zero time when not given)."""
    stamps = timestamps or [ZERO_TIME] * len(values)
    return summarize([MetricLog(t, "acc", v) for t, v in zip(stamps, values)], ["acc"])["acc"]


@pytest.mark.parametrize("values, low, high", [
    (["0.7", "0.9", "0.5", "0.6"], "0.5", "0.9"),
    (["0.5", "0.3", "0.9", "0.1"], "0.1", "0.9"),
    (["3", "2", "1"], "1", "3"),
    (["1", "2", "3"], "1", "3"),
    (["-1e3", "5", "-2e3", "4"], "-2e3", "5"),
])
def test_min_and_max_are_the_extremes_wherever_they_come(values: list[str], low: str, high: str) -> None:
    summary = observe(values)
    assert (summary.min, summary.max, summary.latest) == (low, high, values[-1])
    assert (summary.value("min"), summary.value("max"), summary.value("latest")) == (low, high, values[-1])


def test_equal_values_keep_the_text_first_reported() -> None:
    summary = observe(["2.0", "2", "1.0", "1e0", "2e0"])
    assert (summary.min, summary.max, summary.latest) == ("1.0", "2.0", "2e0")


def test_values_that_are_not_numbers_take_no_part_in_min_and_max() -> None:
    summary = observe(["n/a", "0.4", "Genotype(x)", "0.2", "0.3", "pending"])
    assert (summary.min, summary.max, summary.latest) == ("0.2", "0.4", "pending")
    assert summary.value("min") == "0.2" and summary.value("max") == "0.4"


def test_logs_of_other_metrics_are_passed_over() -> None:
    logs = [MetricLog(ZERO_TIME, "other", "1"), MetricLog(ZERO_TIME, "acc", "0.5"), MetricLog(ZERO_TIME, "x", "2"),
            MetricLog(ZERO_TIME, "acc", "0.25")]
    assert summarize(logs, ["acc"]) == {"acc": MetricSummary("acc", "0.25", "0.5", "0.25")}


def test_logs_and_summaries_are_values() -> None:
    log, summary = MetricLog(ZERO_TIME, "acc", "1"), MetricSummary("acc", "1", "2", "1")
    assert len({log, MetricLog(ZERO_TIME, "acc", "1"), summary, MetricSummary("acc", "1", "2", "1")}) == 2
    with pytest.raises(AttributeError):
        log.value = "2"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        summary.latest = "2"  # type: ignore[misc]


def test_collect_and_summarize_a_training_log() -> None:
    text = "\n".join(["epoch 1 Validation-Accuracy=0.61 loss=1.2", "epoch 2 Validation-Accuracy=0.85 loss=0.4",
                      "epoch 3 Validation-Accuracy=0.72 loss=0.9"])
    summaries = summarize(collect_text(text, ["Validation-Accuracy", "loss"], []), ["Validation-Accuracy", "loss"])
    assert summaries["Validation-Accuracy"] == MetricSummary("Validation-Accuracy", "0.61", "0.85", "0.72")
    assert summaries["loss"] == MetricSummary("loss", "0.4", "1.2", "0.9")


def test_latest_is_by_time_across_midnight_and_years() -> None:
    late, early = "2024-03-04T23:59:59Z", "2024-03-05T00:00:01Z"
    assert observe(["new", "old"], [early, late]).latest == "new"
    assert observe(["old", "new"], ["2023-12-31T23:59:59.9Z", "2024-01-01T00:00:00Z"]).latest == "new"
    assert observe(["new", "old"], ["1970-01-01T00:00:00Z", "1969-12-31T23:59:59Z"]).latest == "new"


def test_latest_compares_fractions_of_a_second_and_ties_go_to_the_later_line() -> None:
    assert observe(["new", "old"], ["2024-03-04T17:55:08.5Z", "2024-03-04T17:55:08.25Z"]).latest == "new"
    assert observe(["old", "new"], ["2024-03-04T17:55:08.000000001Z", "2024-03-04T17:55:08.000000002Z"]).latest \
        == "new"
    assert observe(["first", "second"], ["2024-03-04T17:55:08Z", "2024-03-04T18:55:08+01:00"]).latest == "second"
    assert observe(["a", "b", "c"]).latest == "c"


def test_latest_compares_instants_in_different_time_zones() -> None:
    # 17:55 in UTC is later than 12:00 at -05:30 (17:30 UTC), though it reads earlier than 18:00 at +01:00.
    stamps = ["2024-03-04T17:55:00Z", "2024-03-04T12:00:00-05:30", "2024-03-04T18:00:00+01:00"]
    assert observe(["utc", "minus", "plus"], stamps).latest == "utc"


@pytest.mark.parametrize("text, nanos", [
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T00:00:01.5Z", 1_500_000_000),
    ("1970-01-01T00:00:00.123456789Z", 123_456_789),
    ("1970-01-01T00:00:00.000000001Z", 1),
    ("1969-12-31T23:59:59Z", -SECOND),
    ("2024-03-05T00:00:01Z", 1_709_596_801 * SECOND),
    ("2024-03-04T23:59:59Z", 1_709_596_799 * SECOND),
    ("1970-01-01T00:00:00-05:30", 19_800 * SECOND),
    ("1970-01-01T00:00:00+05:30", -19_800 * SECOND),
    ("1970-01-01T00:00:00+23:59", -86_340 * SECOND),
    ("1970-01-01T00:00:00-00:45", 2_700 * SECOND),
    ("1970-01-02T10:11:12+00:00", (86_400 + 36_672) * SECOND),
    (ZERO_TIME, -62_135_596_800 * SECOND),
])
def test_rfc3339_to_nanoseconds(text: str, nanos: int) -> None:
    assert rfc3339_nanos(text) == nanos


@pytest.mark.parametrize("text", ["1970-01-01T00:00:00+01:60", "1970-01-01T00:00:00+24:00",
                                  "1970-01-01T00:00:00-24:00", "1970-01-01T00:00:00+0100", "2024-13-01T00:00:00Z",
                                  "2024-01-01T00:00:60Z", "1970-01-01T00:00:00.Z", " 1970-01-01T00:00:00Z"])
def test_rfc3339_refuses_impossible_offsets_and_dates(text: str) -> None:
    assert rfc3339_nanos(text) is None


def test_a_line_dated_with_a_time_zone_keeps_its_text_and_orders_by_instant() -> None:
    text = "2024-03-04T23:30:00-01:00 acc=0.1\n2024-03-05T00:15:00Z acc=0.2"
    logs = collect_text(text, ["acc"], [])
    assert [log.timestamp for log in logs] == ["2024-03-04T23:30:00-01:00", "2024-03-05T00:15:00Z"]
    assert summarize(logs, ["acc"])["acc"].latest == "0.1"


@pytest.mark.parametrize("pattern, groups", [(r"acc=([\d.]+)", 1), (r"(?:acc)=(?:[\d.]+)", 0), ("acc", 0)])
def test_metrics_format_with_fewer_than_two_groups_is_refused(pattern: str, groups: int) -> None:
    with pytest.raises(MetricsError) as info:
        compile_filters([r"(\w+)=(\d+)", pattern])
    assert str(info.value) == (f"metricsFormat {pattern!r} has {groups} capturing group"
                               f"{'' if groups == 1 else 's'}; it needs two: the metric name, then its value")
    with pytest.raises(MetricsError):
        collect_text("acc=1", ["acc"], [pattern])


def test_metrics_format_that_is_not_a_regex_is_refused(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(MetricsError, match=r"metricsFormat '\(acc=' is not a valid regular expression in Go's syntax "
                                           r"\(RE2\), which Katib uses: missing \): \(acc=$"):
        compile_filters(["(acc="])
    assert capfd.readouterr() == ("", "")  # the one-line error is the only report: RE2 logs nothing itself


def test_metrics_format_reads_name_and_value_from_the_first_two_groups() -> None:
    text = "step 1 acc = 0.5 (best) | loss : 0.7\nstep 2 acc=0.75 (best)"
    logs = collect_text(text, ["acc", "loss"], [r"(\w+\s*)=(\s*[\d.]+) \((best)\)", r"(loss) : ([\d.]+)"])
    assert [(log.name, log.value) for log in logs] == [("acc", "0.5"), ("loss", "0.7"), ("acc", "0.75")]


def test_a_group_that_takes_no_part_reads_as_empty_text() -> None:
    logs = collect_text("acc=?", ["acc"], [r"(acc)=(\d+)?"])
    assert [(log.name, log.value) for log in logs] == [("acc", "")]
    assert summarize(logs, ["acc"])["acc"] == MetricSummary("acc", UNAVAILABLE, UNAVAILABLE, "")


def test_only_lines_naming_a_metric_are_read() -> None:
    text = "acc=0.5\nstep=3\nloss=0.1\nnothing here"
    logs = collect_text(text, ["acc", "loss"], [])
    assert [(log.name, log.value) for log in logs] == [("acc", "0.5"), ("loss", "0.1")]


def test_json_lines_take_string_values_skip_null_lines_and_keep_the_order() -> None:
    text = "\n".join(['{"acc": "0.5", "loss": 0.3}', "null", "", '{"loss": "0.2", "acc": "0.6", "timestamp": 2}',
                      '{"acc": null}'])
    logs = collect_text(text, ["acc", "loss"], [], "JSON")
    assert [(log.timestamp, log.name, log.value) for log in logs] == [
        (ZERO_TIME, "acc", "0.5"), ("1970-01-01T00:00:02Z", "acc", "0.6"), ("1970-01-01T00:00:02Z", "loss", "0.2")]


@pytest.mark.parametrize("text, line", [('{"acc": "0.5"}\n[1, 2]', 2), ('"acc"', 1), ('{"acc": "1"}\n\n7', 3)])
def test_json_line_that_is_not_an_object_is_named_by_its_number(text: str, line: int) -> None:
    with pytest.raises(MetricsError) as info:
        collect_text(text, ["acc"], [], "JSON")
    assert str(info.value) == f"failed to parse the json object on line {line}: not an object"


def test_json_without_the_objective_is_the_unavailable_objective() -> None:
    logs = collect_text('{"loss": "0.5"}', ["acc", "loss"], [], "JSON")
    assert logs == [MetricLog(ZERO_TIME, "acc", UNAVAILABLE)]
    assert summarize(logs, ["acc", "loss"]) == {"acc": MetricSummary("acc", UNAVAILABLE, UNAVAILABLE, UNAVAILABLE),
                                                "loss": MetricSummary("loss")}


@pytest.mark.parametrize("value, text", [
    (0, "1970-01-01T00:00:00Z"),
    (-1, "1969-12-31T23:59:59Z"),
    (86_400, "1970-01-02T00:00:00Z"),
    (1.5, "1970-01-01T00:00:01.000000005Z"),  # Katib reads the digits after the point as nanoseconds
    (2.1, "1970-01-01T00:00:02.000000001Z"),
    (3.25, "1970-01-01T00:00:03.000000025Z"),
    (1e20, ""),
    (float("nan"), ""),
    (float("inf"), ""),
    (None, ""),
    (False, ""),
    ([1], ""),
    ("2024-03-04T17:55:08+01:00", "2024-03-04T17:55:08+01:00"),
    ("2024-03-04", ""),
])
def test_json_timestamp_values(value: object, text: str) -> None:
    assert json_timestamp(value) == text


@pytest.mark.parametrize("text, number", [("-0x1p-2", -0.25), ("+0x1P+3", 8.0), ("0x10", 16.0), ("-Infinity", -math.inf),
                                          ("+inf", math.inf), ("1e-400", 0.0), ("-2.5E+2", -250.0), ("7", 7.0)])
def test_go_float_reads_what_go_reads(text: str, number: float) -> None:
    assert go_float(text) == number


@pytest.mark.parametrize("text", ["0x", "0xzz", "0x1p99999", "-1e400", "1e", "e5", "+-1", "infinite", "1.5 "])
def test_go_float_refuses_what_go_refuses(text: str) -> None:
    assert go_float(text) is None


def test_go_float_reads_nan() -> None:
    assert math.isnan(go_float("NaN"))  # type: ignore[arg-type]


def test_observation_knows_which_metrics_it_has_seen() -> None:
    observation = Observation(["acc", "loss"])
    assert not observation.has("acc")
    observation.add(MetricLog(ZERO_TIME, "acc", "0.5"))
    assert observation.has("acc") and not observation.has("loss")


@pytest.mark.parametrize("text, expected", [("0.25", 0.25), ("-3e2", -300.0), ("0x1p-2", 0.25), ("NaN", None),
                                            ("+Inf", None), ("-inf", None), ("1e999", None), ("-0x1p99999", None),
                                            ("abc", None), ("", None)])
def test_finite_value_keeps_only_finite_numbers(text: str, expected: float | None) -> None:
    assert finite_value(text) == expected


@pytest.mark.parametrize("text, expected", [("0x1p99999", math.inf), ("-0x1p99999", -math.inf),
                                            ("+0x1p99999", math.inf), ("1e999", math.inf), ("-1e999", -math.inf),
                                            ("0x1.8p1", 3.0), ("0xzz", None), ("1.5x", None)])
def test_go_float_value_gives_go_s_value_also_on_a_range_error(text: str, expected: float | None) -> None:
    assert go_float_value(text) == expected
