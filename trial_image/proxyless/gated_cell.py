"""The body of a supernet block whose two sampled paths are mixed by binary gates during an architecture step."""

from __future__ import annotations

import torch

from ..cells import ChoiceBody
from ..model import Network
from .gates import PathPair


class BinaryGateBody(ChoiceBody):
    """ChoiceBody plus `gates`: when set, output = g[a] * op_a(x) + g[o] * op_o(x) for the pair (a, o), with
    op_o run without autograd (its gate is 0; only dL/dg_o is needed, which is <dL/dy, op_o(x)>)."""

    gates: torch.Tensor | None = None

    @classmethod
    def adopt(cls, body: ChoiceBody) -> "BinaryGateBody":
        """Turn a built ChoiceBody into a gated one in place: same modules and parameters, nothing copied."""
        body.__class__ = cls
        body.gates = None
        return body  # type: ignore[return-value]

    def use_single(self, path: int) -> None:
        """Run one path as a plain choice (weight steps, evaluation)."""
        self.set_active(path)
        self.gates = None

    def use_pair(self, pair: PathPair) -> torch.Tensor:
        """Run the pair with gate 1 on `pair.active` and 0 on `pair.other`; returns the gate tensor (a leaf)."""
        self.set_active(pair.involved)
        gates = torch.zeros(len(self.alternatives), device=self._device())
        gates[pair.active] = 1.0
        self.gates = gates.requires_grad_(True)
        return self.gates

    def _device(self) -> torch.device:
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gates is None:
            return super().forward(x)
        active, other = self.active
        y = self.gates[active] * self.alternatives[active](x)
        with torch.no_grad():
            unused = self.alternatives[other](x)
        return y + self.gates[other] * unused


def gate_choice_bodies(network: Network) -> list[BinaryGateBody]:
    """The body of every choice cell of a built network, turned into a BinaryGateBody, in network order."""
    return [BinaryGateBody.adopt(body) for body in network.choice_bodies()]
