"""envelopenet: EnvelopeNet construction (NAC, Kamath et al. 2018) as a stateless Katib algorithm.

The search starts from stages of envelope cells (every branch of the
nasConfig in parallel, concatenated). Iteration k trains network k for the
truncated budget with --branch-stats; from every branch's statistic (Taylor by
default, see the statistic setting) and the learned skip gates network k+1 is built: see
construct.py. After `iterations` iterations (or earlier, with
`patience`) the network of the best-scoring iteration (or the last one
built, with final_network=last) is trained with the final budget.

Katib asks for trials whenever slots are free. Every free slot gets a trial
of the current phase with its own seed: while an iteration waits for its
statistics, extra slots train further replicas of it (they replace failed
replicas, or are spare); once the construction is complete, every further
trial trains the constructed network with the final budget and a new seed.
The whole state is rebuilt from the request on every call (see
schedule.py), so a restarted server answers exactly the same.
"""

from __future__ import annotations

from katib_nas.contract.assignments import ARCHITECTURE_ASSIGNMENT, MAX_VALUE_BYTES
from katib_nas.contract.codec import encode
from katib_nas.contract.cost import architecture_macs
from katib_nas.contract.errors import InvalidInput

from ...experiment import ExperimentInfo, TrialRecord
from ..base import Proposal
from .config import ALGORITHM, EnvelopeNetConfig, EnvelopeNetSettings, resolve
from .construct import initial_network, largest_network, within_budget
from .schedule import MAX_SUGGESTIONS, Construction, check_retries, rebuild, record_phase_start, trial_seed

PHASE_LABEL = "katib-nas-envelopenet-phase"


class EnvelopeNet:
    """The Algorithm protocol for envelopenet: validation up front, proposals replayed from the history."""

    name = ALGORITHM
    settings_class = EnvelopeNetSettings

    def assignment_names(self, experiment: ExperimentInfo) -> tuple[str, ...]:
        return (ARCHITECTURE_ASSIGNMENT, "epochs", "seed")

    def validate(self, experiment: ExperimentInfo) -> EnvelopeNetConfig:
        """The resolved plan; InvalidInput for bad settings, nasConfig, metrics or networks too large."""
        if experiment.early_stopping:
            raise InvalidInput(f"envelopenet cannot run with early stopping ({experiment.early_stopping}): it stops "
                               "trials before they report their branch statistics, and each stopped trial counts as "
                               "a failure of its iteration; remove spec.earlyStopping")
        config = resolve(experiment)
        start = initial_network(config)  # raises when the initial network cannot be built
        if not within_budget(start, config):
            raise InvalidInput(f"setting max_macs={config.settings.max_macs:g} (millions) is below the initial "
                               f"network's {architecture_macs(start) / 1e6:.1f} M multiply-accumulates; raise it, or start "
                               "with fewer cells or a smaller width")
        longest = len(encode(largest_network(config)))
        if longest > MAX_VALUE_BYTES:
            raise InvalidInput(f"networks of up to {sum(config.max_cells)} cells would take up to {longest} "
                               f"characters of architecture text, above the limit of {MAX_VALUE_BYTES}; lower "
                               "max_cells, use fewer stages or operations, or set skip=false")
        return config

    def suggest(self, experiment: ExperimentInfo, history: list[TrialRecord], count: int,
                first_index: int) -> Proposal:
        """`count` trials of the current phase; ConstructionError once a phase failed too often."""
        config = self.validate(experiment)
        construction = rebuild(config, history, first_index)
        phase = construction.current
        if not construction.finished:
            check_retries(phase, config.settings.max_retries, construction.final)
        start = construction.next_index
        if start + count > MAX_SUGGESTIONS:
            raise InvalidInput(f"envelopenet numbers at most {MAX_SUGGESTIONS} trials per experiment; "
                               f"this request would reach {start + count}")
        text, epochs = encode(phase.architecture), str(phase.epochs)
        label = "final" if construction.final else str(phase.number)
        assignments = [{ARCHITECTURE_ASSIGNMENT: text, "epochs": epochs,
                        "seed": str(trial_seed(config.settings.seed, phase.number, start + j))}
                       for j in range(count)]
        state = {"phase_starts": record_phase_start(config.settings.phase_starts, phase.number, start)}
        return Proposal(assignments, state=state, labels=[{PHASE_LABEL: label} for _ in range(count)])

    def construction(self, experiment: ExperimentInfo, history: list[TrialRecord],
                     first_index: int = 0) -> Construction:
        """Where the construction stands for this history: the networks so far and the current phase."""
        return rebuild(self.validate(experiment), history, first_index)
