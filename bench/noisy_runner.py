"""`katib-nas run` on stub trials that print large and odd output, measured by the runner process itself.

Shared by bench_trial_output.py and bench_load.py. The trials run tests/data/stub_trial.py: their objective is a
fixed function of the architecture text, so a run can be checked trial by trial (nothing lost, nothing misread).
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STUB = REPO / "tests" / "data" / "stub_trial.py"
DIGITS = REPO / "tests" / "data" / "nas-random-digits.yaml"
#: Runs `katib-nas` in this process and prints the process's own CPU seconds, peak RSS (KiB) and wall seconds last. The peak is
#: VmHWM, this process's own: getrusage's ru_maxrss carries the parent's peak over the exec of a (v)forked child.
MEASURED_MAIN = """
import re, resource, sys, time
from katib_nas.cli.main import main
started = time.monotonic()
code = main(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_SELF)
with open("/proc/self/status") as status:
    peak = re.search(r"VmHWM:\\s+(\\d+) kB", status.read()).group(1)
print("runner-usage", usage.ru_utime + usage.ru_stime, peak, time.monotonic() - started, file=sys.stderr)
sys.exit(code)
"""


def experiment_file(folder: Path, trials: int, parallel: int, *stub_args: str) -> Path:
    """The digits nas-random Experiment with the stub as its trial, written into `folder`."""
    document = yaml.safe_load(DIGITS.read_text())
    spec = document["spec"]
    spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"] = trials, parallel, 1
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python3", str(STUB), "--architecture=${trialParameters.architecture}", *stub_args]
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def start(folder: Path, trials: int, parallel: int, *stub_args: str) -> subprocess.Popen:
    """`katib-nas run` (no report) in the background, its workdir `folder/run`; stderr piped."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", MEASURED_MAIN, "run",
                             str(experiment_file(folder, trials, parallel, *stub_args)), "--workdir",
                             str(folder / "run"), "--no-report"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@dataclass(frozen=True)
class RunnerResult:
    """A finished noisy run: the runner's exit code, own CPU time and peak RSS, and what its state holds."""

    exit_code: int
    cpu_s: float
    peak_rss_mib: float
    wall_s: float
    stderr: str
    trials: list[tuple[str, str, int, str]]  # name, condition, attempts, objective latest
    misread: list[str]  # trials whose recorded objective is not the one they printed
    output_mib: float


def finish(process: subprocess.Popen, folder: Path) -> RunnerResult:
    """Wait for the run, check every trial's objective against the stub's, remove the (large) trial outputs."""
    stderr = process.communicate()[1]
    usage = [line.split()[1:] for line in stderr.splitlines() if line.startswith("runner-usage")]
    cpu, peak, wall = (float(usage[-1][0]), int(usage[-1][1]) / 1024, float(usage[-1][2])) if usage else (0, 0, 0)
    workdir = folder / "run"
    with sqlite3.connect(workdir / "state.sqlite") as db:
        rows = db.execute("SELECT t.name, t.condition, t.attempts, COALESCE(o.latest, ''), a.value FROM trials t "
                          "LEFT JOIN observations o ON o.trial = t.name AND o.metric = 'Validation-Accuracy' "
                          "LEFT JOIN assignments a ON a.trial = t.name AND a.name = 'architecture' ORDER BY t.seq"
                          ).fetchall()
    misread = [name for name, _, _, latest, arch in rows if latest != expected_objective(arch)]
    logs = list(workdir.glob("trials/*/output.log"))
    output = sum(log.stat().st_size for log in logs)
    for log in logs:
        log.unlink()
    return RunnerResult(process.returncode, round(cpu, 2), round(peak, 1), round(wall, 1), stderr,
                        [row[:4] for row in rows], misread, round(output / 2**20, 1))


def expected_objective(architecture: str) -> str:
    """The Validation-Accuracy text tests/data/stub_trial.py prints for an architecture."""
    digest = int(hashlib.sha256(architecture.encode()).hexdigest()[:8], 16)
    return f"{0.5 + (digest % 4500) / 10000:.6g}"
