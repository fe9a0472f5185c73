"""A stand-in trial program for the local runner's tests: prints Katib-style metrics for an architecture.

The values are a deterministic function of the architecture text. Flags make it fail, omit the
objective, sleep, write its metrics to a file (text or JSON lines) instead of stdout, report given
objective texts (nan, inf, 1e308) in the order trials start, print large or odd output around its metrics,
fill a file system until it is full, kill itself with SIGKILL, ignore SIGTERM, or create a file it is given. A `--*-once=PATH` flag acts in the one trial
that creates PATH first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import time

MIB = 1 << 20
#: Lines of the noise: each longer than the runner's line limit, with a metric at its end that must not be read.
NOISE_LINE = b"Validation-Accuracy progress " + b"#" * (2 * MIB) + b" Validation-Accuracy=0.999\n"
#: Lines that contain the objective's name but report nothing a collector may take as its value.
ODD_LINES = [
    "Validation-Accuracy " + "a" * 100_000,  # Katib's default regex backtracks on this with a backtracking engine
    "Validation-Accuracy=" + "9" * 400,  # out of float64's range: not a number to Go's ParseFloat
    "epoch 1/3 Validation-Accuracy\r epoch 2/3 Validation-Accuracy\r epoch 3/3",
    "Validation-Accuracy=nan Validation-Accuracy=inf Validation-Accuracy=²",
    "Validation-Accuracy \x00\x01\x7f=",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--architecture", required=True)
    parser.add_argument("--fail-when", default="")
    parser.add_argument("--no-objective-when", default="")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--slow-if-exists", default="", help="sleep 60 s more while this file exists")
    parser.add_argument("--slow-once", default="", help="the trial that claims this file sleeps 60 s more")
    parser.add_argument("--malformed-once", default="", help="the trial that claims this file adds a line that is "
                                                             "not JSON to its metrics file")
    parser.add_argument("--kill-self", action="store_true", help="end with SIGKILL instead of exiting")
    parser.add_argument("--ignore-sigterm", action="store_true", help="ignore SIGTERM (only SIGKILL ends it)")
    parser.add_argument("--touch", default="", help="create this file, and its folders, first")
    parser.add_argument("--metrics-file", default="")
    parser.add_argument("--format", default="text", choices=("text", "json"))
    parser.add_argument("--objectives", default="", help="comma-separated objective texts, the n-th for the n-th "
                                                         "trial to start (counted in --slots); later trials as usual")
    parser.add_argument("--slots", default="", help="folder in which each trial claims the next number")
    parser.add_argument("--noise-lines", type=int, default=0, help="print this many 2-MiB lines first")
    parser.add_argument("--odd-lines", action="store_true", help="print odd lines before the metrics")
    parser.add_argument("--fill", default="", help="with --fill-if-exists: a file to grow until its disk is full")
    parser.add_argument("--fill-if-exists", default="")
    parser.add_argument("--fill-at-end", action="store_true", help="fill after writing the metrics, not before")
    args = parser.parse_args()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.touch:
        os.makedirs(os.path.dirname(args.touch) or ".", exist_ok=True)
        open(args.touch, "a").close()
    digest = int(hashlib.sha256(args.architecture.encode()).hexdigest()[:8], 16)
    accuracy = 0.5 + (digest % 4500) / 10000
    latency = 0.1 + len(args.architecture) / 100
    print(f"stub trial for {args.architecture} pid {os.getpid()}", flush=True)
    time.sleep(args.sleep)
    if args.slow_if_exists and os.path.exists(args.slow_if_exists):
        print(f"slow: sleeping while {args.slow_if_exists} exists", flush=True)
        time.sleep(60)
    if args.slow_once and claim(args.slow_once):
        print(f"slow: sleeping as the trial that claimed {args.slow_once}", flush=True)
        time.sleep(60)
    if args.kill_self:
        os.kill(os.getpid(), signal.SIGKILL)
    filling = bool(args.fill_if_exists) and os.path.exists(args.fill_if_exists)
    if filling and not args.fill_at_end:
        fill(args.fill)
    if args.fail_when and args.fail_when in args.architecture:
        print("stub trial failing on purpose", file=sys.stderr)
        return 3
    print_noise(args.noise_lines, args.odd_lines)
    metrics: dict[str, float | str] = {"Validation-Loss": 1 - accuracy, "latency-ms": latency}
    if not (args.no_objective_when and args.no_objective_when in args.architecture):
        metrics["Validation-Accuracy"] = given_objective(args.objectives, args.slots) or accuracy
    write_metrics(metrics, args.metrics_file, args.format)
    if args.malformed_once and claim(args.malformed_once):
        with open(args.metrics_file, "a") as handle:
            handle.write("{not json\n")
    if filling and args.fill_at_end:
        fill(args.fill)
    return 0


def given_objective(objectives: str, slots: str) -> str:
    """The objective text for this trial: the next unclaimed entry of `objectives`, or "" when none is left."""
    if not objectives:
        return ""
    values = objectives.split(",")
    for number in range(len(values)):
        if claim(os.path.join(slots, str(number))):
            return values[number]
    return ""


def claim(path: str) -> bool:
    """Create `path`; True for the one process that created it, False when it existed."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def print_noise(noise_lines: int, odd_lines: bool) -> None:
    out = sys.stdout.buffer
    for _ in range(noise_lines):
        out.write(NOISE_LINE)
    if odd_lines:
        out.write("".join(line + "\n" for line in ODD_LINES).encode())
        out.write(b"Validation-Accuracy \xff\xfe invalid UTF-8\n")
    out.flush()


def fill(path: str) -> None:
    """Grow `path` until its file system refuses more (ENOSPC)."""
    block = b"\0" * MIB
    with open(path, "ab", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError:
            pass


def write_metrics(metrics: dict[str, float | str], path: str, file_format: str) -> None:
    text = {name: value if isinstance(value, str) else f"{value:.6g}" for name, value in metrics.items()}
    if path:
        with open(path, "w") as handle:
            for name, value in text.items():
                if file_format == "json":
                    handle.write(json.dumps({name: value, "timestamp": time.time()}) + "\n")
                else:
                    handle.write(f"{name}={value}\n")
    else:
        for name, value in text.items():
            print(f"{name}={value}")


if __name__ == "__main__":
    sys.exit(main())
