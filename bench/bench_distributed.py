"""Data-parallel trial throughput (1 vs 2 processes at the same global batch), peak memory per rank, and
the cost of a checkpoint per epoch, measured in one run.

Workload: `katib-nas trial` of an MBConv network on Fashion-MNIST (4,000 training images, global batch 128,
2 epochs). One process uses every CPU thread the machine offers to it (--threads=N); two processes (rank 0
and rank 1 started as torchrun starts them, on loopback, gloo) use N/2 threads each, so both settings have
the same CPUs. Training speed is the second epoch's images per second from rank 0's log (the first one
pays for warm-up); the ratio 2-process / 1-process is the figure. Peak memory is each rank's own peak
resident set (wait4's ru_maxrss). The checkpoint cost is the time rank 0 spends writing one checkpoint
(log line of the checkpoint), against the epoch's training time, with --checkpoint-dir in a temporary
directory on local disk. Runs of the settings are interleaved, `--repeats` times, medians reported.

    .venv/bin/python bench/bench_distributed.py [--repeats 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from katib_nas.runner.launch import free_port

ARCH = "in28x28x1-cls10-stem16/w16:mb3e3@r:mb5e6@r/w32s2:mb3e6@r:mb7e3@r/w64s2:mb5e3@r:mb3e6@r"
TRIAL = [sys.executable, "-m", "katib_nas.cli", "trial", f"--architecture={ARCH}", "--dataset=fashion-mnist",
         "--max-train-samples=4000", "--batch-size=128", "--epochs=2", "--seed=3"]
EPOCH = re.compile(r"epoch 2: (\d+) steps in ([\d.]+) s, (\d+) images/s")
CHECKPOINT = re.compile(r"checkpoint of epoch (\d+) written in ([\d.]+) s \((\d+) bytes\)")
ACCURACY = re.compile(r" Validation-Accuracy=([\d.]+)$", re.M)


def run_ranks(world: int, threads: int, extra: list[str]) -> dict[str, object]:
    """Start `world` ranks of the trial; rank 0's epoch speed and accuracy, each rank's peak RSS (MiB)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        logs = [Path(scratch) / f"rank{r}.log" for r in range(world)]
        processes = []
        for rank in range(world):
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            if world > 1:
                env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                           MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            with open(logs[rank], "w") as log:
                processes.append(subprocess.Popen(TRIAL + [f"--threads={threads}", *extra], env=env, stdout=log,
                                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        peaks = []
        for process in processes:
            _, status, usage = os.wait4(process.pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"rank exited with {os.waitstatus_to_exitcode(status)}: "
                                   f"{logs[processes.index(process)].read_text()[-2000:]}")
            peaks.append(usage.ru_maxrss / 1024)
        text = logs[0].read_text()
    steps, seconds, speed = EPOCH.search(text).groups()  # type: ignore[union-attr]
    checkpoints = [float(m.group(2)) for m in CHECKPOINT.finditer(text)]
    sizes = [int(m.group(3)) for m in CHECKPOINT.finditer(text)]
    return {"images_per_s": float(speed), "epoch_s": float(seconds), "peak_mib": peaks,
            "accuracy": float(ACCURACY.findall(text)[-1]), "checkpoint_s": checkpoints, "checkpoint_bytes": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the raw samples here")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as checkpoints:
        settings = {
            "1 process": (1, cpus, []),
            "2 processes": (2, max(1, cpus // 2), []),
            "1 process, checkpoint every epoch": (1, cpus, [f"--checkpoint-dir={checkpoints}/one"]),
        }
        samples: dict[str, list[dict[str, object]]] = {name: [] for name in settings}
        for repeat in range(args.repeats):
            for name, (world, threads, extra) in settings.items():
                extra = [e + f"-{repeat}" if e.startswith("--checkpoint-dir") else e for e in extra]
                samples[name].append(run_ranks(world, threads, extra))
    report(samples, cpus)
    if args.json:
        args.json.write_text(json.dumps(samples, indent=1) + "\n")


def report(samples: dict[str, list[dict[str, object]]], cpus: int) -> None:
    median = lambda name, key: statistics.median(float(s[key]) for s in samples[name])  # type: ignore[arg-type]  # noqa: E731
    base = median("1 process", "images_per_s")
    print(f"{cpus} CPUs; global batch 128; medians of {len(samples['1 process'])} interleaved runs")
    print("| setting | images/s (epoch 2) | ratio to 1 process | peak RSS per rank (MiB) | final val. accuracy |")
    print("|---|---|---|---|---|")
    for name in samples:
        peaks = [statistics.median(float(s["peak_mib"][r]) for s in samples[name])  # type: ignore[index]
                 for r in range(len(samples[name][0]["peak_mib"]))]  # type: ignore[arg-type]
        speed = median(name, "images_per_s")
        print(f"| {name} | {speed:.0f} | {speed / base:.2f} | {' / '.join(f'{p:.0f}' for p in peaks)} | "
              f"{median(name, 'accuracy'):.4f} |")
    writes = [t for s in samples["1 process, checkpoint every epoch"] for t in s["checkpoint_s"]]  # type: ignore[attr-defined]
    sizes = [b for s in samples["1 process, checkpoint every epoch"] for b in s["checkpoint_bytes"]]  # type: ignore[attr-defined]
    epoch = median("1 process, checkpoint every epoch", "epoch_s")
    print(f"checkpoint: median {statistics.median(writes) * 1000:.1f} ms to write {statistics.median(sizes) / 1024:.0f} "
          f"KiB, {statistics.median(writes) / epoch:.2%} of an epoch ({epoch:.1f} s)")


if __name__ == "__main__":
    main()
