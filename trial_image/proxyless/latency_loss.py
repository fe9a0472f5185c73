"""Hardware-aware loss: expected latency of the supernet and the two ways of adding it to cross-entropy.

E[lat] = fixed layers + sum over blocks of sum_i p_i * lat_i, differentiable in the path logits.
mullog: CE * (log E[lat] / log T)^beta, with both latencies in microseconds so that the logarithms stay
positive for any network slower than 1 us; addlin: CE + lambda * (E[lat] - T) / T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from katib_nas.contract.search_settings import SearchConfig
from katib_nas.contract.spec import Architecture

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

    def network_ms(self, choices: list[int]) -> float:
        return self.fixed_ms + sum(options[c] for options, c in zip(self.options_ms, choices))


def hardware_loss(cross_entropy: torch.Tensor, expected_ms: torch.Tensor | None, config: SearchConfig
                  ) -> torch.Tensor:
    """The loss of an architecture step; plain cross-entropy when the search is not hardware-aware."""
    if expected_ms is None or not config.hardware_aware:
        return cross_entropy
    if config.loss == "mullog":
        ratio = torch.log(expected_ms * 1000.0) / math.log(config.target * 1000.0)
        return cross_entropy * ratio.clamp_min(1e-6) ** config.beta
    return cross_entropy + config.lambda_ * (expected_ms - config.target) / config.target
