"""Hardware-aware loss: expected latency of the supernet and the two ways of adding it to cross-entropy.

E[lat] = fixed layers + sum over blocks of sum_i p_i * lat_i, differentiable in the path logits. In an
architecture step only the two sampled paths of a block are in play, so there the expectation uses their
probabilities renormalised over the pair, q = softmax(alpha_a, alpha_o): its gradient on the pair is
q_a * q_o * (lat_a - lat_o) on alpha_a (and the opposite on alpha_o), so descent always moves probability
toward the faster path of the pair.
mullog: CE * (log E[lat] / log T)^beta, with both latencies in microseconds so that the logarithms stay
positive for any network slower than 1 us; addlin: CE + lambda * (E[lat] - T) / T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from katib_nas.contract.oneshot_settings import SearchConfig
from katib_nas.contract.spec import Architecture

from .gates import PathPair
from .table import LatencyTable, supernet_keys


@dataclass(frozen=True)
class LatencyModel:
    """Latency of a supernet's fixed layers and of every candidate op of every block, in milliseconds."""

    fixed_ms: float
    options_ms: list[list[float]]

    @classmethod
    def from_table(cls, table: LatencyTable, supernet: Architecture) -> "LatencyModel":
        """The supernet's latencies; LatencyTableError listing every entry the table lacks."""
        table.require(supernet_keys(supernet), "the supernet")
        return cls(table.fixed_ms(supernet), table.block_options_ms(supernet))

    def expected_ms(self, probs: list[torch.Tensor]) -> torch.Tensor:
        """E[lat] under the path probabilities (differentiable)."""
        total = torch.tensor(self.fixed_ms, dtype=probs[0].dtype, device=probs[0].device)
        for p, options in zip(probs, self.options_ms):
            total = total + (p * torch.tensor(options, dtype=p.dtype, device=p.device)).sum()
        return total

    def expected_pair_ms(self, alphas: Sequence[torch.Tensor], pairs: Sequence[PathPair]) -> torch.Tensor:
        """E[lat] of an architecture step: per block, the pair's latencies under q = softmax over the pair."""
        total = torch.tensor(self.fixed_ms, dtype=alphas[0].dtype, device=alphas[0].device)
        for alpha, pair, options in zip(alphas, pairs, self.options_ms):
            involved = list(pair.involved)
            q = torch.softmax(alpha[involved], dim=0)
            total = total + (q * torch.tensor([options[i] for i in involved], dtype=q.dtype, device=q.device)).sum()
        return total

    def network_ms(self, choices: list[int]) -> float:
        return self.fixed_ms + sum(options[c] for options, c in zip(self.options_ms, choices))

    def choices_within(self, probabilities: Sequence[Sequence[float]], target_ms: float) -> list[int]:
        """The most probable op of every block, then faster ops until the predicted latency is at most T.

        Each switch is the one that gives up the least log-probability per millisecond saved, so the blocks
        the search was least sure about change first. When even the fastest choices exceed T, the result is
        as fast as the table allows.
        """
        choices = [max(range(len(p)), key=p.__getitem__) for p in probabilities]
        while self.network_ms(choices) > target_ms:
            switch = self._cheapest_switch(probabilities, choices)
            if switch is None:
                break
            block, op = switch
            choices[block] = op
        return choices

    def _cheapest_switch(self, probabilities: Sequence[Sequence[float]], choices: list[int]
                         ) -> tuple[int, int] | None:
        """(block, op) of the faster op with the least log-probability lost per millisecond saved."""
        best: tuple[float, int, int] | None = None
        for block, (probs, options) in enumerate(zip(probabilities, self.options_ms)):
            current = choices[block]
            for op, ms in enumerate(options):
                saved = options[current] - ms
                if saved <= 0:
                    continue
                lost = math.log(max(probs[current], 1e-12)) - math.log(max(probs[op], 1e-12))
                if best is None or lost / saved < best[0]:
                    best = (lost / saved, block, op)
        return None if best is None else (best[1], best[2])


def hardware_loss(cross_entropy: torch.Tensor, expected_ms: torch.Tensor | None, config: SearchConfig
                  ) -> torch.Tensor:
    """The loss of an architecture step; plain cross-entropy when the search is not hardware-aware."""
    if expected_ms is None or not config.hardware_aware:
        return cross_entropy
    if config.loss == "mullog":
        ratio = torch.log(expected_ms * 1000.0) / math.log(config.target * 1000.0)
        return cross_entropy * ratio.clamp_min(1e-6) ** config.beta
    return cross_entropy + config.lambda_ * (expected_ms - config.target) / config.target
