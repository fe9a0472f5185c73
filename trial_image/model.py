"""Model builder: a torch network from an Architecture spec.

stem (3x3 conv + BN + ReLU) -> per stage: widener (1x1 conv + BN + ReLU when
the width changes, 2x2 max pool when the stride is 2) and cells -> global
average pool -> linear classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from katib_nas.contract.codec import encode
from katib_nas.contract.spec import Architecture

from .batchnorm_act import Layers
from .cells import CellBlock, ChoiceBody, ConcatBody
from .ops import conv_bn_relu


def widener(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The layers entering a stage; the identity when neither the width nor the resolution changes."""
    layers: list[nn.Module] = []
    if in_channels != out_channels:
        layers += conv_bn_relu(in_channels, out_channels, 1)
    if stride == 2:
        layers.append(nn.MaxPool2d(2, stride=2))
    return Layers(*layers) if layers else nn.Identity()


class Network(nn.Module):
    """The candidate network; `cells` follows Architecture.cells order."""

    def __init__(self, arch: Architecture):
        super().__init__()
        arch.validate()
        self.arch_text = encode(arch)
        height, width, channels = arch.input_shape
        self.stem = Layers(*conv_bn_relu(channels, arch.stem, 3))
        self.wideners = nn.ModuleList()
        self.cells = nn.ModuleList()
        self.first_cell_of_stage: list[int] = []
        cell_widths: list[int] = []
        cell_reductions: list[int] = []
        current, reductions = arch.stem, 0
        for stage in arch.stages:
            self.wideners.append(widener(current, stage.width, stage.stride))
            reductions += stage.stride == 2
            self.first_cell_of_stage.append(len(self.cells))
            for cell in stage.cells:
                sources = [(cell_widths[j], 2 ** (reductions - cell_reductions[j])) for j in cell.skips]
                self.cells.append(CellBlock(cell, stage.width, sources))
                cell_widths.append(stage.width)
                cell_reductions.append(reductions)
            current = stage.width
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(current, arch.num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        outputs: list[torch.Tensor] = []
        stage = 0
        for index, cell in enumerate(self.cells):
            if stage < len(self.first_cell_of_stage) and self.first_cell_of_stage[stage] == index:
                x = self.wideners[stage](x)
                stage += 1
            x = cell(x, outputs)
            outputs.append(x)
        return self.head(x)

    def config(self) -> dict[str, str]:
        return {"architecture": self.arch_text}

    def bodies(self) -> list[ConcatBody | ChoiceBody]:
        return [cell.body for cell in self.cells]

    def record_branch_stats(self, enabled: bool) -> None:
        """Start (after clearing) or stop accumulating per-branch statistics in training mode."""
        for body in self.bodies():
            body.record_stats = enabled
            if enabled:
                body.reset_stats()

    def branch_stats(self, statistic: str = "mean-square") -> list[list[float]]:
        """Per cell, one statistic of each op (branch or alternative) in op order: `mean-square` (the mean squared
        activation) or `taylor` (the mean first-order loss change of removing the op)."""
        if statistic == "taylor":
            return [body.taylor_stats() for body in self.bodies()]
        if statistic == "mean-square":
            return [body.branch_stats() for body in self.bodies()]
        raise ValueError(f"unknown branch statistic {statistic!r}")

    def skip_gates(self) -> list[list[float]]:
        """Per cell, the learned gate of each skip input in the order of cell.skips."""
        return [cell.gate_values() for cell in self.cells]

    def choice_bodies(self) -> list[ChoiceBody]:
        return [body for body in self.bodies() if isinstance(body, ChoiceBody)]


def build_model(arch: Architecture) -> Network:
    return Network(arch)
