"""What every suggestion call goes through, whatever the adapter: pick the algorithm, check the answer."""

from __future__ import annotations

from katib_nas.contract.assignments import unsafe_value_reason
from katib_nas.contract.errors import InvalidInput

from .algorithms import Proposal, get_algorithm
from .experiment import ExperimentInfo, TrialRecord

MAX_REQUEST = 1000


class AlgorithmFault(RuntimeError):
    """An algorithm broke its contract: a bug to report, not a user error."""


def validate(experiment: ExperimentInfo) -> None:
    """Everything GetSuggestions would fail on for this experiment, checked up front."""
    get_algorithm(experiment.algorithm).validate(experiment)


def suggest(experiment: ExperimentInfo, history: list[TrialRecord], count: int, first_index: int) -> Proposal:
    """Exactly `count` proposals whose values are safe to substitute into a trial template."""
    if not 0 <= count <= MAX_REQUEST:
        raise InvalidInput(f"current_request_number={count} must be in [0, {MAX_REQUEST}]")
    algorithm = get_algorithm(experiment.algorithm)
    if count == 0:
        algorithm.validate(experiment)
        return Proposal([])
    proposal = algorithm.suggest(experiment, history, count, max(first_index, 0))
    _check(proposal, count, algorithm.assignment_names(experiment), experiment.algorithm)
    return proposal


def _check(proposal: Proposal, count: int, names: tuple[str, ...], algorithm: str) -> None:
    if len(proposal.assignments) != count:
        raise AlgorithmFault(f"{algorithm} returned {len(proposal.assignments)} assignments for {count} requested")
    for assignment in proposal.assignments:
        if set(assignment) != set(names):
            raise AlgorithmFault(f"{algorithm} returned assignments {sorted(assignment)}, expected {sorted(names)}")
        for name, value in assignment.items():
            reason = unsafe_value_reason(value)
            if reason:
                raise AlgorithmFault(f"{algorithm} returned an unusable value for {name} ({reason}): {value[:80]!r}")
