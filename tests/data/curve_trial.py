"""A stand-in trial that reports one objective value per epoch, dated as `katib-nas trial` dates them.

Trials take their curve by start order: the n-th trial started in the run's working directory reads the
n-th `;`-separated list of `--curves` (the last list repeats). Each epoch sleeps `--epoch-seconds`, then
prints `<RFC 3339 time> Validation-Accuracy=<value>` and the matching Validation-Loss.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def next_ordinal(counter: Path) -> int:
    """1 for the first trial started with this counter file, 2 for the next, ..."""
    with open(counter, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        ordinal = len(handle.read()) + 1
        handle.write("x")
    return ordinal


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--architecture", required=True)
    parser.add_argument("--curves", required=True, help="e.g. '0.6,0.7;0.3,0.4': one list per trial, in start order")
    parser.add_argument("--counter", required=True, help="file that counts the trials started so far")
    parser.add_argument("--epoch-seconds", type=float, default=0.2)
    args = parser.parse_args()
    curves = [[float(v) for v in curve.split(",")] for curve in args.curves.split(";")]
    curve = curves[min(next_ordinal(Path(args.counter)), len(curves)) - 1]
    for value in curve:
        time.sleep(args.epoch_seconds)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        print(f"{stamp} Validation-Accuracy={value:g}\n{stamp} Validation-Loss={1 - value:g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
