"""A trial's output, however large or odd, costs the runner bounded memory and linear time.

Katib's collector runs metricsFormat regexes with Go's regexp (RE2: linear in the line's length); Python's
backtracking `re` took about 14 s on one 40,000-character line with Katib's default regex. The runner reads
a trial's output in bounded chunks and skips lines longer than MAX_LINE_BYTES (with one log line saying how
many), so a trial printing a gigabyte does not take the runner's memory with it.

Time is bounded here by a CPU-time limit on the subprocess that does the work, set a thousand times above what
linear-time matching needs, so that a quadratic matcher is stopped instead of hanging the suite; no test
asserts on elapsed time. The times themselves are in RELIABILITY.md (bench/bench_trial_output.py).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from katib_nas.runner.manifest import ExperimentError, parse_experiment
from katib_nas.runner.metrics_collector import MetricsError
from katib_nas.runner.trial_output import MAX_LINE_BYTES, MAX_METRIC_LOGS, LineReader, collect_file

from .conftest import load_yaml
from .support.local_runner import DIGITS, HANG_GUARD_SECONDS, observation, stub_experiment, trials

#: CPU seconds a subprocess may use: linear-time matching of the lines below needs well under 0.1 s.
CPU_SECONDS = 60
#: How much more than a quiet trial's run the runner may hold while it reads a noisy trial's output.
RUNNER_GROWTH_BOUND_MIB = 64

MATCH_LONG_LINES = """
import json, sys
from katib_nas.runner.metrics_collector import collect_text
from katib_nas.contract.metric_format import NUMERIC_METRIC_REGEX, BRANCH_STATS_REGEX
metric = "Validation-Accuracy"
filler = "a" * 100_000
text = "\\n".join([f"{metric} {filler}", f"{metric}={filler}", f"{metric} {filler} {metric}=0.75",
                   f"Branch-Stats={'0.5_' * 25_000}0.5 {metric}=0.5"])
found = {}
for name, filters in {"default": [], "metricsFormat": [NUMERIC_METRIC_REGEX, BRANCH_STATS_REGEX]}.items():
    logs = collect_text(text, [metric, "Branch-Stats"], filters)
    found[name] = [(log.name, log.value[:20], len(log.value)) for log in logs]
print(json.dumps(found))
"""


def limit_cpu() -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def test_lines_of_100000_characters_are_matched_in_linear_time() -> None:
    done = subprocess.run([sys.executable, "-c", MATCH_LONG_LINES], capture_output=True, text=True,
                          preexec_fn=limit_cpu, timeout=HANG_GUARD_SECONDS)
    assert done.returncode == 0, f"stopped by the CPU limit or failed: {done.returncode} {done.stderr[-2000:]}"
    found = json.loads(done.stdout)
    # Katib's default regex reads `Validation-Accuracy=aaa...` as an empty value and `Branch-Stats=0.5_...` as 0.5.
    assert found["default"] == [["Validation-Accuracy", "", 0], ["Validation-Accuracy", "0.75", 4],
                                ["Branch-Stats", "0.5", 3], ["Validation-Accuracy", "0.5", 3]]
    assert found["metricsFormat"] == [["Validation-Accuracy", "0.75", 4], ["Branch-Stats", "0.5", 3],
                                      ["Validation-Accuracy", "0.5", 3], ["Branch-Stats", "0.5_0.5_0.5_0.5_0.5_",
                                                                          100_003]]


@pytest.mark.parametrize("pattern, message", [
    (r"(Validation-Accuracy)=(\d+(?=\s))", "is not a valid regular expression in Go's syntax (RE2), which Katib "
                                           "uses: invalid perl operator: (?="),
    (r"(\w+)=(\d+)\1", "is not a valid regular expression in Go's syntax (RE2), which Katib uses: invalid escape "
                       "sequence: \\1"),
    (r"(?:Validation-Accuracy)=(\d+)(?:\s)", "has 1 capturing group; it needs two: the metric name, then its value"),
])
def test_a_metrics_format_katib_cannot_use_is_refused_naming_why(pattern: str, message: str) -> None:
    document = load_yaml(DIGITS)
    document["spec"]["metricsCollectorSpec"] = {"source": {"filter": {"metricsFormat": [pattern]}}}
    with pytest.raises(ExperimentError) as refused:
        parse_experiment(yaml.safe_dump(document), "experiment.yaml")
    assert message in str(refused.value) and "spec.metricsCollectorSpec.source.filter.metricsFormat[0]" in str(
        refused.value)


def write(path: Path, *pieces: bytes) -> None:
    with open(path, "ab") as handle:
        for piece in pieces:
            handle.write(piece)


def test_the_line_reader_keeps_complete_lines_and_skips_overlong_ones(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(b"")
    reader = LineReader(path, wanted=(b"acc",), chunk_bytes=64, max_line=100)
    write(path, b"noise\nacc=1\nacc=", b"2")
    assert [line for batch in reader.batches() for line in batch] == ["acc=1"]  # "acc=2" is not complete yet
    write(path, b"\n" + b"acc" + b"x" * 300 + b"=9\nacc=3\n" + b"y" * 500 + b"\nacc=4")
    assert [line for batch in reader.batches() for line in batch] == ["acc=2", "acc=3"]
    assert reader.skipped == 1  # the 300-byte line mentioned acc; the 500-byte one did not
    assert [line for batch in reader.batches(final=True) for line in batch] == ["acc=4"]
    assert reader.pending_bytes == 0


def run_measured(tmp_path: Path, name: str, *stub_args: str) -> tuple[subprocess.CompletedProcess, int, Path]:
    """`katib-nas run` of one stub trial in a subprocess that reports its own peak RSS (KiB) on its last line: VmHWM
    (getrusage's ru_maxrss would carry this process's peak over the exec of the (v)forked child)."""
    folder = tmp_path / name
    folder.mkdir()
    experiment = stub_experiment(folder, *stub_args, max_trials=1, parallel=1, max_failed=1)
    workdir = folder / "run"
    code = ("import re, sys\nfrom katib_nas.cli.main import main\ncode = main(sys.argv[1:])\n"
            "peak = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
            "print('peak-rss-kib', peak, file=sys.stderr)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, "run", str(experiment), "--workdir", str(workdir),
                           "--no-report"], capture_output=True, text=True, preexec_fn=limit_cpu,
                          timeout=HANG_GUARD_SECONDS)
    peak = int(done.stderr.strip().splitlines()[-1].split()[-1])
    return done, peak, workdir


def test_a_trial_printing_a_gigabyte_and_odd_lines_keeps_the_runner_small_and_its_metrics(tmp_path: Path) -> None:
    quiet, quiet_peak, _ = run_measured(tmp_path, "quiet")
    assert quiet.returncode == 0, quiet.stderr
    noisy, noisy_peak, workdir = run_measured(tmp_path, "noisy", "--noise-lines=512", "--odd-lines")
    try:
        assert noisy.returncode == 0, noisy.stderr[-3000:]
        [(name, condition, _, _)] = trials(workdir)
        log = workdir / "trials" / name / "output.log"
        assert log.stat().st_size > 1 << 30
        printed = log_tail_value(log, "Validation-Accuracy=")
        assert condition == "Succeeded"
        # The over-long lines end with Validation-Accuracy=0.999: skipped, so the maximum is the trial's own value.
        assert observation(workdir, name)["Validation-Accuracy"] == (printed, printed, printed)
        skipped = [line for line in noisy.stderr.splitlines() if "longer than" in line]
        assert skipped == [f"trial {name}: 512 output lines longer than {MAX_LINE_BYTES // (1 << 20)} MiB that "
                           "mention a metric were not read for metrics"]
        growth_mib = (noisy_peak - quiet_peak) / 1024
        assert growth_mib < RUNNER_GROWTH_BOUND_MIB, (quiet_peak, noisy_peak)
    finally:
        for output in workdir.glob("trials/*/output.log"):
            output.unlink()  # a gigabyte: not kept among pytest's last runs


def log_tail_value(log: Path, prefix: str) -> str:
    """The value on the last line of a file that starts with `prefix`."""
    with open(log, "rb") as handle:
        handle.seek(-4096, 2)
        lines = handle.read().decode(errors="replace").splitlines()
    return [line for line in lines if line.startswith(prefix)][-1][len(prefix):]


def test_metric_logs_are_capped_per_trial_while_the_observation_covers_every_value(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    count = MAX_METRIC_LOGS + 5_000
    path.write_text("".join(f"acc={i}\n" for i in range(count)) + "acc=0.5\n")
    collected = collect_file(path, ["acc"], [])
    assert len(collected.logs) == MAX_METRIC_LOGS and collected.dropped_logs == count + 1 - MAX_METRIC_LOGS
    assert [log.value for log in collected.logs[:2]] == ["0", "1"]
    summary = collected.observation.summaries()["acc"]
    assert (summary.min, summary.max, summary.latest) == ("0", str(count - 1), "0.5")


def test_a_bad_json_line_is_named_by_its_line_number_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"acc": "0.5"}\n' * 100_000 + "not json\n")  # 1.5 MB: read in two chunks
    with pytest.raises(MetricsError, match="on line 100001:"):
        collect_file(path, ["acc"], [], "JSON")
