"""Algorithms that break the contract one way each, registered in the algorithm registry for a test only.

Each answers `suggest` with what its FAULTS entry builds (or raises); the engine must refuse every answer as an
algorithm bug (AlgorithmFault, or the algorithm's own exception), and the service must report it as INTERNAL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

from katib_nas.contract.assignments import ARCHITECTURE_ASSIGNMENT
from katib_nas.suggestion.core.algorithms import ALGORITHMS, Proposal
from katib_nas.suggestion.core.experiment import ExperimentInfo, TrialRecord

GOOD_TEXT = "in28x28x1-cls10-stem16/w32:c3"


class AlgorithmBug(ValueError):
    """What a faulty algorithm raises: neither InvalidInput nor AlgorithmFault."""


def _raise(message: str) -> Callable[[int], list[dict[str, str]]]:
    def answer(count: int) -> list[dict[str, str]]:
        raise AlgorithmBug(message)
    return answer


@dataclass(frozen=True)
class Fault:
    """What the algorithm answers for `count`, and the start of the message the engine refuses it with."""

    answer: Callable[[int], list[dict[str, str]]]
    message: str


#: Asked for 2 proposals, each fault's algorithm (registered as fault-<key>) answers this way.
FAULTS = {
    "count": Fault(lambda count: [{ARCHITECTURE_ASSIGNMENT: GOOD_TEXT}] * (count + 1),
                   "fault-count returned 3 assignments for 2 requested"),
    "short": Fault(lambda count: [{ARCHITECTURE_ASSIGNMENT: GOOD_TEXT}] * (count - 1),
                   "fault-short returned 1 assignments for 2 requested"),
    "extra": Fault(lambda count: [{ARCHITECTURE_ASSIGNMENT: GOOD_TEXT, "extra": "1"}] * count,
                   "fault-extra returned assignments ['architecture', 'extra'], expected ['architecture']"),
    "names": Fault(lambda count: [{"arch": GOOD_TEXT}] * count,
                   "fault-names returned assignments ['arch'], expected ['architecture']"),
    "unsafe": Fault(lambda count: [{ARCHITECTURE_ASSIGNMENT: GOOD_TEXT + " $(id)"}] * count,
                    "fault-unsafe returned an unusable value for architecture (it holds whitespace"),
    "undecodable": Fault(lambda count: [{ARCHITECTURE_ASSIGNMENT: GOOD_TEXT + ":q9"}] * count,
                         "fault-undecodable returned architecture text the trial cannot decode"),
    "raises": Fault(_raise("index 7 out of range"), "index 7 out of range"),
    "raises-long": Fault(_raise("é" * 20_000), "éé"),
}


class FaultyAlgorithm:
    """Valid for any experiment; declares the `architecture` assignment and answers as its fault says."""

    settings_class = object

    def __init__(self, name: str, fault: Fault):
        self.name = name
        self.fault = fault

    def assignment_names(self, experiment: ExperimentInfo) -> tuple[str, ...]:
        return (ARCHITECTURE_ASSIGNMENT,)

    def validate(self, experiment: ExperimentInfo) -> None:
        if experiment.settings.get("validate") == "raise":
            raise AlgorithmBug("validate broke")

    def suggest(self, experiment: ExperimentInfo, history: list[TrialRecord], count: int,
                first_index: int) -> Proposal:
        return Proposal(self.fault.answer(count))


def register_faults(patch: pytest.MonkeyPatch) -> None:
    """Every FAULTS entry registered as algorithm fault-<key> until `patch` is undone."""
    for key, fault in FAULTS.items():
        name = f"fault-{key}"
        patch.setitem(ALGORITHMS, name, lambda name=name, fault=fault: FaultyAlgorithm(name, fault))
