"""What a trial's output costs the runner: time and peak memory, against a quiet trial in the same run.

Runs `katib-nas run` on one stub trial (tests/data/stub_trial.py) three ways in the same session: quiet (its metric
lines only, the baseline), noisy (NOISE_LINES lines of 2 MiB each, every one mentioning the objective, plus odd
lines: a 100,000-character line with the metric's name, a 400-digit value, carriage returns, nan, invalid UTF-8),
and the noisy run again. For each: the runner process's own CPU time and peak RSS (children excluded; measured by
the runner process itself), the trial's output size, wall time. Then the metrics collector alone: LONG_LINES lines
of 100,000 characters that mention the metric (with Katib's default regex and two metricsFormat regexes) against
the same bytes of ordinary metric lines; and, for reference, Python's backtracking `re` with Katib's default regex
on one 40,000-character line (what the runner used before RE2).

    .venv/bin/python bench/bench_trial_output.py [--noise-lines 512] [--long-lines 100] [--no-backtracking]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import noisy_runner

from katib_nas.contract.metric_format import BRANCH_STATS_REGEX, KATIB_DEFAULT_REGEX, NUMERIC_METRIC_REGEX
from katib_nas.runner.trial_output import collect_file

METRIC = "Validation-Accuracy"


def measured_run(folder: Path, *stub_args: str) -> dict[str, float]:
    """One trial's run: wall time, the runner's own CPU time and peak RSS, the trial's output size."""
    started = time.perf_counter()
    result = noisy_runner.finish(noisy_runner.start(folder, 1, 1, *stub_args), folder)
    wall = time.perf_counter() - started
    if result.exit_code != 0 or result.misread:
        raise SystemExit(f"katib-nas run failed or misread {result.misread}: {result.stderr[-2000:]}")
    return {"wall_s": round(wall, 2), "runner_cpu_s": result.cpu_s, "runner_peak_rss_mib": result.peak_rss_mib,
            "trial_output_mib": result.output_mib,
            "skipped_line_notes": sum("longer than" in line for line in result.stderr.splitlines())}


def collector_times(folder: Path, long_lines: int) -> dict[str, float]:
    filler = "a" * 100_000
    long_path, short_path = folder / "long.log", folder / "short.log"
    long_path.write_text("".join(f"{METRIC} {filler} {METRIC}=0.{i}\n" for i in range(long_lines)))
    short_line = f"{METRIC}=0.5 Validation-Loss=0.25\n"
    short_path.write_text(short_line * (long_path.stat().st_size // len(short_line)))
    result: dict[str, float] = {"bytes_each": long_path.stat().st_size}
    for name, filters in {"default_regex": [], "metrics_format": [NUMERIC_METRIC_REGEX, BRANCH_STATS_REGEX]}.items():
        for kind, path in (("long", long_path), ("short", short_path)):
            started = time.perf_counter()
            collected = collect_file(path, [METRIC, "Validation-Loss"], filters)
            result[f"{name}_{kind}_lines_s"] = round(time.perf_counter() - started, 3)
            assert collected.observation.has(METRIC)
        result[f"{name}_ratio_long_to_short"] = round(result[f"{name}_long_lines_s"]
                                                      / result[f"{name}_short_lines_s"], 2)
    return result


def backtracking_reference() -> float:
    """Seconds Python's `re` takes on one 40,000-character line with Katib's default regex."""
    pattern = re.compile(KATIB_DEFAULT_REGEX, re.ASCII)
    started = time.perf_counter()
    list(pattern.finditer(f"{METRIC} " + "a" * 40_000))
    return round(time.perf_counter() - started, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise-lines", type=int, default=512, help="2-MiB lines the noisy trial prints")
    parser.add_argument("--long-lines", type=int, default=100, help="100,000-character lines for the collector")
    parser.add_argument("--no-backtracking", action="store_true", help="skip the `re` reference (about 15 s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-trial-output-") as tmp:
        folder = Path(tmp)
        quiet = measured_run(folder / "quiet")
        noisy = measured_run(folder / "noisy", f"--noise-lines={args.noise_lines}", "--odd-lines")
        again = measured_run(folder / "noisy-again", f"--noise-lines={args.noise_lines}", "--odd-lines")
        result = {"quiet": quiet, "noisy": noisy, "noisy_again": again,
                  "runner_peak_rss_growth_mib": round(max(noisy["runner_peak_rss_mib"], again["runner_peak_rss_mib"])
                                                      - quiet["runner_peak_rss_mib"], 1),
                  "runner_cpu_ratio_noisy_to_quiet": round(max(noisy["runner_cpu_s"], again["runner_cpu_s"])
                                                           / quiet["runner_cpu_s"], 2),
                  "collector": collector_times(folder, args.long_lines)}
    if not args.no_backtracking:
        result["backtracking_re_one_40000_char_line_s"] = backtracking_reference()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
