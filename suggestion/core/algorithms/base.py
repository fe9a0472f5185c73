"""The contract every search algorithm fulfils; no gRPC, no torch."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..experiment import ExperimentInfo, TrialRecord

#: The random part the service appends to a proposal's trial name, as Katib's own trial names have one: Katib's
#: metrics database keys metrics by trial name alone, across namespaces.
NAME_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
NAME_TOKEN_LENGTH = 5
#: The largest `seed` setting of the algorithms whose seed is free (nas-random, proxylessnas): a signed 32-bit int.
MAX_SEED_SETTING = 2**31 - 1


@dataclass(frozen=True)
class Proposal:
    """What an algorithm answers: one assignment dict per requested trial, plus state to store."""

    assignments: list[dict[str, str]]
    state: dict[str, str] = field(default_factory=dict)
    labels: list[dict[str, str]] = field(default_factory=list)
    #: The trial names to ask Katib for, one per assignment, before the random part the service adds (none:
    #: Katib names the trials).
    trial_names: list[str] = field(default_factory=list)


class Algorithm(Protocol):
    """A stateless search algorithm: same experiment and history in, same proposals out."""

    name: str
    settings_class: type

    def assignment_names(self, experiment: ExperimentInfo) -> tuple[str, ...]:
        """Names every trial of `experiment` is assigned; its trialTemplate must reference each."""

    def validate(self, experiment: ExperimentInfo) -> Any:
        """Check settings and nasConfig; raise InvalidInput naming what is wrong."""

    def suggest(self, experiment: ExperimentInfo, history: list[TrialRecord], count: int,
                first_index: int) -> Proposal:
        """Propose `count` trials; `first_index` is how many suggestions were made before."""


def seeded_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded from a stable hash of the given parts (never Python's hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))
