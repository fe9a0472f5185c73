"""Per-epoch checkpoints: a trial killed mid-run and started again reaches the uninterrupted run's metrics.

Kill and resume run real `katib-nas trial` subprocesses on digits: SIGKILL once the second epoch is
reported (its checkpoint is written before the report), then the same command again, which reports the
restored epochs again, as first written, before it trains on. With the same seed and
thread count the resumed run repeats the uninterrupted one exactly; RESUME_TOLERANCE is what the test allows.
A checkpoint of another network, of other training settings, or one that cannot be read is refused with one
line and exit 2 before any training, and stays as it was.
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from katib_nas.trial_image.checkpoint import CHECKPOINT_FILE

from .support.distributed_trial import errors_of, final, under_torchrun
from .support.trial_cli import Run, katib_nas, run_trial

ARCH = "in8x8x1-cls10-stem8/w16:c3+s3/w24s2:c3@0"
TRAIN = ["--dataset", "digits", "--threads", "1", "--batch-size", "64", "--lr", "0.1", "--seed", "4", "--epochs", "4"]
#: Largest difference of the final metrics between a resumed and an uninterrupted run (the same seed).
RESUME_TOLERANCE = 1e-6
METRICS = ("Validation-Accuracy", "Validation-Loss", "Train-Loss", "Train-Accuracy")


def killed_after_epoch(checkpoints: Path, epoch: int) -> str:
    """Start the trial, SIGKILL it once it reported `epoch`; its stdout so far."""
    process = subprocess.Popen([*katib_nas(), "trial", "--architecture", ARCH, *TRAIN, "--checkpoint-dir",
                                str(checkpoints)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               stdin=subprocess.DEVNULL)
    seen, lines = 0, []
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            seen += "Train-Accuracy=" in line
            if seen == epoch:
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.kill()
        process.wait()
    return "".join(lines)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Run:
    done = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path_factory.mktemp("whole")))
    assert done.code == 0, done.stderr[-2000:]
    return done


def test_a_killed_trial_resumes_from_its_last_epoch_and_reaches_the_same_metrics(uninterrupted: Run,
                                                                                  tmp_path: Path) -> None:
    before = killed_after_epoch(tmp_path, 2)
    assert before.count("Train-Accuracy=") == 2 and "params=" not in before
    metrics_file = tmp_path / "metrics.log"
    resumed = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path), "--metrics-file",
                        str(metrics_file))
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert f"resuming from {tmp_path / CHECKPOINT_FILE} after epoch 2 (step" in resumed.stderr
    # epochs 1 and 2 again, timestamps and all (a restarted trial's metrics file starts empty), 3 and 4, the end
    assert resumed.stdout.startswith(before) and resumed.stdout.count("Train-Accuracy=") == 5
    steps = re.search(r"epoch 1: (\d+) steps in", uninterrupted.stderr)
    assert steps is not None and f"epoch 3: {steps.group(1)} steps in" in resumed.stderr  # not counted from step 0
    assert metrics_file.read_text() == resumed.stdout
    for name in METRICS:
        assert abs(final(resumed, name) - final(uninterrupted, name)) <= RESUME_TOLERANCE, name
    payload = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert payload["epoch"] == 4 and payload["identity"]["architecture"] == ARCH


def test_a_finished_run_started_again_trains_nothing_and_reports_the_same(uninterrupted: Run, tmp_path: Path) -> None:
    first = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path))
    again = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path))
    assert first.code == again.code == 0
    assert "after epoch 4" in again.stderr and again.stdout.count("Train-Accuracy=") == 5
    lines = first.stdout.splitlines(keepends=True)
    ends = [number for number, line in enumerate(lines) if "Train-Accuracy=" in line]  # each group's last line
    assert again.stdout.startswith("".join(lines[:ends[3] + 1]))  # the four epochs' groups, as first written
    assert final(again, "Validation-Accuracy") == final(uninterrupted, "Validation-Accuracy")


def test_two_processes_resume_a_one_process_checkpoint(uninterrupted: Run, tmp_path: Path) -> None:
    """Batches are global: a restarted job may come back with another number of processes."""
    killed_after_epoch(tmp_path, 2)
    resumed = under_torchrun("trial", "--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path))
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert "after epoch 2" in resumed.stderr
    assert abs(final(resumed, "Validation-Accuracy") - final(uninterrupted, "Validation-Accuracy")) <= 0.05


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("written")
    done = run_trial("--architecture", ARCH, *TRAIN[:-2], "--epochs", "1", "--checkpoint-dir", str(tmp_path))
    assert done.code == 0
    return tmp_path / CHECKPOINT_FILE


@pytest.mark.parametrize("change, message", [
    (["--architecture", "in8x8x1-cls10-stem8/w16:c3"], "was written for architecture "
                                                       "in8x8x1-cls10-stem8/w16:c3+s3/w24s2:c3@0, not "
                                                       "in8x8x1-cls10-stem8/w16:c3"),
    (["--epochs", "2"], "was written with --epochs 1, not 2"),
    (["--batch-size", "32"], "was written with --batch-size 64, not 32"),
    # other validation images, so another training set of the same size: it used to resume silently
    (["--split-seed", "7"], "was written with --split-seed None, not 7"),
])
def test_a_checkpoint_of_another_run_is_refused_and_kept(written: Path, change: list[str], message: str) -> None:
    before = digest(written)
    args = {"--architecture": ARCH, **dict(zip(TRAIN[::2], TRAIN[1::2])), "--epochs": "1"}
    args.update(dict(zip(change[::2], change[1::2])))
    done = run_trial(*[item for pair in args.items() for item in pair], "--checkpoint-dir", str(written.parent))
    assert done.code == 2
    [line] = errors_of(done)
    assert message in line and "it is left as it is" in line
    assert digest(written) == before and "Train-Loss" not in done.stdout


def test_a_checkpoint_of_another_format_is_refused_and_kept(written: Path, tmp_path: Path) -> None:
    """Same run, another layout of the file (a later release's): refused in one line, not resumed into a
    KeyError."""
    payload = torch.load(written, weights_only=True)
    payload["format"] = 2
    folder = tmp_path / "other-format"
    folder.mkdir()
    torch.save(payload, folder / CHECKPOINT_FILE)
    before = digest(folder / CHECKPOINT_FILE)
    done = run_trial("--architecture", ARCH, *TRAIN[:-2], "--epochs", "1", "--checkpoint-dir", str(folder))
    assert done.code == 2
    [line] = errors_of(done)
    assert "is not a katib-nas checkpoint (format 1)" in line and "it is left as it is" in line
    assert digest(folder / CHECKPOINT_FILE) == before and "Train-Loss" not in done.stdout


def test_an_unreadable_checkpoint_is_refused_and_kept(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    done = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path))
    assert done.code == 2
    [line] = errors_of(done)
    assert re.match(rf"katib-nas trial: error: cannot read checkpoint {re.escape(str(tmp_path))}/checkpoint.pt \(",
                    line)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == b"not a checkpoint"


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    done = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(blocker))
    assert done.code == 2 and errors_of(done) == [
        f"katib-nas trial: error: --checkpoint-dir {blocker} is a file, not a directory; give a directory for "
        "checkpoints"]
    assert blocker.read_text() == "mine"


def test_a_checkpoint_dir_holding_a_folder_where_the_checkpoint_goes_is_refused_before_training(
        tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT_FILE).mkdir()
    done = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path))
    assert done.code == 2 and "Train-Loss" not in done.stdout
    assert errors_of(done) == [f"katib-nas trial: error: --checkpoint-dir {tmp_path} holds a directory named "
                               f"{CHECKPOINT_FILE}, where a file of that name is written"]


def test_a_checkpoint_without_reports_still_resumes(uninterrupted: Run, tmp_path: Path) -> None:
    """Checkpoints written before they kept the epochs' reports have none: resumed, nothing is replayed."""
    first = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path))
    assert first.code == 0
    payload = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    del payload["reports"]
    torch.save(payload, tmp_path / CHECKPOINT_FILE)
    again = run_trial("--architecture", ARCH, *TRAIN, "--checkpoint-dir", str(tmp_path))
    assert again.code == 0, again.stderr[-2000:]
    assert again.stdout.count("Train-Accuracy=") == 1  # the final report only
    assert final(again, "Validation-Accuracy") == final(uninterrupted, "Validation-Accuracy")


def npz_folder(folder: Path, seed: int) -> Path:
    """A folder with one .npz of 300 random 8x8 grey images and labels 0..9 (the same count for every seed)."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    np.savez(folder / "images.npz", x=rng.integers(0, 256, (300, 8, 8), dtype=np.uint8), y=np.arange(300) % 10)
    return folder


def test_a_checkpoint_trained_on_another_data_dir_is_refused_and_kept(tmp_path: Path) -> None:
    """Before: the data's location was not part of the identity, so other data of the same size resumed it."""
    first, other = npz_folder(tmp_path / "first", 1), npz_folder(tmp_path / "other", 2)
    checkpoints = tmp_path / "checkpoints"
    train = ["--architecture", ARCH, "--dataset", "npz", "--threads", "1", "--batch-size", "64", "--epochs", "1",
             "--checkpoint-dir", str(checkpoints)]
    assert run_trial(*train, "--data-dir", str(first)).code == 0
    before = digest(checkpoints / CHECKPOINT_FILE)
    done = run_trial(*train, "--data-dir", str(other))
    assert done.code == 2
    [line] = errors_of(done)
    assert f"was written with --data-dir {first}, not {other}; it is left as it is" in line
    assert digest(checkpoints / CHECKPOINT_FILE) == before and "Train-Loss" not in done.stdout


def test_a_checkpoint_whose_data_folder_now_holds_more_images_is_refused_and_kept(tmp_path: Path) -> None:
    """The same --data-dir, its file replaced by a larger one: another training set, so no resume."""
    data = npz_folder(tmp_path / "data", 1)
    checkpoints = tmp_path / "checkpoints"
    train = ["--architecture", ARCH, "--dataset", "npz", "--data-dir", str(data), "--threads", "1",
             "--batch-size", "64", "--epochs", "1", "--checkpoint-dir", str(checkpoints)]
    assert run_trial(*train).code == 0
    before = digest(checkpoints / CHECKPOINT_FILE)
    rng = np.random.default_rng(2)
    np.savez(data / "images.npz", x=rng.integers(0, 256, (400, 8, 8), dtype=np.uint8), y=np.arange(400) % 10)
    done = run_trial(*train)
    assert done.code == 2
    [line] = errors_of(done)
    assert "was written with training images 270, not 360; it is left as it is" in line
    assert digest(checkpoints / CHECKPOINT_FILE) == before and "Train-Loss" not in done.stdout
