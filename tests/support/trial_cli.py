"""`katib-nas trial` run as Katib runs it: the command, a subprocess of it and what it printed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from katib_nas.contract.metric_format import KATIB_DEFAULT_REGEX

FAST = ["--dataset", "digits", "--threads", "1", "--batch-size", "64"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def metrics(self, regex: str = KATIB_DEFAULT_REGEX) -> dict[str, str]:
        """Latest value of every metric, as Katib keeps it."""
        return {m.group(1): m.group(2) for m in re.finditer(regex, self.stdout)}

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if " INFO " not in line and " WARNING " not in line]


def katib_nas() -> list[str]:
    exe = Path(sys.executable).with_name("katib-nas")
    return [str(exe)] if exe.exists() else [shutil.which("katib-nas") or "katib-nas"]


def run_trial(*args: str, env: dict[str, str] | None = None) -> Run:
    completed = subprocess.run(katib_nas() + ["trial", *args], capture_output=True, text=True, timeout=600,
                               env=env)
    return Run(completed.returncode, completed.stdout, completed.stderr)
