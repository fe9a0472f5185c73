"""The local metrics collector against Katib's own cases (file-metricscollector_test.go and getMetrics)."""

from __future__ import annotations

import pytest

from katib_nas.runner.metrics_collector import (
    UNAVAILABLE,
    ZERO_TIME,
    MetricLog,
    MetricsError,
    MetricSummary,
    collect_text,
    compile_filters,
    go_float,
    json_timestamp,
    parse_text,
    rfc3339_nanos,
    summarize,
)

KATIB_FILTER = r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"

JSON_GOOD = "\n".join([
    '{"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", "timestamp": 1638422847.28721, '
    '"trial": "0"}',
    '{"acc": "0.9349666833877563", "checkpoint_path": "", "global_step": "0", "timestamp": 1638422847.287801, '
    '"trial": "0"}',
    '{"checkpoint_path": "", "global_step": "1", "loss": "0.1414974331855774", '
    '"timestamp": "2021-12-02T14:27:50.000035161Z", "trial": "0"}',
    '{"acc": "0.9586416482925415", "checkpoint_path": "", "global_step": "1", '
    '"timestamp": "2021-12-02T14:27:50.000037459Z", "trial": "0"}',
    '{"checkpoint_path": "", "global_step": "2", "loss": "0.10683439671993256", "trial": "0"}',
])
TEXT_GOOD = "\n".join([
    "2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 0.8078};{metricName: loss, metricValue: 0.5183}",
    "2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 0.6752}",
    "2024-03-04T17:55:08Z INFO     {metricName: loss, metricValue: 0.3634}",
    "2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 100}",
    "2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 888.333}",
    "2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: -0.4759}",
    "{metricName: loss, metricValue: 0.8671}",
])
T = "2024-03-04T17:55:08Z"

# name -> (data, metrics, filters, format, expected [(timestamp, name, value)])
KATIB_CASES = {
    "Positive case for logs in JSON format": (JSON_GOOD, ["acc", "loss"], [], "JSON", [
        ("2021-12-02T05:27:27.000028721Z", "loss", "0.22082142531871796"),
        ("2021-12-02T05:27:27.000287801Z", "acc", "0.9349666833877563"),
        ("2021-12-02T14:27:50.000035161Z", "loss", "0.1414974331855774"),
        ("2021-12-02T14:27:50.000037459Z", "acc", "0.9586416482925415"),
        (ZERO_TIME, "loss", "0.10683439671993256"),
    ]),
    "Positive case for logs in TEXT format": (TEXT_GOOD, ["accuracy", "loss"], [KATIB_FILTER], "TEXT", [
        (T, "accuracy", "0.8078"), (T, "loss", "0.5183"), (T, "accuracy", "0.6752"), (T, "loss", "0.3634"),
        (T, "accuracy", "100"), (T, "accuracy", "888.333"), (T, "accuracy", "-0.4759"), (ZERO_TIME, "loss", "0.8671"),
    ]),
    "Invalid case for logs in TEXT format": ("\n".join([
        f"{T} INFO     {{metricName: accuracy, metricValue: .333}}",
        f"{T} INFO     {{metricName: accuracy, metricValue: -.333}}",
        f"{T} INFO     {{metricName: accuracy, metricValue: - 345.333}}",
        f"{T} INFO     {{metricName: accuracy, metricValue: 888.}}",
    ]), ["accuracy", "loss"], [KATIB_FILTER], "TEXT", [(ZERO_TIME, "accuracy", UNAVAILABLE)]),
    "Invalid formatted file for logs in TEXT format": ("\n".join([
        f"{T} INFO     {{metricName: accuracy, metricValue: 0.6752",
        f"{T} INFO     {{metricName: loss, metricValue: 0.3634}}",
    ]), ["accuracy", "loss"], [KATIB_FILTER], "TEXT", [(ZERO_TIME, "accuracy", UNAVAILABLE)]),
    "Invalid timestamp for logs in JSON format": ("\n".join([
        '{"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", "timestamp": "invalid", '
        '"trial": "0"}',
        '{"acc": "0.9349666833877563", "checkpoint_path": "", "global_step": "0", "timestamp": 1638422847, '
        '"trial": "0"}',
    ]), ["acc", "loss"], [], "JSON", [
        (ZERO_TIME, "loss", "0.22082142531871796"), ("2021-12-02T05:27:27Z", "acc", "0.9349666833877563"),
    ]),
    "Invalid timestamp for logs in TEXT format": ("\n".join([
        f"{T} INFO     {{metricName: accuracy, metricValue: 0.6752}}",
        "invalid INFO     {metricName: loss, metricValue: 0.3634}",
    ]), ["accuracy", "loss"], [KATIB_FILTER], "TEXT", [(T, "accuracy", "0.6752"), (ZERO_TIME, "loss", "0.3634")]),
    "Missing objective metric in JSON training logs": ("\n".join([
        '{"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", "timestamp": 1638422847.28721, '
        '"trial": "0"}',
        '{"checkpoint_path": "", "global_step": "1", "loss": "0.1414974331855774", '
        '"timestamp": "2021-12-02T14:27:50.000035161+09:00", "trial": "0"}',
        '{"checkpoint_path": "", "global_step": "2", "loss": "0.10683439671993256", "trial": "0"}',
    ]), ["acc", "loss"], [], "JSON", [(ZERO_TIME, "acc", UNAVAILABLE)]),
    "Missing objective metric in TEXT training logs": ("\n".join([
        f"{T} INFO     {{metricName: loss, metricValue: 0.3634}}",
        f"{T} INFO     {{metricName: loss, metricValue: 0.8671}}",
    ]), ["accuracy", "loss"], [], "TEXT", [(ZERO_TIME, "accuracy", UNAVAILABLE)]),
}


@pytest.mark.parametrize("case", sorted(KATIB_CASES))
def test_katib_collector_cases(case: str) -> None:
    data, metrics, filters, file_format, expected = KATIB_CASES[case]
    logs = collect_text(data, metrics, filters, file_format)
    assert [(log.timestamp, log.name, log.value) for log in logs] == expected


def test_invalid_json_is_an_error() -> None:
    data = ('"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796"\n'
            '{"acc": "0.9349666833877563", "trial": "0')
    with pytest.raises(MetricsError, match="failed to parse the json object"):
        collect_text(data, ["acc", "loss"], [], "JSON")


def test_unknown_file_format_is_an_error() -> None:
    with pytest.raises(MetricsError, match="TEXT or JSON"):
        collect_text("acc=1", ["acc"], [], "invalid")


# The forms Katib's default filter documents (pkg/metricscollector/v1beta1/common/const.go), plus this project's.
@pytest.mark.parametrize("line, name, value", [
    ("loss=0.3", "loss", "0.3"),
    ("accuracy=.98", "accuracy", ".98"),
    ("Score=-7.53e-05", "Score", "-7.53e-05"),
    ("Score=-7.53e+05", "Score", "-7.53e+05"),
    ("Score=1E0", "Score", "1E0"),
    ("Score=1.23E10", "Score", "1.23E10"),
    ("Validation-Accuracy = 0.912", "Validation-Accuracy", "0.912"),
    ("epoch 3: latency-ms=1.25 params=1234", "latency-ms", "1.25"),
])
def test_default_filter_forms(line: str, name: str, value: str) -> None:
    logs = parse_text([line], [name], compile_filters([]))
    assert [(log.name, log.value) for log in logs] == [(name, value)]


def test_several_metrics_on_one_line_and_only_requested_names() -> None:
    logs = parse_text(["Validation-Accuracy=0.9 Validation-Loss=0.3 other=5"], ["Validation-Accuracy",
                                                                                "Validation-Loss"],
                      compile_filters([]))
    assert [(log.name, log.value) for log in logs] == [("Validation-Accuracy", "0.9"), ("Validation-Loss", "0.3")]


def test_default_filter_gives_text_values_as_empty_and_metrics_format_keeps_them() -> None:
    line = "Branch-Stats=ms/0.5_0.25/0.125"
    assert [log.value for log in parse_text([line], ["Branch-Stats"], compile_filters([]))] == [""]
    custom = compile_filters([r"(Branch-Stats|Skip-Gates)=([\w./+-]+)"])
    assert [log.value for log in parse_text([line], ["Branch-Stats"], custom)] == ["ms/0.5_0.25/0.125"]


def test_timestamp_prefix_dates_the_metrics() -> None:
    logs = parse_text(["2024-01-02T03:04:05.5+01:00 acc=0.5", "not-a-time acc=0.6"], ["acc"], compile_filters([]))
    assert [log.timestamp for log in logs] == ["2024-01-02T03:04:05.5+01:00", ZERO_TIME]


def test_summaries_min_max_latest() -> None:
    logs = [MetricLog(ZERO_TIME, "acc", "0.5"), MetricLog(ZERO_TIME, "acc", "0.9"),
            MetricLog(ZERO_TIME, "acc", "0.7"), MetricLog(ZERO_TIME, "loss", "0.2"),
            MetricLog(ZERO_TIME, "ignored", "1")]
    summaries = summarize(logs, ["acc", "loss", "flops"])
    assert summaries["acc"] == MetricSummary("acc", "0.5", "0.9", "0.7")
    assert summaries["loss"] == MetricSummary("loss", "0.2", "0.2", "0.2")
    assert summaries["flops"] == MetricSummary("flops")
    assert "ignored" not in summaries


def test_latest_follows_timestamps_not_line_order() -> None:
    # As in Katib: a later line without a timestamp (zero time) does not replace a dated value.
    logs = [MetricLog("2024-03-04T17:55:08Z", "loss", "0.3634"), MetricLog(ZERO_TIME, "loss", "0.8671")]
    assert summarize(logs, ["loss"])["loss"].latest == "0.3634"
    later = [MetricLog("2024-03-04T17:55:08Z", "loss", "1"), MetricLog("2024-03-04T17:55:09Z", "loss", "2")]
    assert summarize(later, ["loss"])["loss"].latest == "2"


def test_non_numeric_values_keep_only_latest() -> None:
    logs = [MetricLog(ZERO_TIME, "Best-Genotype", "Genotype(a)"), MetricLog(ZERO_TIME, "Best-Genotype", "Genotype(b)")]
    summary = summarize(logs, ["Best-Genotype"])["Best-Genotype"]
    assert (summary.min, summary.max, summary.latest) == (UNAVAILABLE, UNAVAILABLE, "Genotype(b)")
    assert summary.value("max") == "Genotype(b)" and summary.value("min") == "Genotype(b)"


def test_strategy_picks_and_unknown_strategy() -> None:
    summary = MetricSummary("acc", "0.1", "0.9", "0.5")
    assert [summary.value(s) for s in ("min", "max", "latest", "")] == ["0.1", "0.9", "0.5", ""]


def test_bad_timestamp_in_a_metric_log_is_an_error() -> None:
    with pytest.raises(MetricsError):
        summarize([MetricLog("yesterday", "acc", "1")], ["acc"])


@pytest.mark.parametrize("text, number", [("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("-1e3", -1000.0),
                                          ("+2", 2.0), ("Inf", float("inf")), ("0x1p-2", 0.25)])
def test_go_float_accepts(text: str, number: float) -> None:
    assert go_float(text) == number


@pytest.mark.parametrize("text", ["", " 1", "1_000", "1e400", "0.5.5", "-", "unavailable", "Genotype(x)"])
def test_go_float_rejects(text: str) -> None:
    assert go_float(text) is None


def test_rfc3339() -> None:
    assert rfc3339_nanos("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert rfc3339_nanos("1970-01-01T01:00:00+01:00") == 0
    assert rfc3339_nanos(ZERO_TIME) is not None
    for bad in ("2024-02-30T00:00:00Z", "2024-01-01 00:00:00Z", "2024-01-01T00:00:00", "2024-01-01T24:00:00Z"):
        assert rfc3339_nanos(bad) is None


def test_json_unix_timestamps_follow_katib_formatting() -> None:
    assert json_timestamp(1638422847.28721) == "2021-12-02T05:27:27.000028721Z"
    assert json_timestamp(1638422847) == "2021-12-02T05:27:27Z"
    assert json_timestamp("invalid") == "" and json_timestamp(True) == "" and json_timestamp("") == ""
