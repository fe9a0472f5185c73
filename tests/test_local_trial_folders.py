"""Trials on one machine share a file system; on a cluster each trial's pod has its own. A fixed --export-dir or
--checkpoint-dir would make every trial replace the last export (whatever its score) and refuse the checkpoint of
the trial before it, so the runner gives each trial a folder of its own under the workdir and says where."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from katib_nas.runner.trial_template import own_folders

from .support.local_runner import DIGITS, katib_nas, trials


def assignments(workdir: Path) -> dict[str, str]:
    with sqlite3.connect(workdir / "state.sqlite") as db:
        return dict(db.execute("SELECT trial, value FROM assignments WHERE name = 'architecture'").fetchall())


def test_each_local_trial_exports_and_checkpoints_into_a_folder_of_its_own(tmp_path: Path) -> None:
    workdir, checkpoint = tmp_path / "work", tmp_path / "checkpoint"
    done = katib_nas("run", DIGITS, "--workdir", workdir, "--max-trials", "2", "--parallel", "1",
                     "--trial-arg=--export-dir=model", f"--trial-arg=--checkpoint-dir={checkpoint}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [row[1] for row in trials(workdir)] == ["Succeeded", "Succeeded"]  # the second took the first's before
    where = workdir / "trials" / "<trial>" / "files"
    assert done.stderr.count("note: each trial writes its --export-dir model into ") == 1
    assert f"note: each trial writes its --checkpoint-dir {checkpoint} into {where}{checkpoint}: " in done.stderr
    assert not (tmp_path / "model").exists() and not checkpoint.exists()
    for trial, architecture in assignments(workdir).items():
        files = workdir / "trials" / trial / "files"
        assert json.loads((files / "model" / "model.json").read_text())["architecture"] == architecture
        assert list((files / checkpoint.relative_to("/")).iterdir())


def test_folders_that_name_the_trial_and_other_programs_flags_are_left_as_they_are(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trials" / "t-1"
    per_trial = ["katib-nas", "trial", "--export-dir=models/t-1", "--checkpoint-dir", "/ckpt/t-1/epochs"]
    assert own_folders(per_trial, "t-1", trial_dir) == (per_trial, ())
    theirs = ["python3", "train.py", "--checkpoint-dir=/pretrained"]
    assert own_folders(theirs, "t-1", trial_dir) == (theirs, ())
    switched_off = ["katib-nas", "trial", "--checkpoint-dir=", "--tfevent-dir="]  # an empty folder: none
    assert own_folders(switched_off, "t-1", trial_dir) == (switched_off, ())
    moved, notes = own_folders(["katib-nas", "trial", "--tfevent-dir", "/logs", "--export-dir=out"], "t-1", trial_dir)
    own = trial_dir / "files"
    assert moved == ["katib-nas", "trial", "--tfevent-dir", str(own / "logs"), f"--export-dir={own / 'out'}"]
    assert notes == (("--tfevent-dir", "/logs", str(own / "logs")), ("--export-dir", "out", str(own / "out")))


@pytest.mark.parametrize("program, value, folder", [
    ("katib-nas", "../../../../elsewhere", "elsewhere"),  # never beside the workdir's state, nor outside it
    ("katib-nas", "./out/../model", "out/model"),
    ("/usr/local/bin/katib-nas", "/tmp/ck", "tmp/ck"),
    ("katib-nas", "/ck/t-1-checkpoints", "ck/t-1-checkpoints"),  # the name of another trial, not this one's
])
def test_the_trials_folder_always_lies_inside_its_own(tmp_path: Path, program: str, value: str, folder: str) -> None:
    trial_dir = tmp_path / "trials" / "t-1"
    moved, notes = own_folders([program, "trial", f"--export-dir={value}"], "t-1", trial_dir)
    assert moved == [program, "trial", f"--export-dir={trial_dir / 'files' / folder}"]
    assert notes == (("--export-dir", value, str(trial_dir / "files" / folder)),)


def test_an_abbreviated_folder_flag_is_refused_by_the_trial() -> None:
    """The runner finds the flags by their names, so the trial takes them only as written."""
    done = katib_nas("trial", "--architecture=in8x8x1-cls10-stem8/w8:c3", "--dataset=digits", "--export=model")
    assert done.returncode == 2 and "unrecognized arguments: --export=model" in done.stderr
