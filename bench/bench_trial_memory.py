"""Peak resident memory and CPU time of a trial and of a one-shot search, against importing torch, in the same run.

Each command runs as its own process (as in a trial pod, whose memory limit applies to it), started as the
project starts it: `python -m katib_nas.cli ...`, which tunes glibc's malloc for training processes
(trial_image/allocator.py). Its peak resident set comes from the kernel's accounting of that child (wait4's
ru_maxrss) and its CPU time beside it. Baseline: a process that only imports torch. The workloads are the
ones a new user tries first: `katib-nas trial` of a small MBConv network and `katib-nas proxyless-search` of
the one-shot example's supernet, each on 2,000 Fashion-MNIST training images, one thread, every other flag
at its default, and the first trial of `make demo` (envelope cells, 8,000 images, 2 threads). Allocators: the
project's default (glibc, tuned), glibc as it comes (the tuning switched off), and tcmalloc when installed
(Debian's libtcmalloc-minimal4; LD_PRELOAD keeps the process from tuning glibc); on request
(`--allocators`) the earlier tuning with a 1 MiB mmap threshold. With --baseline-python (another checkout's
interpreter, e.g. the previous release's venv) the same commands also run with it, interleaved, and the table
gives this code's peak and CPU time as ratios to it.

    .venv/bin/python bench/bench_trial_memory.py [--repeats 3] [--baseline-python OTHER/.venv/bin/python]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from katib_nas.trial_image.allocator import HUGE_PAGE_BYTES, TUNABLES

MBCONV = "in28x28x1-cls10-stem16/w16:mb3e3@r:mb5e6@r/w32s2:mb3e6@r:mb7e3@r/w64s2:mb5e3@r:mb3e6@r"
OPS = "mb3e3_mb3e6_mb5e3_mb5e6_mb7e3_mb7e6_zero@r"
SUPERNET = f"in28x28x1-cls10-stem16/w16:{OPS}:{OPS}/w32s2:{OPS}:{OPS}/w64s2:{OPS}:{OPS}"
#: The start network of `make demo` (envelope cells: six 16-channel branches, 1.6 MB buffers at batch 128).
ENVELOPE = "in28x28x1-cls10-stem16/w16:c1+c3+c5+s3+s5+s7/w32s2:c1+c3+c5+s3+s5+s7/w64s2:c1+c3+c5+s3+s5+s7@0"
WORKLOADS = {
    "import torch (baseline)": ["-c", "import torch"],
    "katib-nas trial, MBConv network, 2,000 images": [
        "-m", "katib_nas.cli", "trial", f"--architecture={MBCONV}", "--max-train-samples=2000", "--epochs=1",
        "--threads=1"],
    "katib-nas trial, the demo's start network, 8,000 images, 2 threads": [
        "-m", "katib_nas.cli", "trial", f"--architecture={ENVELOPE}", "--max-train-samples=8000", "--epochs=1",
        "--branch-stats", "--threads=2"],
    "katib-nas proxyless-search, example supernet, 2,000 images": [
        "-m", "katib_nas.cli", "proxyless-search", f"--architecture={SUPERNET}", "--search=epochs-2_warmup-1_loss-none",
        "--max-train-samples=2000", "--threads=1"],
}
TCMALLOC = Path("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
#: The peak a trial of the workloads must stay under with the project's defaults.
TARGET_MIB = 600
#: Environment of each allocator: the project's default, glibc untuned (a malloc tunable of glibc's own
#: default keeps the process from adding its tuning), tcmalloc preloaded.
ALLOCATORS: dict[str, dict[str, str]] = {
    "default": {},
    "glibc untuned": {"GLIBC_TUNABLES": "glibc.malloc.check=0"},
    "glibc, 1 MiB threshold": {"GLIBC_TUNABLES": TUNABLES.replace(str(HUGE_PAGE_BYTES), str(2**20))},
    "tcmalloc": {"LD_PRELOAD": str(TCMALLOC)},
}


def run(command: list[str], environ: dict[str, str]) -> tuple[float, float, float]:
    """(peak resident MiB, CPU seconds, wall seconds) of one process."""
    started = time.monotonic()
    clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**clean, **environ})
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command[:5]} exited with {os.waitstatus_to_exitcode(status)}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each command (median)")
    parser.add_argument("--baseline-python", type=Path, help="an interpreter with another checkout installed")
    parser.add_argument("--allocators", nargs="+", choices=tuple(ALLOCATORS),
                        default=["default", "glibc untuned"] + (["tcmalloc"] if TCMALLOC.is_file() else []))
    args = parser.parse_args()
    pythons = {"this": sys.executable, **({"baseline": str(args.baseline_python)} if args.baseline_python else {})}
    samples: dict[tuple[str, str, str], list[tuple[float, float, float]]] = {}
    for _ in range(args.repeats):
        for allocator in args.allocators:
            for name, workload in WORKLOADS.items():
                for which, python in pythons.items():
                    key = (name, allocator, which)
                    samples.setdefault(key, []).append(run([python, *workload], ALLOCATORS[allocator]))
    report(samples, args.allocators, "baseline" in pythons)


def report(samples: dict[tuple[str, str, str], list[tuple[float, float, float]]], allocators: list[str],
           compared: bool) -> None:
    def median(key: tuple[str, str, str], index: int) -> float:
        return statistics.median(run[index] for run in samples[key])

    torch_peak = median(("import torch (baseline)", "default", "this"), 0)
    header = "| command | allocator | peak RSS MiB | x import torch | CPU s | wall s |"
    header += " peak / baseline | CPU / baseline |" if compared else ""
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in WORKLOADS:
        for allocator in allocators:
            key = (name, allocator, "this")
            peak, cpu = median(key, 0), median(key, 1)
            row = f"| {name} | {allocator} | {peak:.0f} | {peak / torch_peak:.2f} | {cpu:.1f} | {median(key, 2):.1f} |"
            if compared:
                base = (name, allocator, "baseline")
                row += f" {peak / median(base, 0):.2f} ({median(base, 0):.0f}) | {cpu / median(base, 1):.2f} " \
                       f"({median(base, 1):.1f}) |"
            print(row)
    for name in list(WORKLOADS)[1:]:
        peak = median((name, "default", "this"), 0)
        print(f"{name}: {peak:.0f} MiB with the project's defaults, target under {TARGET_MIB}: "
              f"{'met' if peak < TARGET_MIB else 'MISSED'}")


if __name__ == "__main__":
    main()
