"""`--tfevent-dir`: every report's numbers as TensorFlow event scalars, read back the way Katib's TensorFlowEvent
collector reads them (tensorboard's EventAccumulator, a tag taken for a metric when it starts with its name)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from katib_nas.contract.errors import InvalidInput
from katib_nas.trial_image.trial import TrialOptions, run_trial

from .conftest import REPO, load_yaml
from .support.trial_cli import FAST
from .support.trial_cli import run_trial as run_trial_command


def katib_tfevent_collect(directory: Path, metric_names: list[str]) -> dict[str, list[float]]:
    """pkg/metricscollector/v1beta1/tfevent-metricscollector/tfevent_loader.py for metric names without a
    folder part: every scalar of every event file whose tag starts with the metric's name."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.backend.event_processing.tag_types import SCALARS, TENSORS

    found: dict[str, list[float]] = {name: [] for name in metric_names}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        accumulator = EventAccumulator(str(path), size_guidance={SCALARS: 0, TENSORS: 0})
        accumulator.Reload()
        for tag in accumulator.Tags()[SCALARS]:
            for name in metric_names:
                if tag.startswith(name):
                    found[name] += [scalar.value for scalar in accumulator.Scalars(tag)]
    return found


def test_event_files_give_katib_every_epoch_of_the_examples_metrics(tmp_path: Path) -> None:
    objective = load_yaml(REPO / "examples" / "nas-random-fashion-mnist.yaml")["spec"]["objective"]
    names = [objective["objectiveMetricName"], *objective["additionalMetricNames"]]
    stdout = io.StringIO()
    options = TrialOptions(architecture="in8x8x1-cls10-stem8/w8:c3/w16s2:c3", dataset="digits", epochs=3, threads=1,
                           max_train_samples=300, batch_size=64, tfevent_dir=str(tmp_path / "tfevent"))
    assert run_trial(options, stdout) == 0
    collected = katib_tfevent_collect(tmp_path / "tfevent", names)
    per_epoch = {"Validation-Accuracy", "Validation-Loss"}  # epochs 1 and 2, then the final value; others final only
    assert {name: len(values) for name, values in collected.items()} == \
        {name: 3 if name in per_epoch else 1 for name in names}
    printed = dict(line.split(" ", 1)[1].split("=", 1) for line in stdout.getvalue().splitlines())
    for name in names:  # one value per name: no tag of another metric is taken for it
        assert collected[name][-1] == pytest.approx(float(printed[name]), rel=1e-5), name


def test_without_the_extra_the_flag_is_refused_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    for module in ("tensorboardX", "tensorboardX.event_file_writer"):  # as if the tfevent extra were not installed
        monkeypatch.setitem(sys.modules, module, None)
    options = TrialOptions(architecture="in8x8x1-cls10-stem8/w8:c3", dataset="digits",
                           tfevent_dir=str(tmp_path / "tfevent"))
    with pytest.raises(InvalidInput, match=r"--tfevent-dir needs the tfevent extra: pip install 'katib-nas\[tfevent\]'"):
        run_trial(options, io.StringIO())
    assert not (tmp_path / "tfevent").exists()


def test_a_trial_writing_event_files_prints_nothing_of_the_event_library(tmp_path: Path) -> None:
    """The trial's log is what a user reads in Katib's UI: the event writer's import (tensorboardX, which pulls
    in google.api_core and its Python-version FutureWarning) adds nothing to it."""
    run = run_trial_command("--architecture", "in8x8x1-cls10-stem8/w8:c3", *FAST, "--steps", "2",
                    "--tfevent-dir", str(tmp_path / "tfevent"))
    assert run.code == 0, run.stderr
    assert "Warning" not in run.stderr and run.error_lines() == [], run.stderr
    assert any((tmp_path / "tfevent").iterdir())
