"""The EnvelopeNet construction step: initial network, branch pruning, cell growth and skip pruning.

One step turns network k and the statistics of its truncated training into
network k+1. In every stage still growing (construction on for the stage,
fewer cells than its maximum) it prunes the branches with the lowest
statistic (the highest under worst_case, random ones under random_prune): at
most max_filter_prune and at most a third of the stage's branches, never a
cell's last branch, weakest first, ties by position, and only while the
network stays within the multiply-accumulate budget (max_macs): removing a
branch of a split cell widens the others, which can cost more. It then
appends a full envelope cell to the stage, stage by stage, as long as the
network stays within the budget. With skips on, a new cell
takes every earlier cell except its predecessor; an existing cell keeps the
larger half (rounded up) of its skip inputs by signed learned gate value
(random ones under random_prune), plus every new cell before it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from katib_nas.contract.cost import architecture_macs
from katib_nas.contract.spec import Architecture, Cell, Op, Stage

from ..base import seeded_rng
from .config import DEFAULT_BUDGET_RATIO, EnvelopeNetConfig
from .stats import Statistics

PRUNE_FRACTION_DENOMINATOR = 3


def initial_network(config: EnvelopeNetConfig) -> Architecture:
    """Stages of full envelope cells; the first stage keeps the stem's resolution, later ones halve it."""
    return _envelope_network(config, config.initial_cells)


def largest_network(config: EnvelopeNetConfig) -> Architecture:
    """An upper bound on every network of the run: all stages at max_cells, full cells, dense skips."""
    return _envelope_network(config, config.max_cells)


def next_network(arch: Architecture, stats: Statistics, config: EnvelopeNetConfig,
                 iteration: int = 0) -> Architecture:
    """Network k+1 from network k (trained in iteration k) and the (averaged) statistics of its training.

    Every change is checked against the multiply-accumulate budget on the network it produces: a branch is
    pruned only if the network stays within it (pruning a split cell's branch widens the others, which can
    cost more), and a stage grows only if the network with the new cell does. The random draws of
    random_prune are made once, so the network checked is the network returned.
    """
    rng = seeded_rng("envelopenet-random-prune", config.settings.seed, iteration) \
        if config.settings.random_prune else None
    kept = _kept_skips(arch, stats, rng) if config.settings.skip else {}
    budget = macs_budget(config)
    stage_ops: list[list[tuple[Op, ...]]] = [[cell.ops for cell in stage.cells] for stage in arch.stages]
    grown = [False] * len(arch.stages)

    def fits(candidate_ops: list[list[tuple[Op, ...]]], candidate_grown: Sequence[bool]) -> bool:
        return architecture_macs(_assemble(arch, config, candidate_ops, candidate_grown, kept)) <= budget

    flat = 0
    for s, stage in enumerate(arch.stages):
        count = len(stage.cells)
        if growing(config, s, count):
            def accept(ops: list[tuple[Op, ...]], s: int = s) -> bool:
                return fits(stage_ops[:s] + [ops] + stage_ops[s + 1:], grown)

            stage_ops[s] = prune_stage(stage_ops[s], list(stats.branches[flat:flat + count]),
                                       config.settings.max_filter_prune, config.settings.worst_case, rng, accept)
        flat += count
    for s, stage in enumerate(arch.stages):
        if growing(config, s, len(stage.cells)):
            trial = grown[:s] + [True] + grown[s + 1:]
            if fits(stage_ops, trial):
                grown = trial
    return _assemble(arch, config, stage_ops, grown, kept)


def within_budget(arch: Architecture, config: EnvelopeNetConfig) -> bool:
    """Whether the network's multiply-accumulates stay within the construction's budget."""
    return architecture_macs(arch) <= macs_budget(config)


def macs_budget(config: EnvelopeNetConfig) -> float:
    """max_macs in multiply-accumulates, or DEFAULT_BUDGET_RATIO times the initial network's without it."""
    if config.settings.max_macs > 0:
        return config.settings.max_macs * 1e6
    return DEFAULT_BUDGET_RATIO * architecture_macs(initial_network(config))


def growing(config: EnvelopeNetConfig, stage: int, cells: int) -> bool:
    """Whether a stage with this many cells is pruned and grown in the next step."""
    return config.growing[stage] and cells < config.max_cells[stage]


def prune_stage(cells: list[tuple[Op, ...]], values: list[tuple[float, ...]], max_prune: int,
                worst_case: bool, rng: np.random.Generator | None = None,
                accept: Callable[[list[tuple[Op, ...]]], bool] = lambda ops: True) -> list[tuple[Op, ...]]:
    """The stage's cells with its weakest branches removed (strongest under worst_case, random ones with rng).

    Candidates are taken in rank order; one is pruned only if `accept` takes the stage's cells with it
    removed (and the ones before it), else the next candidate is tried."""
    total = sum(len(ops) for ops in cells)
    limit = min(max_prune, total // PRUNE_FRACTION_DENOMINATOR)
    positions = [(c, b) for c, ops in enumerate(cells) for b in range(len(ops))]
    if rng is not None:
        ranked = [positions[i] for i in rng.permutation(len(positions))]
    else:
        strength = {(c, b): _strength(values[c][b]) for c, b in positions}
        ranked = sorted(positions, key=lambda cb: (-strength[cb] if worst_case else strength[cb], cb))
    remaining = [len(ops) for ops in cells]
    pruned: set[tuple[int, int]] = set()
    for c, b in ranked:
        if len(pruned) >= limit:
            break
        if remaining[c] > 1 and accept(_without(cells, pruned | {(c, b)})):
            pruned.add((c, b))
            remaining[c] -= 1
    return _without(cells, pruned)


def _without(cells: list[tuple[Op, ...]], pruned: set[tuple[int, int]]) -> list[tuple[Op, ...]]:
    return [tuple(op for b, op in enumerate(ops) if (c, b) not in pruned) for c, ops in enumerate(cells)]


def keep_strongest_skips(skips: tuple[int, ...], gates: tuple[float, ...],
                         rng: np.random.Generator | None = None) -> list[int]:
    """The larger half (rounded up) of the skip inputs by signed gate value (a random half with rng); ties keep
    the earlier source."""
    keep = len(skips) - len(skips) // 2
    if rng is not None:
        return sorted(skips[i] for i in rng.permutation(len(skips))[:keep])
    ranked = sorted(zip(skips, gates), key=lambda pair: (-_signed(pair[1]), pair[0]))
    return sorted(source for source, _ in ranked[:keep])


def _assemble(arch: Architecture, config: EnvelopeNetConfig, stage_ops: Sequence[list[tuple[Op, ...]]],
              grown: Sequence[bool], kept: dict[int, list[int]]) -> Architecture:
    """Network k+1 from the pruned cells of every stage, a full cell appended where `grown`, and its skips."""
    origins: list[int | None] = []  # flat index in `arch` of each new cell, None for an appended cell
    flat, all_ops = 0, []
    for stage, ops, grow in zip(arch.stages, stage_ops, grown):
        ops = list(ops) + ([config.branch_ops] if grow else [])
        origins.extend(range(flat, flat + len(stage.cells)))
        origins.extend([None] * (len(ops) - len(stage.cells)))
        all_ops.append(ops)
        flat += len(stage.cells)
    skips = _next_skips(origins, kept) if config.settings.skip else [()] * len(origins)
    stages, position = [], 0
    for stage, ops in zip(arch.stages, all_ops):
        cells = tuple(Cell(cell_ops, skips=skips[position + i]) for i, cell_ops in enumerate(ops))
        stages.append(Stage(stage.width, stage.stride, cells))
        position += len(ops)
    return Architecture(arch.input_shape, arch.num_classes, arch.stem, tuple(stages)).validate()


def _kept_skips(arch: Architecture, stats: Statistics, rng: np.random.Generator | None) -> dict[int, list[int]]:
    """Cell index in `arch` -> the skip sources it keeps (drawn once per step under random_prune)."""
    return {index: keep_strongest_skips(cell.skips, stats.gates[index], rng)
            for index, cell in enumerate(arch.cells)}


def _next_skips(origins: list[int | None], kept: dict[int, list[int]]) -> list[tuple[int, ...]]:
    new_index = {old: new for new, old in enumerate(origins) if old is not None}
    appended = [new for new, old in enumerate(origins) if old is None]
    result = []
    for position, old in enumerate(origins):
        if old is None:
            sources = set(range(position - 1))
        else:
            sources = {new_index[source] for source in kept[old]} | {a for a in appended if a < position}
        result.append(tuple(sorted(s for s in sources if s < position - 1)))
    return result


def _envelope_network(config: EnvelopeNetConfig, cells_per_stage: Sequence[int]) -> Architecture:
    stages = []
    for s, (width, cells) in enumerate(zip(config.stage_widths, cells_per_stage)):
        stages.append(Stage(width, 1 if s == 0 else 2, tuple(Cell(config.branch_ops) for _ in range(cells))))
    arch = Architecture(config.input_shape, config.num_classes, config.stem, tuple(stages))
    return _with_dense_skips(arch) if config.settings.skip else arch.validate()


def _with_dense_skips(arch: Architecture) -> Architecture:
    stages, position = [], 0
    for stage in arch.stages:
        cells = []
        for cell in stage.cells:
            cells.append(Cell(cell.ops, skips=tuple(range(position - 1))))
            position += 1
        stages.append(Stage(stage.width, stage.stride, tuple(cells)))
    return Architecture(arch.input_shape, arch.num_classes, arch.stem, tuple(stages)).validate()


def _strength(value: float) -> float:
    """A branch's statistic for ranking; an unknown (non-finite) one ranks as the weakest."""
    return value if math.isfinite(value) else -math.inf


def _signed(gate: float) -> float:
    """A gate's value for ranking; an unknown (non-finite) one ranks last."""
    return gate if math.isfinite(gate) else -math.inf
