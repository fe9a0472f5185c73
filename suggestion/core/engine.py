"""What every suggestion call goes through, whatever the adapter: pick the algorithm, check the answer.

Every value a reply carries is checked before it is sent: safe to paste into a
trial template, within the size limit, and an `architecture` value decoded
by the shared codec, so a trial can never receive text its decoder refuses.
A value over the size limit comes from the experiment's search space (too
many layers or skips for the text to fit) and is reported as bad input; an
unsafe or undecodable value is an algorithm bug.
"""

from __future__ import annotations

from katib_nas.contract.assignments import ARCHITECTURE_ASSIGNMENT, MAX_VALUE_BYTES, unsafe_value_reason
from katib_nas.contract.codec import decode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.kubernetes_names import is_dns1123_label

from .algorithms import Proposal, get_algorithm
from .algorithms.base import NAME_TOKEN_LENGTH
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
    _check_trial_names(proposal.trial_names, count, algorithm)
    decoded: set[str] = set()
    for assignment in proposal.assignments:
        if set(assignment) != set(names):
            raise AlgorithmFault(f"{algorithm} returned assignments {sorted(assignment)}, expected {sorted(names)}")
        for name, value in assignment.items():
            _check_value(name, value, algorithm)
        text = assignment.get(ARCHITECTURE_ASSIGNMENT)
        if text is not None and text not in decoded:
            _check_decodes(text, algorithm)
            decoded.add(text)


def _check_trial_names(trial_names: list[str], count: int, algorithm: str) -> None:
    """None, or one distinct name per assignment that stays a DNS-1123 label (a Trial's and its Job's name) with
    the service's random part."""
    if not trial_names:
        return
    if len(trial_names) != count or len(set(trial_names)) != count:
        raise AlgorithmFault(f"{algorithm} returned {len(set(trial_names))} distinct trial names for {count} trials")
    for name in trial_names:
        if not is_dns1123_label(f"{name}-{'x' * NAME_TOKEN_LENGTH}"):
            raise AlgorithmFault(f"{algorithm} returned a trial name that is no Kubernetes name: {name[:80]!r}")


def _check_value(name: str, value: str, algorithm: str) -> None:
    size = len(value.encode())
    if size > MAX_VALUE_BYTES:
        raise InvalidInput(f"{algorithm} drew a value for {name} of {size} bytes, over the {MAX_VALUE_BYTES}-byte "
                           f"limit for an assignment: the search space allows networks too large to write down; "
                           f"lower graphConfig.numLayers or the number of skip connections")
    reason = unsafe_value_reason(value)
    if reason:
        raise AlgorithmFault(f"{algorithm} returned an unusable value for {name} ({reason}): {value[:80]!r}")


def _check_decodes(text: str, algorithm: str) -> None:
    try:
        decode(text)
    except InvalidInput as err:
        raise AlgorithmFault(f"{algorithm} returned architecture text the trial cannot decode ({err}): "
                             f"{text[:80]!r}") from None
