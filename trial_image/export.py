"""Export of the trained network: TorchScript always, ONNX when the onnx package is installed, plus model.json.

model.json records the architecture text, the final metrics, the input
layout and the normalisation the network expects, so the files can be
served without this package.

The folder holds one network's set at a time. Every file is written into a
temporary folder inside the export folder (the same filesystem, also when the
export folder is a mounted volume) and moved into place only once all of them
are written: an export that fails leaves the folder as it was. A staging folder
that a process killed outright left behind is removed by the next export. model.json
goes last, after a file of the set this export did not write (model.onnx
without onnx) is removed, so a folder with a model.json holds that model's
files and no other network's.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from katib_nas.contract.metric_format import MetricValue, format_value

from .durable import remove_leftover_folders, sync_path, write_synced

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
METADATA_FILE = "model.json"


#: model.json's description of the input the network takes, from the pixel values of the training data.
NORMALISE_TEXT = "(pixel * scale - mean[channel]) / std[channel]"
STAGING_PREFIX = ".export-"
#: Every file an export may write; model.json, the set's description, is moved into place last.
EXPORT_FILES = (TORCHSCRIPT_FILE, ONNX_FILE, METADATA_FILE)


@dataclass(frozen=True)
class Normalisation:
    """What the network expects of a pixel value p of channel c: (p * scale - mean[c]) / std[c], p as the
    training data held it (scale 1/255 for uint8 images, so a served uint8 image is scaled the same way)."""

    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def metadata(self) -> dict[str, object]:
        """model.json's normalisation entries, the formula spelled out beside them."""
        return {"normalise": NORMALISE_TEXT, "scale": self.scale, "mean": list(self.mean), "std": list(self.std)}


class ExportError(RuntimeError):
    """The model could not be exported; the message says what the export folder holds now."""


def export_model(model: nn.Module, arch_text: str, input_shape: tuple[int, int, int], mean: tuple[float, ...],
                 std: tuple[float, ...], metrics: Mapping[str, MetricValue], directory: str | Path, *,
                 scale: float) -> dict[str, str]:
    """Replace the set of exported files in `directory`; returns {format: file name}. The network takes
    (pixel * scale - mean) / std per channel, pixel as the training data held it. ExportError when any
    file cannot be made or written (the folder is then left as it was)."""
    target = Path(directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
        remove_leftover_folders(target, STAGING_PREFIX)  # of an export killed outright
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
    except OSError as err:
        raise _failed(target, err, "is left as it was") from None
    try:
        try:
            files = _write_set(model, arch_text, input_shape, Normalisation(scale, mean, std), metrics, staging)
        except (OSError, RuntimeError) as err:
            raise _failed(target, err, "is left as it was") from None
        try:
            _move_into_place(staging, target)
        except OSError as err:
            raise _failed(target, err, "holds an incomplete set (no model.json): export again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def _failed(target: Path, err: Exception, state: str) -> ExportError:
    detail = err.strerror if isinstance(err, OSError) and err.strerror else " ".join(str(err).split())[:200]
    return ExportError(f"cannot export the model to {target}: {detail}; {target} {state}")


def _write_set(model: nn.Module, arch_text: str, input_shape: tuple[int, int, int], normalisation: Normalisation,
               metrics: Mapping[str, MetricValue], folder: Path) -> dict[str, str]:
    """Every file of the set, written and synced into `folder`; {format: file name}."""
    cpu_model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().eval()
    height, width, channels = input_shape
    example = torch.zeros(1, channels, height, width)
    files = {"torchscript": TORCHSCRIPT_FILE}
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript is what most servers still load.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(cpu_model, example)
        buffer = io.BytesIO()
        # Into memory first: torch's own file writer aborts the whole process when the disk is full.
        torch.jit.save(traced, buffer)
    write_synced(folder / TORCHSCRIPT_FILE, buffer.getbuffer())
    if importlib.util.find_spec("onnx") is not None:
        write_onnx(cpu_model, example, folder / ONNX_FILE)
        sync_path(folder / ONNX_FILE)
        files["onnx"] = ONNX_FILE
    metadata = {
        "architecture": arch_text,
        "metrics": {name: format_value(value) for name, value in metrics.items()},
        "input": {"layout": "NCHW", "shape": [channels, height, width], **normalisation.metadata()},
        "output": "logits",
        "files": files,
    }
    write_synced(folder / METADATA_FILE, (json.dumps(metadata, indent=2) + "\n").encode())
    return {**files, "metadata": METADATA_FILE}


def _move_into_place(staging: Path, target: Path) -> None:
    """The staged set replaces the folder's: the old model.json goes first and the new one comes last."""
    (target / METADATA_FILE).unlink(missing_ok=True)
    for name in EXPORT_FILES[:-1]:
        if (staging / name).exists():
            os.replace(staging / name, target / name)
        else:
            (target / name).unlink(missing_ok=True)  # another network's file, from an earlier export
    os.replace(staging / METADATA_FILE, target / METADATA_FILE)
    sync_path(target)


def write_onnx(model: nn.Module | torch.jit.ScriptModule, example: torch.Tensor, path: Path) -> None:
    """ONNX file of an eval-mode CPU model: input `images` (NCHW, dynamic batch), output `logits`."""
    torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
