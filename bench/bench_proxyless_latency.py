"""Latency model accuracy: the latency table's prediction against measured latency of random networks.

Profiles the supernet of examples/proxylessnas-oneshot-fashion-mnist.yaml on this CPU (one thread,
batch 1, as `katib-nas profile` does), draws NETWORKS random derived networks (one op per block,
uniform), and times each whole network with the table's clock (the thread's CPU time with one thread)
and statistic (fresh build, eval mode, inference_mode, `repeats` runs after warm-up; min, or median
with --statistic). Reports
the mean absolute relative error of prediction against measurement and Kendall's tau between the two
rankings. Measurements of the networks are interleaved in ROUNDS passes and the per-network minimum
(or median of the per-pass figures) is kept, so a burst of load from other processes hits every
network alike.

    .venv/bin/python bench/bench_proxyless_latency.py [--networks 60] [--rounds 3] [--statistic min]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from katib_nas.cli.profile import experiment_supernet
from katib_nas.contract.codec import encode
from katib_nas.contract.supernet import derive
from katib_nas.trial_image.proxyless.profiler import Timing, profile_supernet, time_network_ms

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "proxylessnas-oneshot-fashion-mnist.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--statistic", choices=("min", "median"), default="min")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    timing = Timing(10, args.repeats, args.statistic, rounds=args.rounds)
    supernet = experiment_supernet(EXAMPLE)
    table = profile_supernet(supernet, torch.device("cpu"), timing)
    rng = np.random.default_rng(args.seed)
    options = len(supernet.cells[0].ops)
    networks = [derive(supernet, [int(c) for c in rng.integers(options, size=len(supernet.cells))])
                for _ in range(args.networks)]
    predicted = np.array([table.predict_ms(n) for n in networks])
    one_pass = Timing(10, args.repeats, args.statistic, rounds=1)  # passes interleaved below instead
    passes = np.array([[time_network_ms(n, torch.device("cpu"), one_pass) for n in networks]
                       for _ in range(args.rounds)])
    measured = passes.min(axis=0) if args.statistic == "min" else np.median(passes, axis=0)
    relative = np.abs(predicted - measured) / measured
    tau = kendalltau(predicted, measured).statistic
    print(f"{args.networks} random networks from {EXAMPLE.name}, 1 thread, batch 1, statistic {args.statistic}, "
          f"{args.rounds} interleaved passes x {args.repeats} runs")
    print(f"table: {len(table.entries)} entries; measured latency {measured.min():.3f}..{measured.max():.3f} ms")
    print(f"mean absolute relative error {relative.mean() * 100:.2f}% (median {np.median(relative) * 100:.2f}%, "
          f"max {relative.max() * 100:.2f}%); "
          f"mean signed error {np.mean((predicted - measured) / measured) * 100:+.2f}%")
    print(f"Kendall tau {tau:.3f}")
    worst = int(relative.argmax())
    print(f"worst: {encode(networks[worst])} predicted {predicted[worst]:.3f} measured {measured[worst]:.3f}")
    print("pass-to-pass spread of the measurement (median over networks of max/min - 1): "
          f"{statistics.median((passes.max(axis=0) / passes.min(axis=0) - 1).tolist()) * 100:.1f}%")


if __name__ == "__main__":
    main()
