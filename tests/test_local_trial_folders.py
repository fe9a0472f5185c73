"""Trials on one machine share a file system; on a cluster each trial's pod has its own. A fixed --export-dir or
--checkpoint-dir would make every trial replace the last export (whatever its score) and refuse the checkpoint of
the trial before it, so the runner gives each trial a folder of its own under the workdir and says where."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from katib_nas.contract.errors import InvalidInput
from katib_nas.runner.trial_template import own_folders

from .support.local_runner import DIGITS, katib_nas, trials


def assignments(workdir: Path) -> dict[str, str]:
    with sqlite3.connect(workdir / "state.sqlite") as db:
        return dict(db.execute("SELECT trial, value FROM assignments WHERE name = 'architecture'").fetchall())


def test_each_local_trial_exports_and_checkpoints_into_a_folder_of_its_own(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    done = katib_nas("run", DIGITS, "--workdir", workdir, "--max-trials", "2", "--parallel", "1",
                     "--trial-arg=--export-dir=model", "--trial-arg=--checkpoint-dir=/tmp/checkpoint", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [row[1] for row in trials(workdir)] == ["Succeeded", "Succeeded"]  # the second took the first's before
    where = workdir / "trials" / "<trial>" / "files"
    assert done.stderr.count("note: each trial writes its --export-dir model into ") == 1
    assert f"note: each trial writes its --checkpoint-dir /tmp/checkpoint into {where}/tmp/checkpoint: " in done.stderr
    assert not (tmp_path / "model").exists()
    for trial, architecture in assignments(workdir).items():
        files = workdir / "trials" / trial / "files"
        assert json.loads((files / "model" / "model.json").read_text())["architecture"] == architecture
        assert list((files / "tmp" / "checkpoint").iterdir())


def test_folders_that_name_the_trial_and_other_programs_flags_are_left_as_they_are(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trials" / "t-1"
    per_trial = ["katib-nas", "trial", "--export-dir=models/t-1", "--checkpoint-dir", "/ckpt/t-1"]
    assert own_folders(per_trial, "t-1", trial_dir) == (per_trial, ())
    theirs = ["python3", "train.py", "--checkpoint-dir=/pretrained"]
    assert own_folders(theirs, "t-1", trial_dir) == (theirs, ())
    moved, notes = own_folders(["katib-nas", "trial", "--tfevent-dir", "/logs", "--export-dir=out"], "t-1", trial_dir)
    own = trial_dir / "files"
    assert moved == ["katib-nas", "trial", "--tfevent-dir", str(own / "logs"), f"--export-dir={own / 'out'}"]
    assert notes == (("--tfevent-dir", "/logs", str(own / "logs")), ("--export-dir", "out", str(own / "out")))


def test_a_folder_that_would_leave_the_workdir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"--export-dir=../../../../elsewhere, as the trial's folder .* resolves to "
                                           r".*, outside"):
        own_folders(["katib-nas", "trial", "--export-dir=../../../../elsewhere"], "t-1", tmp_path / "trials" / "t-1")
