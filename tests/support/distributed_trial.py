"""`katib-nas` under torchrun: several trial processes on loopback, and reading what rank 0 printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .trial_cli import Run, katib_nas


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]


def run(argv: list[str], env: dict[str, str] | None = None) -> Run:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    return Run(done.returncode, done.stdout, done.stderr)


def under_torchrun(*args: str, processes: int = 2) -> Run:
    return run(torchrun() + ["--standalone", f"--nproc-per-node={processes}", "--no-python", *katib_nas(), *args])


def errors_of(run: Run) -> list[str]:
    """Lines of ours on stderr (not torch's or torchrun's logging)."""
    return [line for line in run.stderr.splitlines() if line.startswith("katib-nas")]


def final(run: Run, name: str) -> float:
    return float(re.findall(rf" {name}=(\S+)$", run.stdout, re.M)[-1])
