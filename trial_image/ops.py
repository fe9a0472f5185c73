"""Ops registry: op kind -> builder of the torch module for one branch of a cell.

A builder gets the op, the cell's input width, the branch's output width and
the branch's channel offset. Ops with weights that mix channels (conv,
dilconv, sepconv, mbconv) read the whole cell input. Ops without channel
mixing (identity, pooling, zero, dwconv) work on the branch's own slice of
the input channels, so a cell made only of such ops keeps the channel layout
of its input. All ops keep the spatial size ('same' padding, stride 1; even
kernels pad one more pixel at the bottom/right).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from katib_nas.contract.codec import encode_op
from katib_nas.contract.spec import Op

from .batchnorm_act import Layers

OpBuilder = Callable[[Op, int, int, int], nn.Module]


class OpModule(Layers):
    """A branch: a sequence of layers that remembers the op token it was built from (BatchNorm + activation
    pairs run fused while training on CPU, see batchnorm_act)."""

    def __init__(self, op: Op, *layers: nn.Module):
        super().__init__(*layers)
        self.token = encode_op(op)

    def config(self) -> dict[str, str]:
        return {"op": self.token}

    def extra_repr(self) -> str:
        return f"op={self.token}"


class ChannelSlice(nn.Module):
    """Channels [start, start + count) of the input."""

    def __init__(self, start: int, count: int):
        super().__init__()
        self.start, self.count = start, count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.start + self.count]

    def extra_repr(self) -> str:
        return f"start={self.start}, count={self.count}"


class Zero(nn.Module):
    """All-zero output with `channels` channels and the input's batch and spatial size."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], self.channels, x.shape[2], x.shape[3]))


class CropLast(nn.Module):
    """Drop the last row and column, which an even-kernel pooling with symmetric padding adds."""

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled[:, :, :-1, :-1]


class _ReLU6InPlace(torch.autograd.Function):
    """ReLU6 in place that keeps only its output for the backward pass.

    Autograd's in-place hardtanh keeps a copy of its input: one more activation-sized tensor per ReLU6, a
    quarter of what an MBConv block keeps for backward. The gradient is the same: it passes where
    0 < x < 6, which is exactly where 0 < relu6(x) < 6.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        x.clamp_(0.0, 6.0)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)


class ReLU6(nn.ReLU6):
    """nn.ReLU6(inplace=True) that keeps no copy of its input for backward where it runs on its own (CUDA; on CPU
    it runs fused with the BatchNorm before it); the standard op when not training (tracing and export see
    nn.ReLU6)."""

    def __init__(self) -> None:
        super().__init__(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and x.requires_grad:
            return _ReLU6InPlace.apply(x)
        return super().forward(x)


def same_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding that keeps the size for a stride-1 kernel."""
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def conv(in_channels: int, out_channels: int, kernel: int, dilation: int = 1, groups: int = 1) -> list[nn.Module]:
    """A bias-free 'same' convolution, padded explicitly so even kernels also trace and export cleanly."""
    before, after = same_padding(kernel, dilation)
    layers: list[nn.Module] = []
    if before != after:
        layers.append(nn.ZeroPad2d((before, after, before, after)))
        before = 0
    layers.append(nn.Conv2d(in_channels, out_channels, kernel, padding=before, dilation=dilation,
                            groups=groups, bias=False))
    return layers


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, dilation: int = 1,
                 groups: int = 1) -> list[nn.Module]:
    return conv(in_channels, out_channels, kernel, dilation, groups) + [nn.BatchNorm2d(out_channels),
                                                                        nn.ReLU(inplace=True)]


def slice_for(in_channels: int, out_channels: int, offset: int) -> list[nn.Module]:
    """The branch's own input channels, or nothing when the branch covers the whole input."""
    if offset == 0 and out_channels == in_channels:
        return []
    return [ChannelSlice(offset, out_channels)]


def build_conv(op: Op, in_channels: int, out_channels: int, offset: int) -> nn.Module:
    return OpModule(op, *conv_bn_relu(in_channels, out_channels, op.kernel))


def build_dilconv(op: Op, in_channels: int, out_channels: int, offset: int) -> nn.Module:
    return OpModule(op, *conv_bn_relu(in_channels, out_channels, op.kernel, dilation=2))


def build_sepconv(op: Op, in_channels: int, out_channels: int, offset: int) -> nn.Module:
    """Depthwise kxk (depth multiplier `mult`), pointwise 1x1 to the branch width, BN, ReLU."""
    hidden = in_channels * op.mult
    depthwise = conv(in_channels, hidden, op.kernel, groups=in_channels)
    pointwise = nn.Conv2d(hidden, out_channels, 1, bias=False)
    return OpModule(op, *depthwise, pointwise, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def build_dwconv(op: Op, in_channels: int, out_channels: int, offset: int) -> nn.Module:
    """Depthwise conv on the branch's slice; a depth multiplier above 1 is folded back by a 1x1 conv + BN."""
    hidden = out_channels * op.mult
    layers = slice_for(in_channels, out_channels, offset)
    layers += conv_bn_relu(out_channels, hidden, op.kernel, groups=out_channels)
    if op.mult > 1:
        layers += [nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
    return OpModule(op, *layers)


def build_pool(op: Op, in_channels: int, out_channels: int, offset: int) -> nn.Module:
    layers = slice_for(in_channels, out_channels, offset)
    padding = op.kernel // 2
    if op.kind == "maxpool":
        layers.append(nn.MaxPool2d(op.kernel, stride=1, padding=padding))
    else:
        layers.append(nn.AvgPool2d(op.kernel, stride=1, padding=padding, count_include_pad=False))
    if op.kernel % 2 == 0:
        layers.append(CropLast())
    return OpModule(op, *layers)


def build_mbconv(op: Op, in_channels: int, out_channels: int, offset: int) -> nn.Module:
    """Inverted residual body: 1x1 expand (when the ratio is above 1), depthwise kxk, linear 1x1 projection."""
    hidden = in_channels * op.mult
    layers: list[nn.Module] = []
    if op.mult > 1:
        layers += [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), ReLU6()]
    layers += conv(hidden, hidden, op.kernel, groups=hidden) + [nn.BatchNorm2d(hidden), ReLU6()]
    layers += [nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)]
    return OpModule(op, *layers)


def build_identity(op: Op, in_channels: int, out_channels: int, offset: int) -> nn.Module:
    return OpModule(op, *(slice_for(in_channels, out_channels, offset) or [nn.Identity()]))


def build_zero(op: Op, in_channels: int, out_channels: int, offset: int) -> nn.Module:
    return OpModule(op, Zero(out_channels))


OPS: dict[str, OpBuilder] = {
    "conv": build_conv,
    "dilconv": build_dilconv,
    "sepconv": build_sepconv,
    "dwconv": build_dwconv,
    "maxpool": build_pool,
    "avgpool": build_pool,
    "mbconv": build_mbconv,
    "identity": build_identity,
    "zero": build_zero,
}


def build_op(op: Op, in_channels: int, out_channels: int, offset: int = 0) -> nn.Module:
    """The module for `op` reading `in_channels` and producing `out_channels` at the same resolution.

    `offset` is where the branch's channels start in the cell output (used by slicing ops).
    """
    return OPS[op.kind](op, in_channels, out_channels, offset)
