"""Branch-Stats and Skip-Gates: what the trial prints reads back exactly; anything else is rejected with a reason."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from katib_nas.contract.branch_stats import (
    StatisticsError,
    format_branch_stats,
    format_skip_gates,
    parse_branch_stats,
    parse_skip_gates,
)
from katib_nas.contract.codec import decode
from katib_nas.suggestion.core.algorithms.envelopenet.stats import Statistics, average

ARCH = decode("in8x8x1-cls10-stem8/w12:c1+c3+s3:c3@0/w24s2:c1+s3@0.1")
SIX_DIGITS = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: float(f"{v:.6g}"))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@hypothesis_settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_printed_values_read_back_exactly(data) -> None:
    values = st.one_of(SIX_DIGITS, st.just(math.nan))
    branches = [[data.draw(values) for _ in cell.ops] for cell in ARCH.cells]
    gates = [[data.draw(SIX_DIGITS) for _ in cell.skips] for cell in ARCH.cells]
    read = parse_branch_stats(format_branch_stats(branches), ARCH)
    assert [len(cell) for cell in read] == [len(cell) for cell in branches]
    assert all(same(x, y) for cell, back in zip(branches, read) for x, y in zip(cell, back))
    assert parse_skip_gates(format_skip_gates(gates), ARCH) == tuple(tuple(cell) for cell in gates)


def test_formats_match_the_documented_examples() -> None:
    assert format_branch_stats([[0.41, 1.2, math.nan], [3e-07]]) == "ta/0.41_1.2_nan/3e-07"
    assert format_branch_stats([[0.41, 1.2, math.nan], [3e-07]], "mean-square") == "ms/0.41_1.2_nan/3e-07"
    assert parse_branch_stats("ms/1_2_3/4/5e-3_INF", ARCH, "mean-square")[2][0] == 0.005
    assert format_skip_gates([[], [0.93, -0.12]]) == "g/-/0.93_-0.12"
    assert parse_branch_stats("ta/1_2_3/4/5e-3_INF", ARCH)[2][0] == 0.005
    assert math.isnan(parse_branch_stats("ta/1_2_3/4/5e-3_inf", ARCH)[2][1])


@pytest.mark.parametrize(
    "text, reason",
    [
        ("ta/1_2_3/4", "Branch-Stats lists 2 cells, the architecture has 3"),
        ("ta/1_2_3/4/5/6", "lists 4 cells"),
        ("ta/1_2/4/5_6", "cell 0 has 2 values, the cell has 3 branches"),
        ("ta/1_2_3//5_6", "cell 1: '' is not a number"),
        ("ta/1_2_3/4/5_1e", "cell 2: '1e' is not a number"),
        ("ta/1_2_3/4/5_0x10", "'0x10' is not a number"),
        ("ta/1_2_3/4/5__6", "'' is not a number"),
        ("mean/1_2_3/4/5_6", "must start with ta/"),
        ("1_2_3/4/5_6", "must start with ta/"),
        ("ms/1_2_3/4/5_6", "holds the mean-square statistic, the experiment prunes by taylor"),
    ],
)
def test_malformed_branch_stats_are_rejected_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(StatisticsError) as info:
        parse_branch_stats(text, ARCH)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("g/-/0.5/0.1_0.2_0.3", "cell 2 has 3 gates, the cell has 2 skip inputs"),
        ("g/0.1/0.5/0.1_0.2", "cell 0 has 1 gates, the cell has 0 skip inputs"),
        ("g/-/-/0.1_0.2", "cell 1 has 0 gates"),
        ("g/-/0.5", "lists 2 cells"),
        ("ms/-/0.5/0.1_0.2", "must start with g/"),
        ("g/-/0.5/0.1_y", "'y' is not a number"),
    ],
)
def test_malformed_skip_gates_are_rejected_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(StatisticsError) as info:
        parse_skip_gates(text, ARCH)
    assert reason in str(info.value)


def test_average_is_elementwise_and_ignores_unknown_values() -> None:
    a = Statistics(((1.0, math.nan), (4.0,)), ((), (0.5,)))
    b = Statistics(((3.0, math.nan), (math.nan,)), ((), (-0.1,)))
    mean = average([a, b])
    assert mean.branches[0][0] == 2.0 and math.isnan(mean.branches[0][1]) and mean.branches[1] == (4.0,)
    assert mean.gates == ((), (pytest.approx(0.2),))
    single = average([a])
    assert single.branches[0][0] == 1.0 and single.branches[1] == (4.0,) and single.gates == a.gates
    with pytest.raises(ValueError):
        average([])


def test_a_network_without_skip_inputs_reads_one_empty_gate_list_per_cell() -> None:
    """The construction indexes the gates by cell: a network without skips still has an entry for each."""
    from katib_nas.contract.branch_stats import format_branch_stats
    from katib_nas.suggestion.core.algorithms.envelopenet.stats import read_statistics
    from katib_nas.suggestion.core.experiment import make_trial

    arch = decode("in8x8x1-cls10-stem8/w12:c1+c3/w12:c3")
    trial = make_trial("t", {}, "SUCCEEDED", [("Branch-Stats", format_branch_stats([[1.0, 2.0], [3.0]]))])
    statistics = read_statistics(trial, arch)
    assert statistics.gates == ((), ()) and statistics.branches == ((1.0, 2.0), (3.0,))
