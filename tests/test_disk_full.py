"""A full disk stops a run with one line and the resume command, and loses nothing: the run resumes once there is
space again. The disk is a real one: a size-limited tmpfs (mounting needs root or CAP_SYS_ADMIN; skipped with the
reason otherwise), filled by a trial, and /dev/full for the trial's own metrics and output.

Before: SQLite's "database or disk is full" was a traceback without a resume hint, a trial that could not write
its output was recorded as Failed, and `katib-nas trial` on /dev/full trained and then failed with a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import oneshot_digits_experiment
from .support.local_runner import HANG_GUARD_SECONDS, katib_nas, one_line, stub_experiment, trials

ARCHITECTURE = "in8x8x1-cls10-stem8/w8:c3@r"


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201 - a generator fixture
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        # Lazily: a process of the run that has just exited may still hold the mount for a moment.
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


FILE_COLLECTOR = {"collector": {"kind": "File"},
                  "source": {"fileSystemPath": {"path": "/var/log/katib/metrics.log", "kind": "File"}}}


@pytest.mark.parametrize("what, stub_args, changes", [
    ("trial output", [], {}),
    ("state file", ["--fill-at-end"], {}),
    ("metrics file", ["--metrics-file=/var/log/katib/metrics.log"], {"metricsCollectorSpec": FILE_COLLECTOR}),
])
def test_a_full_disk_stops_the_run_with_one_line_and_it_resumes_once_there_is_space(
        tmp_path: Path, small_disk: Path, what: str, stub_args: list[str], changes: dict) -> None:
    marker, filler = tmp_path / "fill-now", small_disk / "filler"
    experiment = stub_experiment(tmp_path, f"--fill={filler}", f"--fill-if-exists={marker}", *stub_args,
                                 max_trials=3, parallel=1, max_failed=1, changes=changes)
    workdir = small_disk / "run"
    first = katib_nas("run", experiment, "--workdir", workdir, "--max-trials", "1", "--no-report")
    assert first.returncode == 0, first.stderr
    [kept] = trials(workdir)
    marker.touch()
    full = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--max-trials", "3", "--no-report")
    assert full.returncode == 1
    line = full.stderr.strip().splitlines()[-1]
    assert line.startswith(f"katib-nas run: error: no space left to write {small_disk}/"), full.stderr
    assert line.endswith(f"running trials were stopped and will run again. Free space, then continue with: "
                         f"katib-nas run {experiment} --workdir {workdir} --resume")
    assert "Traceback" not in full.stderr
    marker.unlink()
    filler.unlink()
    resumed = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--max-trials", "3", "--no-report")
    assert resumed.returncode == 0, resumed.stderr
    rows = trials(workdir)
    assert [row[1] for row in rows] == ["Succeeded"] * 3
    assert rows[0] == kept  # the trial finished before the disk filled is kept as it was
    assert [row[2] for row in rows] == [1, 2, 1]  # the one running when the disk filled ran again


def trial_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "katib_nas.cli", "trial", f"--architecture={ARCHITECTURE}", "--dataset=digits",
            "--steps=2", *args]


def test_trial_metrics_file_on_dev_full_is_one_line_before_training() -> None:
    done = subprocess.run(trial_command("--metrics-file=/dev/full"), capture_output=True, text=True,
                          timeout=HANG_GUARD_SECONDS)
    assert done.returncode == 2
    assert one_line(done.stderr) == ("katib-nas trial: error: cannot write metrics file /dev/full: No space left on "
                                     "device")


def test_trial_output_on_a_full_disk_is_one_line() -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(trial_command(), stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=HANG_GUARD_SECONDS)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("katib-nas trial: error: no space left on device writing "
                                                    "<stdout>")


def fill(disk: Path) -> None:
    """Write into `disk` until it has no space left (unbuffered: nothing is left to flush on close)."""
    with open(disk / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
        except OSError:
            pass


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_leaves_no_temporary_file(small_disk: Path) -> None:
    checkpoints = small_disk / "checkpoints"
    checkpoints.mkdir()
    fill(small_disk)
    command = [sys.executable, "-m", "katib_nas.cli", "trial", f"--architecture={ARCHITECTURE}", "--dataset=digits",
               "--epochs=1", f"--checkpoint-dir={checkpoints}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"katib-nas trial: error: cannot write checkpoint "
                                                    f"{checkpoints}/checkpoint.pt: No space left on device")
    assert list(checkpoints.iterdir()) == []


def test_an_export_on_a_full_disk_still_reports_the_metrics_and_keeps_the_earlier_set(small_disk: Path) -> None:
    export = small_disk / "export"
    export.mkdir()
    earlier = {name: f"the earlier run's {name}".encode() for name in ("model.torchscript.pt", "model.json")}
    for name, content in earlier.items():
        (export / name).write_bytes(content)
    fill(small_disk)
    done = subprocess.run(trial_command(f"--export-dir={export}"), capture_output=True, text=True,
                          timeout=HANG_GUARD_SECONDS)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"katib-nas trial: error: cannot export the model to {export}: "
                                                    f"No space left on device; {export} is left as it was")
    final = done.stdout.split("Validation-Accuracy=")[-1]  # the final block: its metrics reach the collector
    assert "params=" in final and "latency-ms=" in final
    assert {path.name: path.read_bytes() for path in export.iterdir()} == earlier


def test_a_latency_table_that_cannot_be_written_is_one_line_and_keeps_the_earlier_table(tmp_path: Path,
                                                                                         small_disk: Path) -> None:
    table = small_disk / "table.json"
    table.write_text("the earlier table")
    fill(small_disk)
    command = [sys.executable, "-m", "katib_nas.cli", "profile", str(oneshot_digits_experiment(tmp_path / "e.yaml")),
               f"--out={table}", "--repeats=1", "--warmup=1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (f"katib-nas profile: error: cannot write the latency table "
                                                    f"{table}: No space left on device")
    assert table.read_text() == "the earlier table"
    assert sorted(path.name for path in small_disk.iterdir()) == ["filler", "table.json"]
