"""A stand-in trial program for the local runner's tests: prints Katib-style metrics for an architecture.

The values are a deterministic function of the architecture text. Flags make it fail, omit the
objective, sleep, or write its metrics to a file (text or JSON lines) instead of stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--architecture", required=True)
    parser.add_argument("--fail-when", default="")
    parser.add_argument("--no-objective-when", default="")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--slow-if-exists", default="", help="sleep 60 s more while this file exists")
    parser.add_argument("--metrics-file", default="")
    parser.add_argument("--format", default="text", choices=("text", "json"))
    args = parser.parse_args()
    digest = int(hashlib.sha256(args.architecture.encode()).hexdigest()[:8], 16)
    accuracy = 0.5 + (digest % 4500) / 10000
    latency = 0.1 + len(args.architecture) / 100
    print(f"stub trial for {args.architecture} pid {os.getpid()}", flush=True)
    time.sleep(args.sleep)
    if args.slow_if_exists and os.path.exists(args.slow_if_exists):
        print(f"slow: sleeping while {args.slow_if_exists} exists", flush=True)
        time.sleep(60)
    if args.fail_when and args.fail_when in args.architecture:
        print("stub trial failing on purpose", file=sys.stderr)
        return 3
    metrics = {"Validation-Loss": 1 - accuracy, "latency-ms": latency}
    if not (args.no_objective_when and args.no_objective_when in args.architecture):
        metrics["Validation-Accuracy"] = accuracy
    if args.metrics_file:
        with open(args.metrics_file, "w") as handle:
            for name, value in metrics.items():
                if args.format == "json":
                    handle.write(json.dumps({name: f"{value:.6g}", "timestamp": time.time()}) + "\n")
                else:
                    handle.write(f"{name}={value:.6g}\n")
    else:
        for name, value in metrics.items():
            print(f"{name}={value:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
