"""Registry of search algorithms by Katib algorithmName."""

from __future__ import annotations

from katib_nas.contract.algorithm_names import ALGORITHM_NAMES
from katib_nas.contract.errors import InvalidInput

from .base import Algorithm, Proposal
from .envelopenet import EnvelopeNet
from .nas_random import NasRandom
from .proxylessnas import ProxylessNas

ALGORITHMS: dict[str, type] = {algorithm.name: algorithm for algorithm in (EnvelopeNet, ProxylessNas, NasRandom)}
if list(ALGORITHMS) != list(ALGORITHM_NAMES):
    raise ImportError(f"the registered algorithms {list(ALGORITHMS)} are not contract/algorithm_names.py's "
                      f"{list(ALGORITHM_NAMES)}: add a new algorithm to both")


def get_algorithm(name: str) -> Algorithm:
    """The algorithm registered under `name`; InvalidInput naming the known ones otherwise."""
    if name in ALGORITHMS:
        return ALGORITHMS[name]()
    raise InvalidInput(f"unknown algorithm {name!r}; available: {', '.join(sorted(ALGORITHMS))}")


__all__ = ["ALGORITHMS", "Algorithm", "Proposal", "get_algorithm"]
