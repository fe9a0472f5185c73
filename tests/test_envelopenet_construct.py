"""The EnvelopeNet construction step: initial network, pruning limits, growth, skip pruning by gates."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from katib_nas.contract.codec import decode, encode
from katib_nas.contract.cost import architecture_macs
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Op
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.envelopenet import EnvelopeNet
from katib_nas.suggestion.core.algorithms.envelopenet.config import resolve
from katib_nas.suggestion.core.algorithms.envelopenet.construct import (
    initial_network,
    keep_strongest_skips,
    macs_budget,
    next_network,
    prune_stage,
)
from katib_nas.suggestion.core.algorithms.envelopenet.stats import Statistics

from .support.envelopenet import SMALL_NAS_CONFIG, experiment

C1, C3, C5, S3 = Op("conv", 1), Op("conv", 3), Op("conv", 5), Op("sepconv", 3)


def config(**settings: str):
    return resolve(experiment(settings))


def stats_for(arch, value=lambda cell, branch, op: 1.0, gate=lambda cell, k, source: 1.0) -> Statistics:
    return Statistics(
        tuple(tuple(value(c, b, op) for b, op in enumerate(cell.ops)) for c, cell in enumerate(arch.cells)),
        tuple(tuple(gate(c, k, s) for k, s in enumerate(cell.skips)) for c, cell in enumerate(arch.cells)))


def test_initial_network_has_full_envelope_cells_doubling_widths_and_dense_skips() -> None:
    cfg = config(initial_cells="2,3", width="12")
    arch = initial_network(cfg)
    assert [s.width for s in arch.stages] == [12, 24]
    assert [s.stride for s in arch.stages] == [1, 2]
    assert [len(s.cells) for s in arch.stages] == [2, 3]
    assert all(cell.ops == (C1, C3, S3) and not cell.choice for cell in arch.cells)
    assert [cell.skips for cell in arch.cells] == [(), (), (0,), (0, 1), (0, 1, 2)]
    assert arch.stem == 12 and arch.input_shape == (8, 8, 1) and arch.num_classes == 10


def test_initial_network_without_skips_has_none() -> None:
    arch = initial_network(config(skip="false"))
    assert all(cell.skips == () for cell in arch.cells)


def test_prune_takes_the_weakest_within_a_third_and_max_filter_prune() -> None:
    cells = [(C1, C3, C5, S3), (C1, C3, C5, S3), (C1, C3, C5, S3)]  # 12 branches: a third is 4
    values = [(5.0, 0.1, 3.0, 0.2), (0.3, 4.0, 0.4, 6.0), (7.0, 8.0, 0.5, 9.0)]
    assert prune_stage(cells, values, 6, False) == [(C1, C5), (C3, S3), (C1, C3, C5, S3)]
    assert prune_stage(cells, values, 2, False) == [(C1, C5), (C1, C3, C5, S3), (C1, C3, C5, S3)]
    assert prune_stage(cells, values, 0, False) == cells


def test_worst_case_prunes_the_strongest_instead() -> None:
    cells = [(C1, C3, C5, S3), (C1, C3, C5, S3), (C1, C3, C5, S3)]
    values = [(5.0, 0.1, 3.0, 0.2), (0.3, 4.0, 0.4, 6.0), (7.0, 8.0, 0.5, 9.0)]
    assert prune_stage(cells, values, 6, True) == [(C1, C3, C5, S3), (C1, C3, C5), (C5,)]


def test_prune_never_removes_a_cells_last_branch() -> None:
    cells = [(C1,), (C1, C3), (C1, C3, C5, S3)]  # 7 branches: a third is 2
    values = [(0.0,), (0.1, 0.2), (9.0, 9.0, 9.0, 9.0)]
    assert prune_stage(cells, values, 6, False) == [(C1,), (C3,), (C3, C5, S3)]


def test_unknown_statistics_rank_weakest_and_ties_go_by_position() -> None:
    cells = [(C1, C3, C5), (C1, C3, C5)]
    assert prune_stage(cells, [(1.0, math.nan, 1.0), (0.5, 1.0, 1.0)], 6, False) == [(C1, C5), (C3, C5)]
    assert prune_stage(cells, [(2.0, 2.0, 2.0), (2.0, 2.0, 2.0)], 6, False) == [(C5,), (C1, C3, C5)]


def test_step_grows_only_growing_stages_below_their_maximum() -> None:
    cfg = config(initial_cells="2,1", max_cells="3,4", grow_stages="1", width="12")
    arch = initial_network(cfg)
    for expected_second in (2, 3, 4, 4):
        arch = next_network(arch, stats_for(arch), cfg)
        assert [len(s.cells) for s in arch.stages] == [2, expected_second]
        assert arch.stages[0].cells[0].ops == (C1, C3, S3)  # a frozen stage is never pruned


def test_step_prunes_the_lowest_branch_and_appends_a_full_cell() -> None:
    cfg = config(initial_cells="2", max_cells="3", width="12", max_filter_prune="1")
    arch = initial_network(cfg)
    weak = {(0, 2), (3, 1)}  # stage 0 cell 0 branch s3; stage 1 cell 1 branch c3
    grown = next_network(arch, stats_for(arch, lambda c, b, op: 0.01 if (c, b) in weak else 1.0), cfg)
    assert [cell.ops for cell in grown.stages[0].cells] == [(C1, C3), (C1, C3, S3), (C1, C3, S3)]
    assert [cell.ops for cell in grown.stages[1].cells] == [(C1, C3, S3), (C1, S3), (C1, C3, S3)]
    assert decode(encode(grown)) == grown


def test_skips_keep_the_larger_half_by_signed_gate_value_and_new_cells_connect_densely() -> None:
    assert keep_strongest_skips((0, 1, 2, 3), (0.1, -0.9, 0.5, 0.2)) == [2, 3]
    assert keep_strongest_skips((0, 1, 2), (0.1, -0.9, 0.5)) == [0, 2]
    assert keep_strongest_skips((4,), (0.0,)) == [4]
    assert keep_strongest_skips((0, 1), (math.nan, 0.3)) == [1]
    assert keep_strongest_skips((0, 1), (0.5, -0.5)) == [0]

    cfg = config(initial_cells="2,3", max_cells="3,4", width="12")
    arch = initial_network(cfg)  # skips: (), (), (0,), (0, 1), (0, 1, 2)
    gates = {(3, 0): 0.1, (3, 1): 2.0, (4, 0): 0.9, (4, 1): 0.1, (4, 2): -1.5}
    grown = next_network(arch, stats_for(arch, gate=lambda c, k, s: gates.get((c, k), 1.0)), cfg)
    # old 0,1 -> 0,1; appended 2; old 2,3,4 -> 3,4,5; appended 6
    assert [cell.skips for cell in grown.cells] == [(), (), (0,), (0,), (1, 2), (0, 1, 2), (0, 1, 2, 3, 4)]


def fits_another_cell(arch, grown, cfg, stage: int) -> bool:
    """Whether stage `stage` of `grown` could take one more full envelope cell within the budget."""
    from katib_nas.contract.spec import Architecture, Cell, Stage

    stages = list(grown.stages)
    extra = Cell(cfg.branch_ops, skips=tuple(range(sum(len(s.cells) for s in stages[:stage + 1]) - 1))
                 if cfg.settings.skip else ())
    stages[stage] = Stage(stages[stage].width, stages[stage].stride, stages[stage].cells + (extra,))
    # Skip indices of later cells move by one; only the cost matters here, so drop the later stages' skips.
    later = [Stage(s.width, s.stride, tuple(Cell(c.ops) for c in s.cells)) for s in stages[stage + 1:]]
    candidate = Architecture(grown.input_shape, grown.num_classes, grown.stem, tuple(stages[:stage + 1] + later))
    return architecture_macs(candidate) <= macs_budget(cfg)


@hypothesis_settings(max_examples=60, deadline=None)
@given(worst_case=st.booleans(), max_prune=st.integers(0, 8), steps=st.integers(1, 4),
       branch_values=st.lists(st.one_of(st.floats(0, 100), st.just(math.nan)), min_size=1, max_size=40),
       gate_values=st.lists(st.floats(-5, 5), min_size=1, max_size=40))
@example(worst_case=True, max_prune=2, steps=3, branch_values=[math.nan], gate_values=[0.0])
def test_any_statistics_give_a_valid_network_within_the_limits(worst_case: bool, max_prune: int, steps: int,
                                                             branch_values: list[float],
                                                             gate_values: list[float]) -> None:
    """Whatever the statistics: a valid network within the budget, pruning within its limits, and a stage
    below its maximum grows by exactly one full cell unless that cell would not fit the budget."""
    cfg = config(initial_cells="1,2", max_cells="4,3", width="12", max_filter_prune=str(max_prune),
                 worst_case=str(worst_case).lower())
    arch = initial_network(cfg)
    branch_draws, gate_draws = itertools.cycle(branch_values), itertools.cycle(gate_values)
    for _ in range(steps):
        stats = Statistics(tuple(tuple(next(branch_draws) for _ in cell.ops) for cell in arch.cells),
                           tuple(tuple(next(gate_draws) for _ in cell.skips) for cell in arch.cells))
        grown = next_network(arch, stats, cfg)
        assert decode(encode(grown)) == grown
        assert architecture_macs(grown) <= macs_budget(cfg)
        for s, (before, after) in enumerate(zip(arch.stages, grown.stages)):
            branches_before = sum(len(c.ops) for c in before.cells)
            if len(before.cells) < cfg.max_cells[s]:
                added = len(after.cells) - len(before.cells)
                assert added in (0, 1)
                kept = after.cells[:-1] if added else after.cells
                removed = branches_before - sum(len(c.ops) for c in kept)
                assert 0 <= removed <= min(max_prune, branches_before // 3)
                if added:
                    assert after.cells[-1].ops == cfg.branch_ops
                else:
                    assert not fits_another_cell(arch, grown, cfg, s)
            else:
                assert [c.ops for c in after.cells] == [c.ops for c in before.cells]
        arch = grown


def op_cost(cell, b, op) -> float:
    """A statistic that ranks the cheapest branches weakest: pruning them widens the expensive ones."""
    return float(op.kernel ** 2 if op.kind == "conv" else op.kernel)


@pytest.mark.parametrize("mode", [{}, {"worst_case": "true"}, {"random_prune": "true"}, {"skip": "false"}])
def test_the_budget_holds_after_every_step_under_adversarial_statistics(mode: dict[str, str]) -> None:
    """With the budget at the initial network's cost, pruning the cheap branches of split cells (which hands
    their channels to expensive ones) must be refused, and no stage can grow: every network stays within it."""
    free = config(initial_cells="2,2", max_cells="6,6", width="12", **mode)
    start = initial_network(free)
    capped = config(initial_cells="2,2", max_cells="6,6", width="12", max_macs=f"{architecture_macs(start) / 1e6:.6f}",
                    **mode)
    budget = macs_budget(capped)
    assert architecture_macs(start) <= budget
    for gates in (lambda c, k, s: 1.0, lambda c, k, s: float(-s)):
        network = start
        for iteration in range(5):
            network = next_network(network, stats_for(network, op_cost, gates), capped, iteration)
            assert architecture_macs(network) <= budget, f"{encode(network)} over the budget after step {iteration}"


THREE_STAGES = {**SMALL_NAS_CONFIG, "graphConfig": {**SMALL_NAS_CONFIG["graphConfig"], "numLayers": 3}}


@pytest.mark.parametrize("initial_cells", ["1,2,3", "3,2,1", "2,1,2"])
def test_three_stages_of_different_sizes_keep_every_stage_within_the_budget(initial_cells: str) -> None:
    """Every pruning and growth decision is checked on the whole network, each stage in its place: with the
    budget at the initial network's cost, a step under adversarial statistics keeps all three stages, grows
    each by at most one cell, and stays within the budget."""
    start = initial_network(resolve(experiment({"initial_cells": initial_cells, "max_cells": "6"},
                                               nas_config=THREE_STAGES)))
    capped = resolve(experiment({"initial_cells": initial_cells, "max_cells": "6",
                                 "max_macs": repr(architecture_macs(start) / 1e6)}, nas_config=THREE_STAGES))
    network = start
    for iteration in range(3):
        grown = next_network(network, stats_for(network, op_cost), capped, iteration)
        assert [s.width for s in grown.stages] == [s.width for s in start.stages]
        assert all(len(after.cells) - len(before.cells) in (0, 1)
                   for after, before in zip(grown.stages, network.stages))
        assert architecture_macs(grown) <= macs_budget(capped), f"{encode(grown)} over the budget"
        network = grown


def test_pruning_alone_can_raise_the_cost_so_the_budget_check_matters() -> None:
    """The premise of the test above: pruning the cheapest branches, with no growth, costs more."""
    cfg = config(initial_cells="2,2", max_cells="2,2", width="12")
    start = initial_network(cfg)
    cells = [cell.ops for cell in start.stages[0].cells]
    pruned = prune_stage(cells, [tuple(op_cost(0, b, op) for b, op in enumerate(ops)) for ops in cells], 6, False)
    from katib_nas.contract.spec import Architecture, Cell, Stage

    stage = Stage(start.stages[0].width, 1, tuple(Cell(ops, skips=cell.skips)
                                                     for ops, cell in zip(pruned, start.stages[0].cells)))
    cheaper_branches_gone = Architecture(start.input_shape, start.num_classes, start.stem,
                                         (stage,) + start.stages[1:])
    assert architecture_macs(cheaper_branches_gone) > architecture_macs(start)


def test_random_prune_returns_the_network_it_checked_against_the_budget(monkeypatch) -> None:
    """The random draws (pruned branches, kept skips) are made once: the network whose cost decided the
    growth is the network returned."""
    from katib_nas.suggestion.core.algorithms.envelopenet import construct as envelopenet_construct

    checked: list[str] = []
    real = envelopenet_construct.architecture_macs

    def recording(arch):
        checked.append(encode(arch))
        return real(arch)

    monkeypatch.setattr(envelopenet_construct, "architecture_macs", recording)
    cfg = config(initial_cells="3,3", max_cells="6,6", width="12", random_prune="true")
    network = initial_network(cfg)
    for iteration in range(3):
        checked.clear()
        grown = next_network(network, stats_for(network), cfg, iteration)
        assert len(grown.cells) > len(network.cells)
        assert encode(grown) in checked
        network = grown


def test_growth_stops_at_the_multiply_accumulate_budget() -> None:
    free = config(initial_cells="1,1", max_cells="4,4", width="12")
    start = initial_network(free)
    one_more = next_network(start, stats_for(start), free)
    budget = (architecture_macs(one_more) - 1) / 1e6  # just below the network with both stages grown
    capped = config(initial_cells="1,1", max_cells="4,4", width="12", max_macs=f"{budget:.6f}")
    grown = next_network(start, stats_for(start), capped)
    assert architecture_macs(grown) <= budget * 1e6 < architecture_macs(one_more)
    assert [len(s.cells) for s in grown.stages] == [2, 1]  # the first stage still fit, the second did not
    network = start
    for _ in range(4):
        network = next_network(network, stats_for(network), capped)
        assert architecture_macs(network) <= budget * 1e6


def test_a_network_costing_exactly_the_budget_is_within_it() -> None:
    free = config(initial_cells="1,1", max_cells="4,4", width="12")
    start = initial_network(free)
    one_more = next_network(start, stats_for(start), free)
    exact = repr(architecture_macs(one_more) / 1e6)
    assert float(exact) * 1e6 == architecture_macs(one_more)  # the setting's text is the cost to the unit
    capped = config(initial_cells="1,1", max_cells="4,4", width="12", max_macs=exact)
    assert next_network(start, stats_for(start), capped) == one_more


def test_an_initial_network_over_the_budget_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"max_macs=0.001 .* below the initial network's"):
        engine.validate(experiment({"max_macs": "0.001"}))


def test_random_prune_is_seeded_differs_from_the_statistic_and_keeps_the_limits() -> None:
    cfg = config(initial_cells="3,3", max_cells="5,5", width="12", random_prune="true")
    arch = initial_network(cfg)
    stats = stats_for(arch, lambda c, b, op: float(b))  # the statistic would prune every first branch
    by_statistic = next_network(arch, stats, config(initial_cells="3,3", max_cells="5,5", width="12"))
    draws = {encode(next_network(arch, stats, cfg, iteration)) for iteration in range(6)}
    assert encode(next_network(arch, stats, cfg, 2)) == encode(next_network(arch, stats, cfg, 2))
    assert len(draws) > 1 and encode(by_statistic) not in draws
    for text in draws:
        network = decode(text)
        for before, after in zip(arch.stages, network.stages):
            pruned = sum(len(c.ops) for c in before.cells) - sum(len(c.ops) for c in after.cells[:-1])
            assert 0 <= pruned <= sum(len(c.ops) for c in before.cells) // 3


def test_an_initial_network_costing_exactly_max_macs_is_accepted() -> None:
    """The budget is inclusive at validation too: max_macs equal to the initial network's cost is enough."""
    cost = architecture_macs(initial_network(config()))
    exact = repr(cost / 1e6)
    assert float(exact) * 1e6 == cost  # the setting's text is the cost to the unit
    assert macs_budget(EnvelopeNet().validate(experiment({"max_macs": exact}))) == cost


def test_worst_case_and_random_prune_cannot_both_be_on() -> None:
    with pytest.raises(InvalidInput, match="worst_case and random_prune"):
        engine.validate(experiment({"worst_case": "true", "random_prune": "true"}))
