"""A report gives, under its best trial, the command that turns the best network into files: the trials' data and
split without their image cap, the final training's epochs, an export folder; run from anywhere, it writes the
model a user takes away."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits

from katib_nas.contract.trial_bounds import FINAL_EPOCHS
from katib_nas.runner.trial_template import data_flags

from .conftest import load_yaml
from .support.local_runner import DIGITS, katib_nas


def digits_npz_experiment(folder: Path) -> Path:
    """The digits experiment reading its images from images.npz beside it, named by a relative --data-dir."""
    digits = load_digits()
    np.savez(folder / "images.npz", x=(digits.images / 16.0).astype(np.float32), y=digits.target)
    document = load_yaml(DIGITS)
    document["spec"]["maxTrialCount"], document["spec"]["parallelTrialCount"] = 2, 1
    container = document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [arg for arg in container["command"] if not arg.startswith("--dataset")]
    container["command"] += ["--dataset=npz", "--data-dir", "images.npz"]
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_the_reports_command_trains_the_best_network_into_files_from_anywhere(tmp_path: Path) -> None:
    experiment = digits_npz_experiment(tmp_path)
    done = katib_nas("run", experiment, "--workdir", tmp_path / "work", "--trial-arg=--batch-size=32", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = tmp_path / "work" / "report"
    best = (report / "best_architecture.txt").read_text().strip()
    summary = (report / "summary.md").read_text()
    command = summary.split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert shlex.split(command) == ["katib-nas", "trial", f"--architecture={best}", "--dataset=npz",
                                    f"--data-dir={tmp_path / 'images.npz'}", f"--epochs={FINAL_EPOCHS}",
                                    "--export-dir=model"]
    assert f'<pre class="command">{command}</pre>' in (report / "report.html").read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    trained = subprocess.run([sys.executable, "-m", "katib_nas.cli", *shlex.split(command)[1:]], cwd=elsewhere,
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr
    model = json.loads((elsewhere / "model" / "model.json").read_text())
    assert model["architecture"] == best
    assert (elsewhere / "model" / "model.torchscript.pt").stat().st_size > 0


def job(*command: str) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "spec": {"template": {"spec": {"containers": [{"name": "main", "command": list(command[:2]),
                                                           "args": list(command[2:])}]}}}}


@pytest.mark.parametrize("trial_spec, overrides, cwd, flags", [
    (job("katib-nas", "trial", "--dataset=cifar10", "--data-dir", "/data/cifar10", "--epochs=1"), (), "",
     ("--dataset=cifar10", "--data-dir=/data/cifar10")),
    (job("katib-nas", "trial", "--dataset=npz", "--data-dir=images.npz"), (), "/home/me",
     ("--dataset=npz", "--data-dir=/home/me/images.npz")),
    (job("katib-nas", "trial", "--dataset=fashion-mnist"), ("--data-dir=/mnt/fashion", "--dataset=npz"), "",
     ("--dataset=npz", "--data-dir=/mnt/fashion")),
    (job("katib-nas", "trial", "--epochs=1"), (), "", ()),
    (job("katib-nas", "trial", "--data-dir"), (), "", ()),
    # split as Katib's `sh -c` wrapper splits the command, as the trials get it
    (job("katib-nas", "trial", '--data-dir="my data/x.npz"', "--dataset=npz"), (), "/home/me",
     ("--dataset=npz", "--data-dir=/home/me/my data/x.npz")),
    (job("katib-nas trial --dataset=npz --data-dir=/a --val-fraction=0.2 --split-seed 7"), (), "",
     ("--dataset=npz", "--data-dir=/a", "--val-fraction=0.2", "--split-seed=7")),
    # not readable: None, not "no flags" (which would train on the default dataset)
    ({"apiVersion": "v1", "kind": "Pod", "spec": {}}, (), "", None),
    ({**job("katib-nas", "trial", "--dataset=digits"), "kind": "CronJob"}, (), "", None),
    (job("katib-nas", "trial", "--data-dir='unclosed"), (), "", None),
])
def test_data_flags_are_read_from_the_trial_command(trial_spec: dict, overrides: tuple[str, ...], cwd: str,
                                                    flags: tuple[str, ...] | None) -> None:
    assert data_flags(trial_spec, "main", overrides, cwd) == flags


def test_without_the_data_flags_the_report_asks_for_them(tmp_path: Path) -> None:
    from katib_nas.contract.codec import decode, encode
    from katib_nas.runner.manifest import Objective
    from katib_nas.runner.report import ReportInput, train_command

    arch = decode("in8x8x1-cls10-stem8/w8:c3")
    spec = ReportInput("x", "nas-random", Objective("maximize", "Validation-Accuracy", (), None, ()), "Succeeded", "",
                       [], data_flags=None)
    caption, command = train_command(arch, spec)
    assert "could not be read for its data, so add the trials' --dataset and --data-dir" in caption
    assert command == f"katib-nas trial --architecture={encode(arch)} --epochs={FINAL_EPOCHS} --export-dir=model"
