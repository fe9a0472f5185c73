"""A built network measured: parameter count, multiply-accumulates (forward hooks), median inference latency."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """All trainable parameters, every alternative of a choice cell included."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of Conv2d and Linear layers on the path a batch-1 input takes.

    Counted by forward hooks from the layers' real output shapes, so only the active alternative of a
    choice cell counts; normalisation, activations, pooling and additions are not counted.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * (module.in_channels // module.groups) * kernel

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    device = next(model.parameters()).device
    height, width, channels = input_shape
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros(1, channels, height, width, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


def measure_latency_ms(model: nn.Module, input_shape: tuple[int, int, int], warmup: int = 10,
                       repeats: int = 50) -> float:
    """Median wall time of a batch-1 forward pass in eval mode on the model's device, after warm-up."""
    device = next(model.parameters()).device
    height, width, channels = input_shape
    sample = torch.randn(1, channels, height, width, device=device)
    if device.type == "cuda":
        sample = sample.contiguous(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for run in range(warmup + repeats):
                _synchronize(device)
                start = time.perf_counter()
                model(sample)
                _synchronize(device)
                if run >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times) * 1000.0


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
