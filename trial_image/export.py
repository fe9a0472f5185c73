"""Export of the trained network: TorchScript always, ONNX when the onnx package is installed, plus model.json.

model.json records the architecture text, the final metrics, the input
layout and the normalisation the network expects, so the files can be
served without this package.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from katib_nas.contract.metric_format import MetricValue, format_value

TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
METADATA_FILE = "model.json"


def export_model(model: nn.Module, arch_text: str, input_shape: tuple[int, int, int], mean: tuple[float, ...],
                 std: tuple[float, ...], metrics: Mapping[str, MetricValue], directory: str | Path) -> dict[str, str]:
    """Write the exported files into `directory`; returns {format: file name}."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    cpu_model = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float().eval()
    height, width, channels = input_shape
    example = torch.zeros(1, channels, height, width)
    files = {"torchscript": TORCHSCRIPT_FILE}
    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.export, but TorchScript is what most servers still load.
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(cpu_model, example)
        traced.save(str(target / TORCHSCRIPT_FILE))
    if importlib.util.find_spec("onnx") is not None:
        write_onnx(cpu_model, example, target / ONNX_FILE)
        files["onnx"] = ONNX_FILE
    metadata = {
        "architecture": arch_text,
        "metrics": {name: format_value(value) for name, value in metrics.items()},
        "input": {"layout": "NCHW", "shape": [channels, height, width], "mean": list(mean), "std": list(std)},
        "output": "logits",
        "files": files,
    }
    (target / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
    return {**files, "metadata": METADATA_FILE}


def write_onnx(model: nn.Module | torch.jit.ScriptModule, example: torch.Tensor, path: Path) -> None:
    """ONNX file of an eval-mode CPU model: input `images` (NCHW, dynamic batch), output `logits`."""
    torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
