"""`katib-nas trial` refuses out-of-range numbers and unusable output paths before it trains: exit 2, one line.

Before: `--seed 2**70` and `--threads 1000000` ended in tracebacks, a width-999999 architecture was
built, and an `--export-dir` that is a file failed with a traceback after the whole training.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .support.trial_cli import FAST, run_trial

ARCH = "in8x8x1-cls10-stem4/w8:c3"
TRAINING_OUTPUT = ("Train-Loss", "Validation-Accuracy")


@pytest.mark.parametrize("args, message", [
    (["--seed", str(2**70)], f"argument --seed: {2**70} must be a whole number in [0, {2**32 - 1}]"),
    (["--seed", "١٢"], "argument --seed: '١٢' is not a whole number"),
    (["--threads", "1000000"], "argument --threads: 1000000 must be a whole number in [1, 1024]"),
    (["--batch-size", "1_000"], "argument --batch-size: '1_000' is not a whole number"),
    (["--epochs", str(10**20)], "argument --epochs: 100000000000000000000 must be a whole number in [1, 1000000]"),
    (["--lr", "inf"], "argument --lr: 'inf' is not a number"),
])
def test_out_of_range_flags_exit_2_with_one_line(args: list[str], message: str) -> None:
    run = run_trial("--architecture", ARCH, *FAST, *args)
    assert run.code == 2 and run.stdout == ""
    [line] = run.error_lines()
    assert message in line


@pytest.mark.parametrize("value", ["1000000", "0", "9" * 5000])
def test_omp_num_threads_is_held_to_the_same_bound(value: str) -> None:
    run = run_trial("--architecture", ARCH, "--dataset", "digits", env=dict(os.environ, OMP_NUM_THREADS=value))
    assert run.code == 2 and run.stdout == ""
    assert run.error_lines() == [f"katib-nas trial: error: OMP_NUM_THREADS={value} must be in [1, 1024] "
                                 "(or pass --threads)"]


def test_a_width_the_spec_does_not_allow_is_refused_before_building() -> None:
    run = run_trial("--architecture", "in8x8x1-cls10-stem4/w999999:c3", *FAST)
    assert run.code == 2 and run.stdout == ""
    assert run.error_lines() == ["katib-nas trial: error: stage 0: width 999999 must be in [1, 4096]"]


def test_export_dir_that_is_a_file_is_refused_before_training(tmp_path: Path) -> None:
    occupied = tmp_path / "export"
    occupied.write_text("keep me")
    run = run_trial("--architecture", ARCH, *FAST, "--export-dir", str(occupied))
    assert run.code == 2 and not any(name in run.stdout for name in TRAINING_OUTPUT)
    assert run.error_lines() == [f"katib-nas trial: error: --export-dir {occupied} is a file, not a directory; "
                                 "give a directory to export into"]
    assert occupied.read_text() == "keep me"


@pytest.mark.parametrize("make, message", [
    (lambda root: (root / "blocker").write_text("x") and root / "blocker" / "export", "cannot be created"),
    (lambda root: (root / "export" / "model.json").mkdir(parents=True) or root / "export",
     "holds a directory named model.json"),
    (lambda root: (root / "export" / "model.torchscript.pt").mkdir(parents=True) or root / "export",
     "holds a directory named model.torchscript.pt"),
    (lambda root: (root / "export" / "model.onnx").mkdir(parents=True) or root / "export",
     "holds a directory named model.onnx"),
])
def test_every_export_path_is_checked_before_training(tmp_path: Path, make, message: str) -> None:  # noqa: ANN001
    target = make(tmp_path)
    run = run_trial("--architecture", ARCH, *FAST, "--export-dir", str(target))
    assert run.code == 2 and not any(name in run.stdout for name in TRAINING_OUTPUT)
    [line] = run.error_lines()
    assert message in line


def test_metrics_file_under_a_file_is_refused_before_training(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    run = run_trial("--architecture", ARCH, *FAST, "--metrics-file", str(tmp_path / "blocker" / "metrics.txt"))
    assert run.code == 2 and not any(name in run.stdout for name in TRAINING_OUTPUT)
    [line] = run.error_lines()
    assert "cannot write metrics file" in line


def test_a_data_dir_for_bundled_digits_is_refused_before_training(tmp_path: Path) -> None:
    """Before: --dataset digits trained on scikit-learn's digits whatever --data-dir named."""
    run = run_trial("--architecture", ARCH, *FAST, "--data-dir", str(tmp_path))
    assert run.code == 2 and not any(name in run.stdout for name in TRAINING_OUTPUT)
    assert run.error_lines() == [f"katib-nas trial: error: --dataset digits takes no --data-dir (it reads "
                                 f"scikit-learn's bundled 8x8 digits); leave out --data-dir {tmp_path}"]
