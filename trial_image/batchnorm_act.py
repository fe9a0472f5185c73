"""BatchNorm followed by ReLU or ReLU6 in CPU training, keeping one activation-sized tensor instead of two or three.

Autograd keeps a BatchNorm's input (for the BatchNorm's gradient) and the activation's output (for the
activation's gradient, and as the saved input of the next convolution or pooling): two tensors per layer,
most of what a network keeps for backward. Here the pair runs as one function that keeps only the
BatchNorm input and its batch statistics. Its output carries a `Recomputed` recipe: inside
`recomputing()` a layer that saves the output for backward saves the recipe instead, and backward
recomputes the output from the BatchNorm input (one multiply-add and one clamp per element) when it is
needed. The output of a depthwise convolution of such an output (MBConv's kxk) is a `Convolved` recipe in
turn: the BatchNorm after it keeps no copy of its input either, which costs that convolution once more in
backward. The recomputation is PyTorch's own CPU arithmetic (alpha = invstd * weight, beta = bias - mean *
alpha, output = input * alpha + beta, with fused multiply-adds; the same convolution call), so weights,
gradients and running statistics come out bit for bit as with the modules run one after the other.

Only CPU float32 training with gradients uses it; evaluation, tracing, export and CUDA run the modules as
they are.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Union

import torch
from torch import nn

#: Attribute of an output tensor holding the recipe that recomputes it.
_RECIPE = "_katib_nas_recomputed"


class Recipe:
    """A tensor left out of what backward keeps, and how to compute it again.

    A value computed for a layer's backward is kept (`cached`) until the BatchNorm + activation function that
    produced it releases it in its own backward, which comes next. A value computed only as the input of
    another recipe is kept when it is dear to compute (a convolution) and dropped when it is cheap."""

    value: torch.Tensor | None = None
    dear = False

    def _compute(self) -> torch.Tensor:
        raise NotImplementedError

    def compute(self, keep: bool = True) -> torch.Tensor:
        if self.value is not None:
            return self.value
        with torch.no_grad():
            value = self._compute()
        if keep or self.dear:
            self.value = value
        return value

    def release(self) -> torch.Tensor:
        """The value (computed unless an earlier backward step kept it), no longer kept here."""
        value = self.compute(keep=False)
        self.value = None
        return value


Saved = Union[torch.Tensor, Recipe]


class Recomputed(Recipe):
    """A BatchNorm + activation output, from the BatchNorm input (itself a tensor or a recipe) and its batch
    statistics."""

    def __init__(self, inputs: Saved, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor,
                 invstd: torch.Tensor, low: float, high: float | None):
        self.inputs, self.weight, self.bias, self.mean, self.invstd = inputs, weight, bias, mean, invstd
        self.low, self.high = low, high

    def _compute(self) -> torch.Tensor:
        inputs = self.inputs.compute(keep=False) if isinstance(self.inputs, Recipe) else self.inputs
        alpha = self.invstd * self.weight
        beta = torch.addcmul(self.bias, self.mean, alpha, value=-1)
        shape = (1, -1) + (1,) * (inputs.dim() - 2)
        return clamp_(torch.addcmul(beta.view(shape), inputs, alpha.view(shape)), self.low, self.high)


class Convolved(Recipe):
    """A depthwise convolution's output, from its input's recipe: kept for the BatchNorm after it, whose
    input it is, it costs one more depthwise convolution in backward instead of one more tensor."""

    dear = True

    def __init__(self, conv: nn.Conv2d, inputs: Recipe):
        self.conv, self.inputs, self.weight = conv, inputs, conv.weight

    def _compute(self) -> torch.Tensor:
        return self.conv._conv_forward(self.inputs.compute(keep=False), self.weight, self.conv.bias)


def clamp_(tensor: torch.Tensor, low: float, high: float | None) -> torch.Tensor:
    """ReLU (high None) or ReLU6 (high 6) in place, as the in-place modules compute them."""
    return tensor.clamp_min_(low) if high is None else tensor.clamp_(low, high)


class _BatchNormAct(torch.autograd.Function):
    """Training-mode BatchNorm (running statistics updated) then the activation, saving no output."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                running_mean: torch.Tensor, running_var: torch.Tensor, factor: float, eps: float, low: float,
                high: float | None) -> torch.Tensor:
        output, mean, invstd = torch.native_batch_norm(inputs, weight, bias, running_mean, running_var, True,
                                                       factor, eps)
        clamp_(output, low, high)
        packed = _pack(inputs)
        recipe = Recomputed(packed, weight, bias, mean, invstd, low, high)
        setattr(output, _RECIPE, recipe)
        ctx.save_for_backward(weight, running_mean, running_var, mean, invstd)
        ctx.recipe, ctx.inputs, ctx.eps = recipe, packed, eps
        return output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, running_mean, running_var, mean, invstd = ctx.saved_tensors
        recipe: Recomputed = ctx.recipe
        output = recipe.release()
        inputs = ctx.inputs.release() if isinstance(ctx.inputs, Recipe) else ctx.inputs
        ctx.recipe = ctx.inputs = None
        # The activation's gradient goes into the recomputed output, which nothing else holds: one
        # activation-sized tensor less at the peak of backward.
        if recipe.high is None:
            grad = torch.ops.aten.threshold_backward.grad_input(grad, output, recipe.low, grad_input=output)
        else:
            grad = torch.ops.aten.hardtanh_backward.grad_input(grad, output, recipe.low, recipe.high,
                                                               grad_input=output)
        grad_input, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad, inputs, weight, running_mean, running_var, mean, invstd, True, ctx.eps,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


def activation_range(module: nn.Module) -> tuple[float, float | None] | None:
    """(low, high) of a ReLU or ReLU6 module; None for anything else."""
    if isinstance(module, nn.ReLU6):
        return 0.0, 6.0
    if isinstance(module, nn.ReLU):
        return 0.0, None
    return None


def fusable(norm: nn.Module, x: torch.Tensor) -> bool:
    """Whether `norm` on `x` can run as the fused CPU training function."""
    return (isinstance(norm, nn.BatchNorm2d) and norm.training and norm.affine and norm.track_running_stats
            and torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and x.dim() == 4 and x.numel() > x.shape[1])  # BatchNorm needs more than one value per channel


def depthwise(layer: nn.Module) -> bool:
    """A convolution of every channel on its own (MBConv's kxk), cheap to run again in backward."""
    return isinstance(layer, nn.Conv2d) and layer.groups == layer.in_channels == layer.out_channels > 1


def batchnorm_act(norm: nn.BatchNorm2d, x: torch.Tensor, low: float, high: float | None) -> torch.Tensor:
    """`act(norm(x))` in training mode, with BatchNorm2d's bookkeeping of the running statistics."""
    factor = 0.0 if norm.momentum is None else norm.momentum
    if norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    return _BatchNormAct.apply(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, factor, norm.eps,
                               low, high)


class Layers(nn.Sequential):
    """nn.Sequential whose BatchNorm2d + ReLU/ReLU6 pairs run fused while training on CPU (same modules, same
    parameter names, same results)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        layers = list(self)
        index = 0
        while index < len(layers):
            layer = layers[index]
            bounds = activation_range(layers[index + 1]) if index + 1 < len(layers) else None
            if bounds is not None and fusable(layer, x):
                x = batchnorm_act(layer, x, *bounds)
                index += 2
                continue
            recipe = getattr(x, _RECIPE, None)
            x = layer(x)
            if recipe is not None and depthwise(layer):
                setattr(x, _RECIPE, Convolved(layer, recipe))
            index += 1
        return x


def _pack(tensor: torch.Tensor) -> Saved:
    return getattr(tensor, _RECIPE, None) or tensor


def _unpack(saved: Saved) -> torch.Tensor:
    return saved.compute() if isinstance(saved, Recipe) else saved


@contextmanager
def recomputing() -> Iterator[None]:
    """Within this block, layers that save a fused BatchNorm + activation output save its recipe instead."""
    with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
        yield
