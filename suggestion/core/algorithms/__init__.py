"""Registry of search algorithms by Katib algorithmName."""

from __future__ import annotations

from katib_nas.contract.errors import InvalidInput

from .base import Algorithm, Proposal
from .envelopenet import EnvelopeNet
from .nas_random import NasRandom
from .proxylessnas import ProxylessNas

ALGORITHMS: dict[str, type] = {
    NasRandom.name: NasRandom,
    ProxylessNas.name: ProxylessNas,
    EnvelopeNet.name: EnvelopeNet,
}


def get_algorithm(name: str) -> Algorithm:
    """The algorithm registered under `name`; InvalidInput naming the known ones otherwise."""
    if name in ALGORITHMS:
        return ALGORITHMS[name]()
    raise InvalidInput(f"unknown algorithm {name!r}; available: {', '.join(sorted(ALGORITHMS))}")


__all__ = ["ALGORITHMS", "Algorithm", "Proposal", "get_algorithm"]
