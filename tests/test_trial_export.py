"""`katib-nas trial --export-dir` replaces the folder's whole set of model files, never a part of it.

Before: the files were written in place one after another, so an export into the folder of an earlier run
without onnx installed left that run's model.onnx beside the new network's TorchScript and model.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from katib_nas.trial_image.export import METADATA_FILE, ONNX_FILE, TORCHSCRIPT_FILE

from .support.trial_cli import FAST, run_trial

ARCH = "in8x8x1-cls10-stem4/w8:c3"


def old_set(folder: Path) -> None:
    """The model files of an earlier run (another network, with ONNX)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (TORCHSCRIPT_FILE, ONNX_FILE):
        (folder / name).write_bytes(b"an earlier network")
    (folder / METADATA_FILE).write_text(json.dumps({"architecture": "in8x8x1-cls10-stem8/w16:c5"}))


def without_onnx(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot find the onnx package (as in an image built without it)."""
    hide = tmp_path / "hide-onnx"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\n\nsys.modules['onnx'] = None\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")])))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_an_export_over_an_earlier_set_leaves_only_the_new_set(tmp_path: Path) -> None:
    export = tmp_path / "export"
    old_set(export)
    run = run_trial("--architecture", ARCH, *FAST, "--steps", "2", "--export-dir", str(export),
                    env=without_onnx(tmp_path))
    assert run.code == 0, run.stderr[-2000:]
    assert sorted(path.name for path in export.iterdir()) == [METADATA_FILE, TORCHSCRIPT_FILE]
    metadata = json.loads((export / METADATA_FILE).read_text())
    assert metadata["architecture"] == ARCH and metadata["files"] == {"torchscript": TORCHSCRIPT_FILE}
    model = torch.jit.load(str(export / TORCHSCRIPT_FILE))
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_the_staging_folder_of_an_export_killed_outright_goes_with_the_next_export(tmp_path: Path) -> None:
    export = tmp_path / "export"
    old_set(export)
    leftover = export / ".export-killed"  # what SIGKILL during an export leaves: a hidden, half-written set
    leftover.mkdir()
    (leftover / TORCHSCRIPT_FILE).write_bytes(b"half a network")
    (export / "mine").mkdir()  # the user's, not an export's
    (export / "mine" / "notes.txt").write_text("mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept.txt").write_text("kept")
    (export / ".export-link").symlink_to(elsewhere)  # a link is not followed into
    run = run_trial("--architecture", ARCH, *FAST, "--steps", "2", "--export-dir", str(export),
                    env=without_onnx(tmp_path))
    assert run.code == 0, run.stderr[-2000:]
    assert sorted(path.name for path in export.iterdir()) == sorted([".export-link", METADATA_FILE, "mine", TORCHSCRIPT_FILE])
    assert (export / "mine" / "notes.txt").read_text() == "mine" and (elsewhere / "kept.txt").read_text() == "kept"


def test_a_network_that_cannot_be_traced_is_an_export_error_and_the_folder_stays(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    """torch raises RuntimeError for a model it cannot trace: the trial's one line, not a traceback."""
    from katib_nas.trial_image import export

    folder = tmp_path / "model"
    old_set(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def cannot_trace(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot trace this network")

    monkeypatch.setattr(export.torch.jit, "trace", cannot_trace)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(export.ExportError, match=r"cannot trace this network; .* is left as it was"):
        export.export_model(model, ARCH, (8, 8, 1), (0.0,), (1.0,), {"Validation-Accuracy": 0.5}, folder, scale=1.0)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_a_network_on_images_that_are_not_square_is_exported_height_first(tmp_path: Path) -> None:
    from katib_nas.trial_image import export

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6 * 8, 10))
    export.export_model(model, "in6x8x1-cls10-stem4/w8:c3", (6, 8, 1), (0.0,), (1.0,), {}, tmp_path, scale=1.0)
    metadata = json.loads((tmp_path / METADATA_FILE).read_text())
    assert metadata["input"]["shape"] == [1, 6, 8]
    assert torch.jit.load(str(tmp_path / TORCHSCRIPT_FILE))(torch.zeros(2, 1, 6, 8)).shape == (2, 10)


def test_a_move_that_fails_halfway_leaves_no_model_json_and_says_so(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without model.json a reader knows the folder holds no whole set; the message asks to export again."""
    import errno

    from katib_nas.trial_image import export

    folder = tmp_path / "model"
    old_set(folder)
    real_replace, calls = os.replace, []

    def fails_once(source: object, destination: object) -> None:
        calls.append(destination)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(source, destination)

    monkeypatch.setattr(export.os, "replace", fails_once)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(export.ExportError, match=r"Input/output error; .* holds an incomplete set \(no model.json\)"):
        export.export_model(model, ARCH, (8, 8, 1), (0.0,), (1.0,), {"Validation-Accuracy": 0.5}, folder, scale=1.0)
    assert not (folder / METADATA_FILE).exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(export.STAGING_PREFIX)]  # staging removed


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_model_json_turns_the_training_files_pixels_into_the_reported_accuracy(tmp_path: Path, dtype: str) -> None:
    """A user's own file (uint8 0..255, or float taken as it is) and only model.json's recipe give the network's
    input: its validation images, predicted that way, score the Validation-Accuracy the trial reported. Before,
    model.json left out the 1/255 a uint8 file is scaled by, and its mean and std applied to the file's pixels
    gave inputs about 255 times too large."""
    import numpy as np
    from sklearn.datasets import load_digits

    from katib_nas.trial_image.data import SPLIT_SEED, seeded_split

    digits = load_digits()
    pixels = (digits.images * (255 / 16)).astype(dtype)
    np.savez(tmp_path / "mine.npz", x=pixels, y=digits.target)
    run = run_trial(f"--architecture={ARCH}", "--dataset=npz", f"--data-dir={tmp_path / 'mine.npz'}", "--epochs=2",
                    "--threads=1", "--batch-size=64", f"--export-dir={tmp_path / 'model'}")
    assert run.code == 0, run.stderr
    spec = json.loads((tmp_path / "model" / METADATA_FILE).read_text())["input"]
    assert spec["normalise"] == "(pixel * scale - mean[channel]) / std[channel]"
    assert spec["scale"] == pytest.approx(1 / 255 if dtype == "uint8" else 1.0)
    val_index, _ = seeded_split(len(pixels), round(len(pixels) * 0.1), SPLIT_SEED)
    images = (pixels[val_index][..., None] * spec["scale"] - np.array(spec["mean"])) / np.array(spec["std"])
    model = torch.jit.load(str(tmp_path / "model" / TORCHSCRIPT_FILE))
    with torch.no_grad():
        predicted = model(torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32))).argmax(dim=1).numpy()
    accuracy = float((predicted == digits.target[val_index]).mean())
    assert accuracy == pytest.approx(float(run.metrics()["Validation-Accuracy"]), abs=1e-6)
