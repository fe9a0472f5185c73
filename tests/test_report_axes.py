"""The report's Pareto front and plot axes: which trials the front keeps, and where extreme values are drawn."""

from __future__ import annotations

import math

import pytest

from katib_nas.runner.plot_scale import AxisScale, signed_log, tick_label
from katib_nas.runner.report import Point, pareto_front

#: (trial, latency ms, objective): B and C share a latency, D is slower than C and worse, G is the slowest.
POINTS = [Point("A", 1.0, 0.80), Point("B", 2.0, 0.85), Point("C", 2.0, 0.90), Point("D", 3.0, 0.88),
          Point("E", 4.0, 0.95), Point("F", 0.5, 0.70), Point("G", 5.0, 0.60)]


@pytest.mark.parametrize("maximize,front", [
    (True, ["F", "A", "C", "E"]),  # accuracy: each kept point is better than every faster one
    (False, ["F", "G"]),  # a loss: only a point below every faster point's loss joins the front
])
def test_the_front_keeps_the_points_no_faster_point_matches(maximize: bool, front: list[str]) -> None:
    assert [p.trial for p in pareto_front(POINTS, maximize)] == front


def test_a_tie_in_objective_at_a_higher_latency_is_not_on_the_front() -> None:
    assert [p.trial for p in pareto_front([Point("slow", 2.0, 0.9), Point("fast", 1.0, 0.9)], True)] == ["fast"]


def test_ordinary_values_keep_a_linear_axis() -> None:
    scale = AxisScale.for_values([0.5, 12.0, -3.0])
    assert not scale.signed_log
    assert scale.apply([0.5, 12.0, -3.0]) == [0.5, 12.0, -3.0]


def test_values_near_float64s_limit_are_drawn_finite_and_in_order() -> None:
    values = [-1e308, -2.0, 0.0, 0.5, 1e308]
    scale = AxisScale.for_values(values)
    assert scale.signed_log
    positions = scale.apply(values)
    assert all(math.isfinite(p) for p in positions)
    assert positions == sorted(positions) and positions[2] == 0.0
    assert tick_label(positions[-1]) == "10^308" and tick_label(positions[0]) == "-10^308"
    assert tick_label(signed_log(0.5)) == "0.5" and tick_label(signed_log(-2.0)) == "-2"
