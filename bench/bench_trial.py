"""Trial speed: trainer throughput against a plain hand-written PyTorch loop, and time to the first metric line.

Throughput: the same network (same seed) on the same Fashion-MNIST tensors,
trained for the same number of steps by (a) a minimal hand-written loop,
(b) katib_nas.trial_image.trainer.train, (c) the trainer with branch statistics
on. Runs are interleaved a, b, c, a, b, c, ... and each method's median is
compared with the baseline's median from the same run, so machine load
affects all three alike. Targets: b/a >= 0.90, c/a >= 0.85.

Time to first metric: `katib-nas trial` as a subprocess on one truncated
epoch of Fashion-MNIST; wall time from start to the first `name=value` line.

Run: .venv/bin/python bench/bench_trial.py [--threads 2] [--steps 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from katib_nas.contract.codec import decode
from katib_nas.contract.metric_format import parse_metric_line
from katib_nas.trial_image.data import load_dataset, split_dataset
from katib_nas.trial_image.model import Network, build_model
from katib_nas.trial_image.trainer import Tensors, TrainConfig, train

ARCH = "in28x28x1-cls10-stem16/w32s2:c3+s5+mp3:c3+d5@r/w48s2:c3+mb3e3@0"


@dataclass(frozen=True)
class BenchConfig:
    steps: int
    batch_size: int
    lr: float = 0.05
    weight_decay: float = 3e-4
    seed: int = 0


def fresh_model(seed: int) -> Network:
    torch.manual_seed(seed)
    return build_model(decode(ARCH))


def handwritten_loop(model: Network, data: Tensors, config: BenchConfig) -> None:
    """What a user would write by hand: shuffle, slice, forward, loss, backward, step, cosine schedule."""
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True,
                                weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
    generator = torch.Generator().manual_seed(config.seed)
    count, step = len(data.train_y), 0
    model.train()
    while step < config.steps:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - config.batch_size + 1, config.batch_size):
            index = order[start:start + config.batch_size]
            loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step == config.steps:
                return


def trainer_loop(branch_stats: bool) -> Callable[[Network, Tensors, BenchConfig], None]:
    def run(model: Network, data: Tensors, config: BenchConfig) -> None:
        model.record_branch_stats(branch_stats)
        train(model, data, TrainConfig(steps=config.steps, batch_size=config.batch_size, lr=config.lr,
                                       weight_decay=config.weight_decay, seed=config.seed))
    return run


def samples_per_second(method: Callable[[Network, Tensors, BenchConfig], None], data: Tensors,
                       config: BenchConfig) -> float:
    model = fresh_model(config.seed)
    method(model, data, BenchConfig(steps=5, batch_size=config.batch_size))  # warm-up: allocator, kernels
    start = time.perf_counter()
    method(model, data, config)
    return config.steps * config.batch_size / (time.perf_counter() - start)


def throughput(threads: int, steps: int, repeats: int, batch_size: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    split = split_dataset(load_dataset("fashion-mnist", None), 0.1, max_train_samples=20000)
    data = Tensors(*(torch.from_numpy(a) for a in (split.train_x, split.train_y, split.val_x, split.val_y)))
    methods = {"hand-written loop": handwritten_loop, "trainer": trainer_loop(False),
               "trainer + branch stats": trainer_loop(True)}
    config = BenchConfig(steps=steps, batch_size=batch_size)
    samples: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            samples[name].append(samples_per_second(method, data, config))
    return {name: statistics.median(values) for name, values in samples.items()}


def time_to_first_metric(threads: int, max_train_samples: int) -> tuple[float, float]:
    """(seconds to the first metric line, seconds to exit) for one truncated epoch of Fashion-MNIST."""
    exe = Path(sys.executable).with_name("katib-nas")
    command = [str(exe), "trial", "--architecture", ARCH, "--dataset", "fashion-mnist", "--epochs", "1",
               "--max-train-samples", str(max_train_samples), "--threads", str(threads)]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = None
    assert process.stdout is not None
    for line in process.stdout:
        if first is None and parse_metric_line(line) is not None:
            first = time.perf_counter() - start
    if process.wait() != 0 or first is None:
        raise SystemExit(f"trial failed with exit code {process.returncode}")
    return first, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-train-samples", type=int, default=10000,
                        help="size of the truncated epoch for the time-to-first-metric run")
    args = parser.parse_args()
    print(f"architecture {ARCH}, {args.threads} threads, batch {args.batch_size}, {args.steps} steps x "
          f"{args.repeats} interleaved repeats")
    rates = throughput(args.threads, args.steps, args.repeats, args.batch_size)
    baseline = rates["hand-written loop"]
    for name, rate in rates.items():
        print(f"{name:24s} {rate:9.1f} samples/s  ratio {rate / baseline:.3f}")
    first, total = time_to_first_metric(args.threads, args.max_train_samples)
    print(f"first metric line after {first:.1f} s, exit after {total:.1f} s "
          f"(one epoch of {args.max_train_samples} Fashion-MNIST images)")
    ok = rates["trainer"] / baseline >= 0.90 and rates["trainer + branch stats"] / baseline >= 0.85
    print("targets (trainer >= 0.90x, with branch stats >= 0.85x):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
