"""Peak resident memory of a trial and of a one-shot search, against importing torch, in the same run.

Each command runs as its own process (as in a trial pod, whose memory limit applies to it); its peak
resident set comes from the kernel's accounting of that child (wait4's ru_maxrss) and its CPU time beside
it. Baseline: a process that only imports torch. The workloads are the ones a new user tries first:
`katib-nas trial` of a small MBConv network and `katib-nas proxyless-search` of the one-shot example's
supernet, each on 2,000 Fashion-MNIST training images, one thread. Each runs with glibc's malloc and, when
the library is installed (Debian's libtcmalloc-minimal4, which the trial images preload), with tcmalloc.

    .venv/bin/python bench/bench_trial_memory.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MBCONV = "in28x28x1-cls10-stem16/w16:mb3e3@r:mb5e6@r/w32s2:mb3e6@r:mb7e3@r/w64s2:mb5e3@r:mb3e6@r"
OPS = "mb3e3_mb3e6_mb5e3_mb5e6_mb7e3_mb7e6_zero@r"
SUPERNET = f"in28x28x1-cls10-stem16/w16:{OPS}:{OPS}/w32s2:{OPS}:{OPS}/w64s2:{OPS}:{OPS}"
KATIB_NAS = [sys.executable, "-m", "katib_nas.cli"]
COMMANDS = {
    "import torch (baseline)": [sys.executable, "-c", "import torch"],
    "katib-nas trial, MBConv network, 2,000 images": KATIB_NAS + [
        "trial", f"--architecture={MBCONV}", "--max-train-samples=2000", "--epochs=1", "--threads=1"],
    "katib-nas proxyless-search, example supernet, 2,000 images": KATIB_NAS + [
        "proxyless-search", f"--architecture={SUPERNET}", "--search=epochs-2_warmup-1_loss-none",
        "--max-train-samples=2000", "--threads=1"],
}


TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")


def run(command: list[str], preload: Path | None = None) -> tuple[float, float, float]:
    """(peak resident MiB, CPU seconds, wall seconds) of one process."""
    started = time.monotonic()
    env = {**os.environ, "LD_PRELOAD": str(preload)} if preload else None
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:4]} exited with {os.waitstatus_to_exitcode(status)}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each command (median)")
    args = parser.parse_args()
    allocators = {"glibc": None, "tcmalloc": TCMALLOC} if TCMALLOC.is_file() else {"glibc": None}
    samples: dict[str, list[tuple[float, float, float]]] = {}
    for _ in range(args.repeats):
        for allocator, preload in allocators.items():
            for name, command in COMMANDS.items():
                samples.setdefault(f"{name} [{allocator}]", []).append(run(command, preload))
    baseline = statistics.median(peak for peak, _, _ in samples["import torch (baseline) [glibc]"])
    print("| command | peak RSS MiB (median) | ratio to import torch | CPU s | wall s |")
    print("|---|---|---|---|---|")
    for name, runs in samples.items():
        peak = statistics.median(r[0] for r in runs)
        print(f"| {name} | {peak:.0f} | {peak / baseline:.2f} | {statistics.median(r[1] for r in runs):.1f} "
              f"| {statistics.median(r[2] for r in runs):.1f} |")


if __name__ == "__main__":
    main()
