"""nas-random: uniform sampling over the nasConfig space, the baseline every claim is measured against.

A network has graphConfig.numLayers layers. Each layer picks one candidate
uniformly among those the current resolution allows (a stride-2 candidate
is dropped once the feature map cannot be halved again). A candidate that
changes the width or has stride 2 opens a new stage; otherwise the layer
joins the current stage. Each layer also takes every earlier layer except
its direct predecessor as a gated skip input with probability
`skip_probability`.

Suggestion k of an experiment is drawn from a generator seeded by
(experiment name, seed setting, k), so a restarted server proposes exactly
what it would have; a draw that repeats an architecture already in the
history, or whose text is over the size limit for an assignment, is
redrawn from the same stream. ValidateAlgorithmSettings draws a few networks
first and refuses a space whose typical network does not fit that limit, so
such an Experiment fails when it is created, not at its first trial.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from katib_nas.contract.assignments import ARCHITECTURE_ASSIGNMENT, MAX_VALUE_BYTES
from katib_nas.contract.codec import encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import MAX_WIDTH, Architecture, Cell, Stage, max_reductions

from ..experiment import ExperimentInfo, TrialRecord
from ..settings import parse_settings, setting
from ..space import Candidate, SearchSpace, parse_nas_config
from .base import MAX_SEED_SETTING, Proposal, seeded_rng

#: Draws of a proposal, the first included, while it repeats a tried architecture; bounded so that a degenerate
#: space (every draw alike) costs at most this many draws per proposal.
MAX_DRAWS = 8
#: Networks ValidateAlgorithmSettings draws to see whether the space's architecture texts fit the assignment limit.
#: Their sizes lie close together (within about 10% for a given numLayers and skip_probability), so a few draws tell.
SIZE_PROBES = 16


@dataclass(frozen=True)
class NasRandomSettings:
    seed: int = setting(0, "seed mixed with the experiment name into every draw", low=0, high=MAX_SEED_SETTING)
    stem_width: int = setting(16, "width of the 3x3 stem convolution", low=1, high=MAX_WIDTH)
    default_width: int = setting(32, "layer width when no candidate sets num_filter", low=1,
                                high=MAX_WIDTH)
    skip_probability: float = setting(0.3, "chance that a layer takes each earlier layer as skip input",
                                      low=0.0, high=1.0)


class NasRandom:
    name = "nas-random"
    settings_class = NasRandomSettings

    def assignment_names(self, experiment: ExperimentInfo) -> tuple[str, ...]:
        return (ARCHITECTURE_ASSIGNMENT,)

    def validate(self, experiment: ExperimentInfo) -> tuple[NasRandomSettings, SearchSpace]:
        """The settings and space, refused when the space cannot be sampled or its networks do not fit Katib."""
        settings, space = _parsed(experiment, self.name)
        _check_fits(experiment.name, space, settings)
        return settings, space

    def suggest(self, experiment: ExperimentInfo, history: list[TrialRecord], count: int,
                first_index: int) -> Proposal:
        settings, space = _parsed(experiment, self.name)
        seen = {trial.assignments.get(ARCHITECTURE_ASSIGNMENT, "") for trial in history}
        assignments = []
        for k in range(first_index, first_index + count):
            rng = seeded_rng(experiment.name, settings.seed, k)
            text = _draw_new(space, rng, settings, seen)
            seen.add(text)
            assignments.append({ARCHITECTURE_ASSIGNMENT: text})
        return Proposal(assignments)


def sample_architecture(space: SearchSpace, rng: np.random.Generator, stem_width: int = NasRandomSettings.stem_width,
                        skip_probability: float = NasRandomSettings.skip_probability,
                        default_width: int = NasRandomSettings.default_width) -> Architecture:
    """One uniform draw from the space, always buildable."""
    height, width, _ = space.input_shape
    reductions_left = max_reductions(space.input_shape)
    stages: list[Stage] = []
    current_width = default_width
    for layer in range(space.num_layers):
        allowed = [c for c in space.candidates if c.stride == 1 or reductions_left > 0]
        candidate: Candidate = allowed[int(rng.integers(len(allowed)))]
        skips = tuple(int(j) for j in np.flatnonzero(rng.random(max(layer - 1, 0)) < skip_probability))
        cell = Cell(ops=(candidate.op,), skips=skips)
        new_width = candidate.width or current_width
        if not stages or candidate.stride == 2 or new_width != current_width:
            stages.append(Stage(new_width, candidate.stride, (cell,)))
            reductions_left -= candidate.stride == 2
        else:
            last = stages[-1]
            stages[-1] = Stage(last.width, last.stride, last.cells + (cell,))
        current_width = new_width
    return Architecture(space.input_shape, space.num_classes, stem_width, tuple(stages)).validate()


def _draw_text(space: SearchSpace, rng: np.random.Generator, settings: NasRandomSettings) -> str:
    return encode(sample_architecture(space, rng, settings.stem_width, settings.skip_probability,
                                      settings.default_width))


def _draw_new(space: SearchSpace, rng: np.random.Generator, settings: NasRandomSettings, seen: set[str]) -> str:
    """The first draw that is new and fits the assignment limit; after MAX_DRAWS, the last one that fits (a
    repeat), or an oversize one, which the engine reports as bad input."""
    text, fitting = "", None
    for _ in range(MAX_DRAWS):
        text = _draw_text(space, rng, settings)
        if len(text.encode()) <= MAX_VALUE_BYTES:
            fitting = text
            if text not in seen:
                break
    return fitting if fitting is not None else text


def _parsed(experiment: ExperimentInfo, name: str) -> tuple[NasRandomSettings, SearchSpace]:
    settings = parse_settings(NasRandomSettings, experiment.settings, name)
    space = parse_nas_config(experiment.nas_config)
    _check_feasible(space)
    return settings, space


def _check_fits(experiment_name: str, space: SearchSpace, settings: NasRandomSettings) -> None:
    """InvalidInput when half or more of SIZE_PROBES draws are over the limit for an assignment: every
    proposal would then be redrawn, mostly in vain. Fewer only cost redraws."""
    rng = seeded_rng(experiment_name, settings.seed, "size-probe")
    sizes = sorted(len(_draw_text(space, rng, settings).encode()) for _ in range(SIZE_PROBES))
    over = sum(size > MAX_VALUE_BYTES for size in sizes)
    if 2 * over >= SIZE_PROBES:
        raise InvalidInput(
            f"nas-random: {over} of {SIZE_PROBES} networks drawn from this space have architecture text over "
            f"the {MAX_VALUE_BYTES}-byte limit for an assignment ({sizes[0]}-{sizes[-1]} bytes): lower "
            f"graphConfig.numLayers={space.num_layers} or skip_probability={settings.skip_probability:g}")


def _check_feasible(space: SearchSpace) -> None:
    if all(c.stride == 2 for c in space.candidates) and space.num_layers > max_reductions(space.input_shape):
        raise InvalidInput(
            f"every operation has stride 2, but inputSizes {list(space.input_shape)} can be halved only "
            f"{max_reductions(space.input_shape)} times, fewer than numLayers={space.num_layers}"
        )
