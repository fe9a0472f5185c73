"""The optimisers of the trainer and the supernet search: SGD with Nesterov momentum, its cosine learning rate,
and Adam for the path logits.

Each step is the arithmetic of torch.optim.SGD, CosineAnnealingLR and Adam for these settings (one
parameter at a time, as torch does on CPU; parameters without a gradient are left alone), so weights come
out bit for bit the same. torch.optim is not used: its first optimiser call imports torch._dynamo and
sympy, about 70 MiB and a second of CPU in every trial process, for a compiler no trial uses. State
dicts keep torch's layout (state by parameter index, the learning rate in param_groups), so checkpoints
written with torch.optim still resume.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch


class NesterovSGD:
    """SGD with Nesterov momentum and L2 weight decay (torch.optim.SGD(nesterov=True, dampening=0))."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float, weight_decay: float):
        self.params = list(params)
        self.momentum, self.weight_decay = momentum, weight_decay
        # param_groups as torch.optim has it: GradScaler unscales the gradients of group["params"].
        self.param_groups: list[dict[str, Any]] = [{"params": self.params, "lr": lr, "initial_lr": lr}]
        self.buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @property
    def lr(self) -> float:
        return self.param_groups[0]["lr"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        lr = self.lr
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            grad = param.grad
            if self.weight_decay != 0:
                grad = grad.add(param, alpha=self.weight_decay)
            buffer = self.buffers[index]
            if buffer is None:
                buffer = self.buffers[index] = torch.clone(grad).detach()
            else:
                buffer.mul_(self.momentum).add_(grad, alpha=1)
            param.add_(grad.add(buffer, alpha=self.momentum), alpha=-lr)

    def state_dict(self) -> dict[str, Any]:
        group = {"lr": self.lr, "initial_lr": self.param_groups[0]["initial_lr"], "momentum": self.momentum,
                 "dampening": 0, "weight_decay": self.weight_decay, "nesterov": True,
                 "params": list(range(len(self.params)))}
        state = {i: {"momentum_buffer": b} for i, b in enumerate(self.buffers) if b is not None}
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.param_groups[0]["lr"] = float(state_dict["param_groups"][0]["lr"])
        for index, entry in state_dict["state"].items():
            buffer = entry.get("momentum_buffer")
            param = self.params[int(index)]
            self.buffers[int(index)] = None if buffer is None else torch.clone(buffer).to(param.device, param.dtype)


class CosineSchedule:
    """The learning rate of every step: lr0 (1 + cos(pi t / T)) / 2, updated from the previous rate as
    CosineAnnealingLR updates it (eta_min 0)."""

    def __init__(self, optimizer: NesterovSGD, total_steps: int):
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.base_lr = optimizer.param_groups[0]["initial_lr"]
        self.last_epoch = 0

    def step(self) -> None:
        self.last_epoch += 1
        group, t, total = self.optimizer.param_groups[0], self.last_epoch, self.total_steps
        if (t - 1 - total) % (2 * total) == 0:
            group["lr"] = group["lr"] + self.base_lr * (1 - math.cos(math.pi / total)) / 2
        else:
            group["lr"] = (1 + math.cos(math.pi * t / total)) / (1 + math.cos(math.pi * (t - 1) / total)) * group["lr"]

    def state_dict(self) -> dict[str, Any]:
        return {"T_max": self.total_steps, "base_lrs": [self.base_lr], "last_epoch": self.last_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_epoch = int(state_dict["last_epoch"])


class Adam:
    """Adam without weight decay (torch.optim.Adam's arithmetic), one parameter at a time."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], eps: float):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.steps = [0] * len(self.params)
        self.averages: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for index, param in enumerate(self.params):
            if param.grad is None:
                continue
            if self.averages[index] is None:
                self.averages[index] = (torch.zeros_like(param, memory_format=torch.preserve_format),
                                        torch.zeros_like(param, memory_format=torch.preserve_format))
            exp_avg, exp_avg_sq = self.averages[index]  # type: ignore[misc]
            self.steps[index] += 1
            grad, step = param.grad, float(self.steps[index])
            exp_avg.lerp_(grad, 1 - self.beta1)
            exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
            step_size = self.lr / (1 - self.beta1 ** step)
            denom = (exp_avg_sq.sqrt() / (1 - self.beta2 ** step) ** 0.5).add_(self.eps)
            param.addcdiv_(exp_avg, denom, value=-step_size)
