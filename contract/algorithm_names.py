"""The algorithms katib-nas serves, by Katib algorithmName: the one list every side names them from.

The suggestion service registers exactly these (suggestion/core/algorithms refuses to import otherwise),
`katib-nas register` and the kustomize component add exactly these to katib-config, and help texts and the
README's table are written from here.
"""

from __future__ import annotations

#: algorithmName -> what the algorithm does, in the order katib-config lists them.
ALGORITHM_NAMES: dict[str, str] = {
    "envelopenet": "EnvelopeNet construction (NAC): prune and grow envelope cells from branch statistics",
    "proxylessnas": "ProxylessNAS path sampling, one-shot (binarized gates) and REINFORCE, latency-aware",
    "nas-random": "uniform sampling over the nasConfig space; the baseline",
}


def in_prose() -> str:
    """The names as a sentence lists them: 'envelopenet, proxylessnas and nas-random'."""
    names = list(ALGORITHM_NAMES)
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
