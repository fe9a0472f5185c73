"""Rebuilding the construction from Katib's trial history alone, and numbering trials so that works.

Every trial gets seed = base * 1_000_000 + phase * 10_000 + index, where
phase is the iteration (0..iterations-1, then `iterations` for the final
training) and index the suggestion's position in the experiment. A trial
belongs to a phase when its seed says so and its architecture and epochs
are exactly that phase's; anything else in the history is ignored.

Iteration k is complete once its `replicas` lowest-indexed usable trials are
known and no lower-indexed trial of k is still running: the set then never
changes, so every later call rebuilds the same network k+1. A trial that
finished without usable statistics, or that Katib left out of the request
(metrics unavailable), counts as a failure of its phase.

Katib leaves metrics-unavailable trials out of the request, so their seeds
(and phases) are unknown. Every reply therefore records, in the algorithm
settings Katib stores and sends back (`phase_starts`), the first suggestion
index of each phase; a missing index is charged to the phase it was
proposed in, never to a later one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from katib_nas.contract.assignments import ARCHITECTURE_ASSIGNMENT
from katib_nas.contract.codec import encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture

from ...experiment import TrialRecord
from .config import EnvelopeNetConfig
from .construct import initial_network, next_network
from .stats import Statistics, StatisticsError, average, read_statistics

SEED_BASE_SPAN = 1_000_000
SEED_PHASE_SPAN = 10_000
#: Suggestions an experiment can hold: an index must fit below SEED_PHASE_SPAN.
MAX_SUGGESTIONS = SEED_PHASE_SPAN


class ConstructionError(InvalidInput):
    """The construction cannot go on: a phase failed more often than max_retries allows."""


@dataclass(frozen=True)
class Failure:
    index: int
    trial: str
    reason: str


@dataclass
class Phase:
    """What the history says about one phase (an iteration, or the final training)."""

    number: int
    architecture: Architecture
    epochs: int
    usable: list[tuple[int, Statistics]] = field(default_factory=list)
    succeeded: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    @property
    def text(self) -> str:
        return encode(self.architecture)


@dataclass(frozen=True)
class Construction:
    """Networks built so far (network k trained in iteration k), the mean objective of every completed
    iteration, and the phase that takes new trials (in the final phase, its network is the result)."""

    networks: tuple[Architecture, ...]
    current: Phase
    final: bool
    next_index: int
    scores: tuple[float | None, ...] = ()

    @property
    def finished(self) -> bool:
        """True once the constructed network has been trained with the final budget at least once."""
        return self.final and bool(self.current.succeeded)


def trial_seed(base: int, phase: int, index: int) -> int:
    """The seed of suggestion `index` in `phase`: readable, unique within the experiment."""
    return base * SEED_BASE_SPAN + phase * SEED_PHASE_SPAN + index


def decode_seed(text: str) -> tuple[int, int, int] | None:
    """(base, phase, index) of a seed assignment, or None when it is not a seed of this scheme."""
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value // SEED_BASE_SPAN, value % SEED_BASE_SPAN // SEED_PHASE_SPAN, value % SEED_PHASE_SPAN


def rebuild(config: EnvelopeNetConfig, history: list[TrialRecord], first_index: int) -> Construction:
    """Replay the construction from the history; the phase returned is the one new trials belong to."""
    ours = _our_trials(config, history)
    next_index = max([first_index] + [index + 1 for index in ours])
    vanished = sorted(set(range(min(first_index, MAX_SUGGESTIONS))) - set(ours))
    starts = parse_phase_starts(config.settings.phase_starts)
    networks = [initial_network(config)]
    scores: list[float | None] = []
    settings = config.settings
    earlier: set[int] = set()
    for number in range(settings.iterations):
        phase = _collect(Phase(number, networks[-1], settings.iteration_epochs), ours, settings.statistic)
        chosen = _completed_set(phase, config.replicas)
        if chosen is None:
            _add_vanished(phase, vanished, earlier, starts)
            return Construction(tuple(networks), phase, False, next_index, tuple(scores))
        earlier.update(index for index, (p, _) in ours.items() if p == number)
        scores.append(_mean_objective([ours[index][1] for index in chosen], config))
        if _out_of_patience(scores, config):
            break
        if number + 1 < settings.iterations or settings.final_network == "last":
            networks.append(next_network(networks[-1], average([dict(phase.usable)[i] for i in chosen]), config,
                                         number))
    result = final_network(networks, scores, config)
    phase = _collect(Phase(settings.iterations, result, settings.final_epochs), ours, settings.statistic)
    if not phase.succeeded:
        _add_vanished(phase, vanished, earlier, starts)
    return Construction(tuple(networks), phase, True, next_index, tuple(scores))


def final_network(networks: list[Architecture], scores: list[float | None], config: EnvelopeNetConfig
                  ) -> Architecture:
    """The network the final training trains: the last one constructed, or (final_network=best) the evaluated
    network with the best mean objective, the earliest on ties; the last evaluated one when none scored."""
    if config.settings.final_network == "last":
        return networks[-1]
    scored = [(score if config.maximize else -score, -k) for k, score in enumerate(scores) if score is not None]
    if not scored:
        return networks[len(scores) - 1]
    return networks[-max(scored)[1]]


def _mean_objective(trials: list[TrialRecord], config: EnvelopeNetConfig) -> float | None:
    values = [value for trial in trials if (value := trial.objective(config.objective_metric)) is not None]
    return sum(values) / len(values) if values else None


def _out_of_patience(scores: list[float | None], config: EnvelopeNetConfig) -> bool:
    """Whether the last `patience` iterations all failed to improve on the best objective before them."""
    patience = config.settings.patience
    if patience == 0 or len(scores) <= patience:
        return False
    sign = 1.0 if config.maximize else -1.0
    before = [sign * score for score in scores[:-patience] if score is not None]
    recent = [sign * score for score in scores[-patience:] if score is not None]
    return bool(before) and all(value <= max(before) for value in recent)


def parse_phase_starts(text: str) -> dict[int, int]:
    """{phase: first suggestion index} from the `phase_starts` state, e.g. '0-0_1-5'; unreadable pairs ignored."""
    starts: dict[int, int] = {}
    for pair in filter(None, text.split("_")):
        phase, _, index = pair.partition("-")
        if phase.isascii() and phase.isdigit() and index.isascii() and index.isdigit():
            starts.setdefault(int(phase), int(index))
    return starts


def record_phase_start(text: str, phase: int, index: int) -> str:
    """The `phase_starts` state with `phase` starting at `index`, unless it is recorded already."""
    starts = parse_phase_starts(text)
    starts.setdefault(phase, index)
    return "_".join(f"{p}-{i}" for p, i in sorted(starts.items()))


def phase_of(index: int, starts: dict[int, int]) -> int | None:
    """The phase a suggestion index was proposed in, from the recorded starts; None when none is recorded."""
    known = [phase for phase, start in starts.items() if start <= index]
    return max(known, key=lambda phase: starts[phase]) if known else None


def check_retries(phase: Phase, max_retries: int, final: bool) -> None:
    """Raise ConstructionError when the phase failed more often than allowed."""
    if len(phase.failures) <= max_retries:
        return
    last = max(phase.failures, key=lambda failure: failure.index)
    what = "the final training" if final else f"iteration {phase.number}"
    raise ConstructionError(
        f"envelopenet: {what} failed {len(phase.failures)} times, more than max_retries={max_retries}; "
        f"last failure: trial {last.trial or '#' + str(last.index)}: {last.reason}")


def _our_trials(config: EnvelopeNetConfig, history: list[TrialRecord]) -> dict[int, tuple[int, TrialRecord]]:
    """index -> (phase, trial) for every trial whose seed carries this experiment's base seed."""
    found: dict[int, tuple[int, TrialRecord]] = {}
    for trial in sorted(history, key=lambda t: t.name):
        decoded = decode_seed(trial.assignments.get("seed", ""))
        if decoded is None:
            continue
        base, phase, index = decoded
        if base == config.settings.seed and phase <= config.settings.iterations and index not in found:
            found[index] = (phase, trial)
    return found


def _collect(phase: Phase, ours: dict[int, tuple[int, TrialRecord]], statistic: str) -> Phase:
    text, epochs = phase.text, str(phase.epochs)
    for index in sorted(ours):
        number, trial = ours[index]
        if number != phase.number or trial.assignments.get(ARCHITECTURE_ASSIGNMENT) != text \
                or trial.assignments.get("epochs") != epochs:
            continue
        if not trial.finished:
            phase.pending.append(index)
        elif not trial.succeeded:
            phase.failures.append(Failure(index, trial.name, f"trial ended {trial.condition}"))
        else:
            phase.succeeded.append(index)
            try:
                phase.usable.append((index, read_statistics(trial, phase.architecture, statistic)))
            except StatisticsError as err:
                phase.failures.append(Failure(index, trial.name, f"succeeded but its statistics are unusable: {err}"))
    return phase


def _completed_set(phase: Phase, replicas: int) -> list[int] | None:
    """The indices of the first `replicas` usable trials, once no lower-indexed trial is running."""
    usable = dict(phase.usable)
    pending = set(phase.pending)
    chosen: list[int] = []
    for index in sorted(usable.keys() | pending):
        if index in pending:
            return None
        chosen.append(index)
        if len(chosen) == replicas:
            return chosen
    return None


def _add_vanished(phase: Phase, vanished: list[int], earlier: set[int], starts: dict[int, int]) -> None:
    """Suggestions missing from the history that were proposed in this phase count as its failures.

    The phase of a missing index comes from the recorded phase starts; without a record (an experiment from
    before they were kept), any index after the previous phases' trials is this phase's.
    """
    start = max(earlier, default=-1)
    for index in vanished:
        proposed_in = phase_of(index, starts)
        mine = proposed_in == phase.number if proposed_in is not None else index > start
        if mine:
            phase.failures.append(Failure(index, "", "missing from Katib's request (metrics unavailable)"))
