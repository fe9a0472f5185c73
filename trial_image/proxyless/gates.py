"""Binarized path gates: path logits per block, path sampling, the two-path gradient and its rescale.

Block b has logits alpha_b and path probabilities p_b = softmax(alpha_b). A
weight step runs one path per block, drawn from p_b. An architecture step
draws two distinct paths (i, j) from p_b, runs the one picked with
probabilities renormalised over the pair with gate 1 and the other with gate
0, and turns the gate gradients dL/dg into logit gradients over the pair:
dL/dalpha_a = sum_k dL/dg_k * q_k * (delta_ak - q_a), q = softmax(alpha_i, alpha_j).
After the optimiser step, the pair's logits are shifted by a common offset
so that exp(alpha_i) + exp(alpha_j) is what it was before the step: the
probabilities of all other paths stay exactly as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PathPair:
    """The two paths of an architecture step: `active` ran with gate 1, `other` with gate 0."""

    active: int
    other: int

    @property
    def involved(self) -> tuple[int, int]:
        return self.active, self.other


class PathLogits(nn.Module):
    """alpha: one logit vector per searchable block, all zeros at the start (uniform paths)."""

    def __init__(self, paths_per_block: list[int]):
        super().__init__()
        self.alphas = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in paths_per_block)

    def probs(self) -> list[torch.Tensor]:
        """Path probabilities per block (differentiable)."""
        return [torch.softmax(alpha, dim=0) for alpha in self.alphas]

    def argmax(self) -> list[int]:
        return [int(alpha.detach().argmax()) for alpha in self.alphas]

    def probabilities(self) -> list[list[float]]:
        return [p.detach().cpu().tolist() for p in self.probs()]


def sample_path(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One path index drawn from `probs`."""
    return int(torch.multinomial(probs.detach().cpu(), 1, generator=generator))


def sample_pair(probs: torch.Tensor, generator: torch.Generator) -> PathPair:
    """Two distinct paths drawn from `probs` without replacement; the active one picked by their renormalised
    probabilities."""
    weights = probs.detach().cpu()
    first, second = (int(i) for i in torch.multinomial(weights, 2, replacement=False, generator=generator))
    pair = weights[[first, second]]
    pick = int(torch.multinomial(pair / pair.sum(), 1, generator=generator))
    return PathPair(first, second) if pick == 0 else PathPair(second, first)


def pair_logit_grad(alpha: torch.Tensor, pair: PathPair, gate_grads: tuple[float, float]) -> torch.Tensor:
    """Gradient of the logits from the gate gradients of the pair (zero outside the pair)."""
    involved = list(pair.involved)
    q = torch.softmax(alpha.detach()[involved], dim=0)
    g = torch.tensor(gate_grads, dtype=q.dtype, device=q.device)
    grad = torch.zeros_like(alpha)
    for a in range(2):
        grad[involved[a]] = sum(g[k] * q[k] * ((1.0 if a == k else 0.0) - q[a]) for k in range(2))
    return grad


def rescale_pair(alpha: torch.Tensor, pair: PathPair, before: tuple[float, float]) -> None:
    """Shift the pair's logits so their summed exp matches `before`; other paths' probabilities stay put."""
    involved = list(pair.involved)
    with torch.no_grad():
        now = alpha[involved].double()
        offset = torch.logsumexp(now, 0).item() - math.log(sum(math.exp(v) for v in before))
        alpha[involved] -= offset
