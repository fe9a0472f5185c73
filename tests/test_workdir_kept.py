"""Nothing a user keeps in a workdir is lost: their runs, a running demo, a damaged state file, a read-only run.

Each case was a loss or a traceback before: `katib-nas demo --workdir` deleted any run it found (a user's
experiment, a demo still running), and replacing its own earlier run it removed the whole trials/ and
report/ folders and overwrote an edited experiment.yaml; an empty state file was taken as no run and a
damaged one was a traceback; a resume after the start directory was deleted failed every trial and reported
the run finished; `katib-nas report` called an interrupted run Running, and could not read a workdir it
could not write.
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from katib_nas.runner.demo import demo_document, write_demo_experiment
from katib_nas.runner.store import Store
from katib_nas.trial_image.data import FASHION_MNIST_DIR

from .support.local_runner import (
    HANG_GUARD_SECONDS,
    ignore_sigint,
    katib_nas,
    one_line,
    slow_running_trial,
    stub_experiment,
    trials,
    trials_so_far,
    wait_for,
)

#: The dataset `katib-nas demo` runs on here: Fashion-MNIST when its Debian package is installed, else digits.
DEMO_DATASET = "fashion-mnist" if (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file() else "digits"


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def finished_run(tmp_path: Path, max_trials: int = 2) -> tuple[Path, Path]:
    """A workdir holding a finished `katib-nas run` of the stub experiment, and the experiment file."""
    experiment = stub_experiment(tmp_path, max_trials=max_trials, parallel=1, max_failed=1)
    workdir = tmp_path / "run"
    done = katib_nas("run", experiment, "--workdir", workdir, "--no-report")
    assert done.returncode == 0, done.stderr
    return workdir, experiment


def test_demo_leaves_a_users_run_as_it_is(tmp_path: Path) -> None:
    workdir, experiment = finished_run(tmp_path)
    (workdir / "notes.txt").write_text("mine")
    before = snapshot(workdir)
    for args in (["demo", "--workdir", workdir], ["demo", "--workdir", workdir, "--resume"]):
        refused = katib_nas(*args)
        assert refused.returncode == 2
        line = one_line(refused.stderr)
        assert f"{workdir} holds the run of experiment 'nas-random-digits' (2 trials), which is not a demo run" \
               in line
        assert f"continue it with: katib-nas run {experiment} --workdir {workdir} --resume" in line
        assert "remove the folder yourself" in line and "another --workdir" in line
        assert snapshot(workdir) == before


def test_demo_does_not_overwrite_an_experiment_file_of_the_users(tmp_path: Path) -> None:
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "experiment.yaml").write_text("my own experiment\n")
    refused = katib_nas("demo", "--workdir", workdir)
    assert refused.returncode == 2
    assert f"{workdir / 'experiment.yaml'} is not the demo's experiment" in one_line(refused.stderr)
    assert (workdir / "experiment.yaml").read_text() == "my own experiment\n"


def demo_trial_running(workdir: Path) -> bool:
    return any(row[1] == "Running" for row in trials_so_far(workdir))


def test_a_running_demo_survives_a_second_demo_and_an_idle_one_is_replaced(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    first = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "demo", "--workdir", str(workdir)],
                             stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    try:
        wait_for(lambda: demo_trial_running(workdir))
        running = trials(workdir)
        second = katib_nas("demo", "--workdir", workdir)
        assert second.returncode == 2
        line = one_line(second.stderr)
        assert f"{workdir} holds the run of experiment 'demo-envelopenet-{DEMO_DATASET}' (" in line
        assert f"in use by a running katib-nas (pid {first.pid})" in line
        assert first.poll() is None and trials(workdir)[:len(running)] == running
    finally:
        first.send_signal(signal.SIGINT)
        stderr = first.communicate(timeout=HANG_GUARD_SECONDS)[1]
    assert first.returncode == 130, stderr
    assert f"katib-nas demo --workdir {workdir} --resume" in stderr
    interrupted = {row[0] for row in trials(workdir)}
    # Now nothing uses it: a new demo replaces the earlier demo run (stopped again as soon as it runs a trial).
    third = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "demo", "--workdir", str(workdir)],
                             stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    try:
        wait_for(lambda: demo_trial_running(workdir) and not {r[0] for r in trials(workdir)} & interrupted)
    finally:
        third.send_signal(signal.SIGINT)
        stderr = third.communicate(timeout=HANG_GUARD_SECONDS)[1]
    assert f"replacing the earlier demo run in {workdir}" in stderr


def test_an_idle_demo_run_is_recognised_as_a_replaceable_demo(tmp_path: Path) -> None:
    from katib_nas.runner.workdir_run import read_run

    workdir = tmp_path / "demo"
    path = write_demo_experiment(workdir, False)
    store = Store.open(workdir)
    store.create_experiment("demo-envelopenet-digits", demo_document(False), str(path), {}, [], str(tmp_path))
    store.close()
    run = read_run(workdir)
    assert run is not None and run.is_demo and run.in_use_by is None and run.interrupted
    assert run.resume_command() == f"katib-nas demo --workdir {workdir} --resume"


def idle_demo_run(workdir: Path, trial: str = "") -> Path:
    """A workdir holding a demo run that no runner uses (with `trial`: one trial, its log and a report); its
    experiment file."""
    fashion = DEMO_DATASET == "fashion-mnist"
    path = write_demo_experiment(workdir, fashion, io.StringIO())
    store = Store.open(workdir)
    document = demo_document(fashion)
    store.create_experiment(document["metadata"]["name"], document, str(path), {}, [], str(workdir.parent))
    if trial:
        store.add_trials([(trial, {"architecture": "x"}, {})], [])
        (workdir / "trials" / trial).mkdir(parents=True)
        (workdir / "trials" / trial / "output.log").write_text("the earlier demo's trial\n")
        (workdir / "report" / ".report-killed").mkdir(parents=True)
        (workdir / "report" / "summary.md").write_text("the earlier demo's report\n")
    store.close()
    return path


def test_a_replaced_demo_run_takes_only_its_own_files_from_the_trials_and_report_folders(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    earlier = f"demo-envelopenet-{DEMO_DATASET}-earlier1"
    idle_demo_run(workdir, earlier)
    mine = {workdir / "report" / "my-notes.md": "mine", workdir / "trials" / "my-list.txt": "mine",
            workdir / "trials" / "kept" / "model.pt": "mine"}
    for path, text in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    demo = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "demo", "--workdir", str(workdir)],
                            stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    try:
        wait_for(lambda: demo_trial_running(workdir))
    finally:
        demo.send_signal(signal.SIGINT)
        stderr = demo.communicate(timeout=HANG_GUARD_SECONDS)[1]
    assert f"replacing the earlier demo run in {workdir}" in stderr
    assert earlier not in {row[0] for row in trials(workdir)}
    assert not (workdir / "trials" / earlier).exists()
    assert not (workdir / "report" / "summary.md").exists() and not (workdir / "report" / ".report-killed").exists()
    assert {path: path.read_text() for path in mine if path.is_file()} == mine


@pytest.mark.parametrize("resume", [False, True], ids=["replace", "resume"])
def test_an_edited_experiment_file_beside_a_demo_run_is_left_as_it_is(tmp_path: Path, resume: bool) -> None:
    workdir = tmp_path / "demo"
    path = idle_demo_run(workdir)
    path.write_text(path.read_text().replace("maxTrialCount: 4", "maxTrialCount: 40") + "# mine\n")
    before = snapshot(workdir)
    refused = katib_nas("demo", "--workdir", workdir, *(["--resume"] if resume else []))
    assert refused.returncode == 2
    assert f"{path} is not the demo's experiment and the demo would overwrite it; it is left as it is" \
           in one_line(refused.stderr)
    assert snapshot(workdir) == before


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[:8192])
    else:  # corrupt: the pages after the header overwritten
        path.write_bytes(data[:100] + bytes(range(256)) * ((len(data) - 100) // 256))


@pytest.mark.parametrize("how, says", [("empty", "is empty"), ("truncated", "is damaged (database disk image is "
                                                                           "malformed)"),
                                       ("corrupt", "is damaged (")])
def test_a_damaged_state_file_is_one_line_and_left_as_it_was(tmp_path: Path, how: str, says: str) -> None:
    workdir, experiment = finished_run(tmp_path)
    state = workdir / "state.sqlite"
    damage(state, how)
    before = state.read_bytes()
    for args in (["run", experiment, "--workdir", workdir, "--resume"], ["run", experiment, "--workdir", workdir],
                 ["report", workdir], ["demo", "--workdir", workdir]):
        result = katib_nas(*args)
        assert result.returncode == 2, (args, result.stderr)
        line = one_line(result.stderr)
        assert f"{state} {says}" in line, line
        assert "left as it is" in line and "restore it from a backup" in line
        assert state.read_bytes() == before


def test_resume_after_the_start_directory_was_removed_stops_with_one_line(tmp_path: Path) -> None:
    start = tmp_path / "start"
    start.mkdir()
    experiment = stub_experiment(tmp_path, max_trials=4, parallel=1, max_failed=1)
    workdir = tmp_path / "run"
    first = subprocess.run([sys.executable, "-m", "katib_nas.cli", "run", str(experiment), "--workdir", str(workdir),
                            "--max-trials", "2", "--no-report"], cwd=start, capture_output=True, text=True,
                           timeout=HANG_GUARD_SECONDS)
    assert first.returncode == 0, first.stderr
    start.rmdir()
    resumed = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--max-trials", "4", cwd=tmp_path)
    assert resumed.returncode == 2
    assert one_line(resumed.stderr) == (
        f"katib-nas run: error: trials run in {start}, the directory the run was started from, which no longer "
        f"exists; recreate it (mkdir -p {start}) and continue with: katib-nas run {experiment} --workdir {workdir} "
        "--resume")
    assert [row[1] for row in trials(workdir)] == ["Succeeded"] * 2
    start.mkdir()
    again = katib_nas("run", experiment, "--workdir", workdir, "--resume", "--max-trials", "4", "--no-report",
                      cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [row[1] for row in trials(workdir)] == ["Succeeded"] * 4


def test_report_calls_an_interrupted_run_resumable_with_its_command(tmp_path: Path) -> None:
    workdir, marker = tmp_path / "run", tmp_path / "slow"
    marker.touch()
    experiment = stub_experiment(tmp_path, f"--slow-if-exists={marker}", max_trials=2, parallel=1, max_failed=1)
    runner = subprocess.Popen([sys.executable, "-m", "katib_nas.cli", "run", str(experiment), "--workdir",
                               str(workdir)], stderr=subprocess.PIPE, text=True)
    wait_for(lambda: slow_running_trial(workdir) is not None)
    live = katib_nas("report", workdir)
    assert live.returncode == 0 and "interrupted" not in live.stdout
    assert "Status: **Running**" in (workdir / "report" / "summary.md").read_text()
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=HANG_GUARD_SECONDS) == 130
    report = katib_nas("report", workdir)
    assert report.returncode == 0, report.stderr
    command = f"katib-nas run {experiment} --workdir {workdir} --resume"
    assert f"experiment nas-random-digits is interrupted; resume it with: {command}" in report.stdout
    assert f"Status: **Interrupted** (resumable: `{command}`)" in (workdir / "report" / "summary.md").read_text()


def as_reader(*args: str | Path) -> list[str]:
    """A katib-nas command run as a user who can only read what file permissions let them (root included:
    without CAP_DAC_OVERRIDE, root's access follows the permission bits of what it owns)."""
    command = [sys.executable, "-m", "katib_nas.cli", *map(str, args)]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]
    return command


def test_report_needs_only_read_access(tmp_path: Path) -> None:
    workdir, _ = finished_run(tmp_path)
    before = snapshot(workdir)
    for path in [workdir, *workdir.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        elsewhere = subprocess.run(as_reader("report", workdir, "--output", tmp_path / "report"),
                                   capture_output=True, text=True, timeout=HANG_GUARD_SECONDS)
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert (tmp_path / "report" / "summary.md").is_file() and (tmp_path / "report" / "trials.csv").is_file()
        inside = subprocess.run(as_reader("report", workdir), capture_output=True, text=True,
                                timeout=HANG_GUARD_SECONDS)
        assert inside.returncode == 2
        assert one_line(inside.stderr) == (f"katib-nas report: error: cannot write the report to {workdir / 'report'}: "
                                           f"Permission denied; write it elsewhere with: katib-nas report {workdir} --output DIR")
        assert snapshot(workdir) == before
    finally:
        for path in [workdir, *workdir.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    with sqlite3.connect(workdir / "state.sqlite") as db:
        assert db.execute("SELECT count(*) FROM trials").fetchone() == (2,)
