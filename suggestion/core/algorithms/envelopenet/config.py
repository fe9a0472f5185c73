"""EnvelopeNet settings and the construction plan they resolve to, checked against the nasConfig.

The nasConfig gives the input shape, the number of classes, the number of
stages (graphConfig.numLayers) and the branch set of an envelope cell (every
distinct operation, ignoring stride and num_filter: reductions come from the
stages, widths from the stage). Settings give cells per stage, widths and
the construction budget. Everything wrong is reported before any trial runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from katib_nas.contract.branch_stats import (
    BRANCH_STATS_METRIC,
    DEFAULT_STATISTIC,
    SKIP_GATES_METRIC,
    STATISTIC_PREFIXES,
)
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.metric_format import VALIDATION_ACCURACY
from katib_nas.contract.spec import MAX_WIDTH, Op, max_reductions

from ...experiment import ExperimentInfo
from ...settings import SettingsError, parse_settings, read_int, setting
from ...space import SearchSpace, parse_nas_config

ALGORITHM = "envelopenet"
MAX_ITERATIONS = 50
MAX_CELLS_PER_STAGE = 24
#: Without a max_macs setting, constructions may grow to this multiple of the initial network's cost.
DEFAULT_BUDGET_RATIO = 3.0
DEFAULT_WIDTH = 32
#: Op kinds whose output width can be set per branch; pooling, identity and zero keep their input width.
BRANCH_KINDS = ("conv", "dilconv", "sepconv", "mbconv")


@dataclass(frozen=True)
class EnvelopeNetSettings:
    """The algorithmSettings of an envelopenet Experiment, as Katib passes them (all text)."""

    iterations: int = setting(5, "construction iterations; each trains the current network for iteration_epochs",
                              low=1, high=MAX_ITERATIONS)
    initial_cells: str = setting("2", "envelope cells per stage at the start: one number, or one per stage "
                                      "separated by commas")
    max_cells: str = setting("7", "cells a stage may grow to: one number, or one per stage separated by commas")
    grow_stages: str = setting("all", "stages that are pruned and grown: all, none, or stage indices "
                                      "separated by commas (0 is the first stage)")
    max_filter_prune: int = setting(6, "most branches pruned from one stage per iteration; never more than a "
                                       "third of the stage's branches", low=0, high=1000)
    skip: bool = setting(True, "gated skip connections: a new cell takes every earlier cell, an existing "
                               "cell keeps the half of its skips with the largest learned gates")
    statistic: str = setting(DEFAULT_STATISTIC, "branch statistic pruned by: taylor (first-order loss change of "
                                                "removing the branch) or mean-square (mean squared activation); "
                                                "the trials report it with --branch-statistic",
                             choices=tuple(STATISTIC_PREFIXES))
    worst_case: bool = setting(False, "ablation: prune the branches with the highest statistic instead")
    random_prune: bool = setting(False, "control: prune random branches and keep random skips, same schedule")
    max_macs: float = setting(0.0, "multiply-accumulate budget in millions per image: a stage grows only while "
                                   f"the network stays within it; 0 means {DEFAULT_BUDGET_RATIO:g} times the initial "
                                   "network's", low=0.0, high=1e6)
    final_network: str = setting("best", "network the final training trains: best (the iteration's network whose "
                                         "trials scored the best objective) or last (the last one constructed, "
                                         "never evaluated at the truncated budget)", choices=("best", "last"))
    patience: int = setting(0, "stop constructing after this many iterations in a row without a better objective "
                               "than the best so far; 0 runs every iteration", low=0, high=MAX_ITERATIONS)
    iteration_epochs: int = setting(1, "epochs of every construction trial (the truncated budget)",
                                    low=1, high=1000)
    final_epochs: int = setting(10, "epochs of the training of the constructed network", low=1, high=1000)
    replicas: int = setting(0, "successful trials per iteration whose statistics are averaged, each with its "
                               "own seed; 0 means parallelTrialCount", low=0, high=64)
    max_retries: int = setting(2, "failed trials tolerated per iteration (and for the final training) before "
                                  "the construction stops with an error", low=0, high=100)
    width: int = setting(0, "width of the first stage, doubled by every later stage; 0 means the smallest "
                            f"num_filter in the nasConfig, or {DEFAULT_WIDTH} without one", low=0, high=MAX_WIDTH)
    stem_width: int = setting(0, "width of the 3x3 stem convolution; 0 means the first stage's width",
                              low=0, high=MAX_WIDTH)
    seed: int = setting(0, "base of every trial seed", low=0, high=2000)
    phase_starts: str = setting("", "written back by the algorithm: the first suggestion index of every phase, "
                                    "as phase-index pairs joined by _", state=True)


@dataclass(frozen=True)
class EnvelopeNetConfig:
    """The resolved plan: everything the construction needs, one entry per stage where it varies."""

    settings: EnvelopeNetSettings
    input_shape: tuple[int, int, int]
    num_classes: int
    stem: int
    branch_ops: tuple[Op, ...]
    stage_widths: tuple[int, ...]
    initial_cells: tuple[int, ...]
    max_cells: tuple[int, ...]
    growing: tuple[bool, ...]
    replicas: int
    objective_metric: str = VALIDATION_ACCURACY
    maximize: bool = True


def resolve(experiment: ExperimentInfo) -> EnvelopeNetConfig:
    """Parse settings and nasConfig into a plan; InvalidInput names the first problem found."""
    settings = parse_settings(EnvelopeNetSettings, experiment.settings, ALGORITHM)
    space = parse_nas_config(experiment.nas_config)
    stages = space.num_layers
    _check_stage_count(stages, space.input_shape)
    widths = _stage_widths(settings, space, stages)
    ops = _branch_ops(space)
    if len(ops) > widths[0]:
        raise InvalidInput(f"{len(ops)} envelope branches do not fit in the first stage's width {widths[0]}; "
                           "raise the width setting or list fewer operations")
    initial = _per_stage(settings.initial_cells, "initial_cells", stages)
    maximum = _per_stage(settings.max_cells, "max_cells", stages)
    for s, (first, most) in enumerate(zip(initial, maximum)):
        if most < first:
            raise SettingsError(f"setting max_cells: stage {s} may grow to {most} cells, fewer than its "
                                f"initial_cells {first}")
    _check_metrics(experiment, settings)
    if settings.worst_case and settings.random_prune:
        raise SettingsError("settings worst_case and random_prune are two different controls: set at most one")
    return EnvelopeNetConfig(
        settings=settings,
        input_shape=space.input_shape,
        num_classes=space.num_classes,
        stem=settings.stem_width or widths[0],
        branch_ops=ops,
        stage_widths=widths,
        initial_cells=initial,
        max_cells=maximum,
        growing=_growing(settings.grow_stages, stages),
        replicas=settings.replicas or max(experiment.parallel_trial_count, 1),
        objective_metric=experiment.objective_metric,
        maximize=experiment.maximize,
    )


def _check_stage_count(stages: int, input_shape: tuple[int, int, int]) -> None:
    reductions = max_reductions(input_shape)
    if stages - 1 > reductions:
        raise InvalidInput(f"graphConfig.numLayers={stages} stages need {stages - 1} halvings, but inputSizes "
                           f"{list(input_shape)} allow only {reductions}")


def _stage_widths(settings: EnvelopeNetSettings, space: SearchSpace, stages: int) -> tuple[int, ...]:
    first = settings.width or min(space.widths(), default=DEFAULT_WIDTH)
    widths = tuple(first * 2 ** s for s in range(stages))
    if widths[-1] > MAX_WIDTH:
        raise InvalidInput(f"stage width doubles per stage: {stages} stages from width {first} reach "
                           f"{widths[-1]}, above {MAX_WIDTH}")
    return widths


def _branch_ops(space: SearchSpace) -> tuple[Op, ...]:
    ops = []
    for candidate in space.candidates:
        if candidate.op.kind not in BRANCH_KINDS:
            raise InvalidInput(f"nasConfig operation {candidate.source} cannot be an envelope branch (its output "
                               "keeps the input width); envelopenet accepts convolution, separable_convolution, "
                               "dilated_convolution and mbconv")
        if candidate.op not in ops:
            ops.append(candidate.op)
    return tuple(ops)


def _per_stage(text: str, name: str, stages: int) -> tuple[int, ...]:
    parsed = [read_int(part) for part in text.split(",")]
    values = [value for value in parsed if value is not None]
    if len(values) != len(parsed):
        raise SettingsError(f"setting {name}={text!r} must be one integer or {stages} integers separated by commas")
    if len(values) == 1:
        values *= stages
    if len(values) != stages:
        raise SettingsError(f"setting {name}={text!r} lists {len(values)} stages; graphConfig.numLayers "
                            f"gives {stages}")
    for value in values:
        if not 1 <= value <= MAX_CELLS_PER_STAGE:
            raise SettingsError(f"setting {name}={text!r}: cells per stage must be in [1, {MAX_CELLS_PER_STAGE}]")
    return tuple(values)


def _growing(text: str, stages: int) -> tuple[bool, ...]:
    raw = text.strip().lower()
    if raw == "all":
        return (True,) * stages
    if raw == "none":
        return (False,) * stages
    chosen = [read_int(part) for part in raw.split(",")]
    if not all(index is not None and 0 <= index < stages for index in chosen):
        raise SettingsError(f"setting grow_stages={text!r} must be all, none, or stage indices in "
                            f"[0, {stages - 1}] separated by commas")
    repeated = sorted({index for index in chosen if chosen.count(index) > 1})
    if repeated:
        raise SettingsError(f"setting grow_stages={text!r} lists stage {repeated[0]} more than once")
    return tuple(s in chosen for s in range(stages))


def _check_metrics(experiment: ExperimentInfo, settings: EnvelopeNetSettings) -> None:
    needed = [BRANCH_STATS_METRIC] + ([SKIP_GATES_METRIC] if settings.skip else [])
    missing = [name for name in needed if name not in experiment.additional_metrics]
    if missing:
        raise InvalidInput(f"envelopenet reads {' and '.join(needed)} from every trial: add {', '.join(missing)} "
                           "to objective.additionalMetricNames and collect them with the metricsFormat regexes of "
                           "examples/envelopenet-fashion-mnist.yaml")
