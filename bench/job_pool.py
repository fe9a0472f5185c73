"""Subprocesses side by side, each writing one result file: the benchmarks' way of running networks in parallel
with one torch thread each."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def run_jobs(jobs: list[tuple[list[str], Path]], parallel: int) -> list[str]:
    """Run each (command, result file) with at most `parallel` at once; the jobs that failed, as
    'FILE (exit CODE)': a non-zero exit, or an exit without its result file."""
    pending = list(jobs)
    running: dict[Path, subprocess.Popen] = {}
    failed: list[str] = []
    while pending or running:
        while pending and len(running) < parallel:
            command, out = pending.pop(0)
            running[out] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        for out, process in list(running.items()):
            if process.poll() is not None:
                del running[out]
                if process.returncode or not out.is_file():
                    failed.append(f"{out.name} (exit {process.returncode})")
        time.sleep(2)
    return failed
