"""Cells: envelope cells (concatenated branches), choice cells (supernet blocks) and gated skip inputs.

Branch statistics (a Taylor estimate of each branch's importance and its
mean squared activation; EnvelopeNet construction prunes by one of them, Taylor by default; both per
output channel, so that branches of different widths compare) are
accumulated on the device inside the cell during training steps only (forward
passes without gradients, such as evaluation and BatchNorm recalibration, do
not count), with no host synchronisation per step; they are read once, at the
end of the run.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from katib_nas.contract.codec import encode_cell
from katib_nas.contract.spec import Cell, branch_widths

from .ops import build_op


class ConcatBody(nn.Module):
    """Parallel branches whose outputs are concatenated; branch i has width branch_widths(width, n)[i]."""

    def __init__(self, cell: Cell, width: int):
        super().__init__()
        self.widths = branch_widths(width, len(cell.ops))
        offsets = [sum(self.widths[:i]) for i in range(len(self.widths))]
        self.branches = nn.ModuleList(build_op(op, width, w, offset)
                                      for op, w, offset in zip(cell.ops, self.widths, offsets))
        self.record_stats = False
        self.register_buffer("channel_sq_sum", torch.zeros(width), persistent=False)
        self.register_buffer("taylor_sum", torch.zeros(len(cell.ops)), persistent=False)
        self.register_buffer("branch_of_channel",
                             torch.repeat_interleave(torch.arange(len(self.widths)), torch.tensor(self.widths)),
                             persistent=False)
        self.stat_steps = 0
        self.taylor_samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.branches]
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)
        if self.record_stats and self.training and torch.is_grad_enabled():
            # One reduction per cell: per-channel mean squares; branch means are averaged from them at read-out.
            self.channel_sq_sum += out.detach().float().square().mean(dim=(0, 2, 3))
            self.stat_steps += 1
            if out.requires_grad:
                out.register_hook(self._taylor_hook(out.detach()))
        return out

    def _taylor_hook(self, output: torch.Tensor) -> Callable[[torch.Tensor], None]:
        """Accumulates, per branch, |sum over its channels and pixels of y * dl/dy| per sample: the first-order
        estimate of how much a sample's loss changes when the branch's output is removed."""

        def hook(grad: torch.Tensor) -> None:
            batch = grad.shape[0]
            per_channel = (grad.float() * output.float()).sum(dim=(2, 3)) * batch  # the loss is a batch mean
            per_branch = torch.zeros(batch, len(self.widths), device=grad.device)
            per_branch.index_add_(1, self.branch_of_channel, per_channel)
            self.taylor_sum += per_branch.abs().sum(dim=0)
            self.taylor_samples += batch

        return hook

    def reset_stats(self) -> None:
        self.channel_sq_sum.zero_()
        self.taylor_sum.zero_()
        self.stat_steps = 0
        self.taylor_samples = 0

    def taylor_stats(self) -> list[float]:
        """Mean first-order loss change of removing each branch over the recorded samples, per output channel of
        the branch (a wide branch would otherwise rank strong for its width alone); nan before any sample."""
        if self.taylor_samples == 0:
            return [math.nan] * len(self.widths)
        widths = torch.tensor(self.widths, dtype=torch.float32, device=self.taylor_sum.device)
        return (self.taylor_sum / self.taylor_samples / widths).cpu().tolist()

    def branch_stats(self) -> list[float]:
        """Mean squared activation of each branch over the recorded steps; nan when nothing was recorded."""
        if self.stat_steps == 0:
            return [math.nan] * len(self.widths)
        per_channel = (self.channel_sq_sum / self.stat_steps).cpu().tolist()
        stats, start = [], 0
        for w in self.widths:
            stats.append(sum(per_channel[start:start + w]) / w)
            start += w
        return stats


class ChoiceBody(nn.Module):
    """Alternatives at full cell width; the `active` ones (default: the first) run and their outputs add up.

    A search procedure sets `active` from outside before each step (e.g. one or two sampled paths).
    """

    def __init__(self, cell: Cell, width: int):
        super().__init__()
        self.alternatives = nn.ModuleList(build_op(op, width, width) for op in cell.ops)
        self.width = width
        self.active: tuple[int, ...] = (0,)
        self.record_stats = False
        self.register_buffer("alt_sq_sum", torch.zeros(len(cell.ops)), persistent=False)
        self.register_buffer("alt_taylor_sum", torch.zeros(len(cell.ops)), persistent=False)
        self.alt_steps = [0] * len(cell.ops)
        self.alt_samples = [0] * len(cell.ops)

    def set_active(self, indices: int | Sequence[int]) -> None:
        chosen = (indices,) if isinstance(indices, int) else tuple(indices)
        if not chosen or any(not 0 <= i < len(self.alternatives) for i in chosen):
            raise ValueError(f"active alternatives {chosen} outside 0..{len(self.alternatives) - 1}")
        self.active = chosen

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor | None = None
        for index in self.active:
            y = self.alternatives[index](x)
            if self.record_stats and self.training and torch.is_grad_enabled():
                self.alt_sq_sum[index] += y.detach().float().square().mean()
                self.alt_steps[index] += 1
                if y.requires_grad:
                    y.register_hook(self._taylor_hook(index, y.detach()))
            out = y if out is None else out + y
        assert out is not None
        return out

    def _taylor_hook(self, index: int, output: torch.Tensor) -> Callable[[torch.Tensor], None]:
        """Accumulates |sum over the alternative's output of y * dl/dy| per sample (see ConcatBody)."""

        def hook(grad: torch.Tensor) -> None:
            batch = grad.shape[0]
            per_sample = (grad.float() * output.float()).sum(dim=(1, 2, 3)) * batch
            self.alt_taylor_sum[index] += per_sample.abs().sum()
            self.alt_samples[index] += batch

        return hook

    def reset_stats(self) -> None:
        self.alt_sq_sum.zero_()
        self.alt_taylor_sum.zero_()
        self.alt_steps = [0] * len(self.alternatives)
        self.alt_samples = [0] * len(self.alternatives)

    def branch_stats(self) -> list[float]:
        """Mean squared activation of each alternative over the steps it was active; nan if it never was."""
        sums = self.alt_sq_sum.cpu().tolist()
        return [s / n if n else math.nan for s, n in zip(sums, self.alt_steps)]

    def taylor_stats(self) -> list[float]:
        """Mean first-order loss change of removing each alternative over the samples it ran on, per output
        channel (as ConcatBody's); nan if it never ran."""
        sums = self.alt_taylor_sum.cpu().tolist()
        return [s / n / self.width if n else math.nan for s, n in zip(sums, self.alt_samples)]


class SkipInput(nn.Module):
    """An earlier cell's output brought to this cell's resolution (max pooling) and width (1x1 conv + BN)."""

    def __init__(self, in_channels: int, out_channels: int, pool_factor: int):
        super().__init__()
        layers: list[nn.Module] = []
        if pool_factor > 1:
            layers.append(nn.MaxPool2d(pool_factor, stride=pool_factor))
        if in_channels != out_channels:
            layers += [nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
        self.adapt = nn.Sequential(*layers) if layers else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapt(x)


class CellBlock(nn.Module):
    """One cell of the network: its body, optional residual, and skip inputs scaled by learned scalar gates."""

    def __init__(self, cell: Cell, width: int, skip_sources: Sequence[tuple[int, int]]):
        """skip_sources: (width, pool factor) of each earlier cell in cell.skips, in that order."""
        super().__init__()
        self.token = encode_cell(cell)
        self.skips = tuple(cell.skips)
        self.residual = cell.residual
        self.body: ConcatBody | ChoiceBody = ChoiceBody(cell, width) if cell.choice else ConcatBody(cell, width)
        self.skip_inputs = nn.ModuleList(SkipInput(w, width, factor) for w, factor in skip_sources)
        # Gates start at zero: at initialisation every cell outputs exactly its body (and residual), so dense
        # skip inputs cannot compound the activation scale from cell to cell; each gate then learns from
        # dL/dg = <dL/dout, skip input>.
        self.gates = nn.Parameter(torch.zeros(len(self.skips))) if self.skips else None

    def forward(self, x: torch.Tensor, earlier: list[torch.Tensor]) -> torch.Tensor:
        out = self.body(x)
        if self.residual:
            out = out + x
        if self.gates is not None:
            for k, (source, adapt) in enumerate(zip(self.skips, self.skip_inputs)):
                out = out + self.gates[k] * adapt(earlier[source])
        return out

    def gate_values(self) -> list[float]:
        return [] if self.gates is None else self.gates.detach().cpu().tolist()

    def config(self) -> dict[str, str]:
        return {"cell": self.token}

    def extra_repr(self) -> str:
        return f"cell={self.token}"
