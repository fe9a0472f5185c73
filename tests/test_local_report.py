"""The report's choice of the best network."""

from __future__ import annotations

import pytest

from katib_nas.contract.codec import decode, encode
from katib_nas.runner.metrics_collector import MetricSummary
from katib_nas.runner.report import best_architecture
from katib_nas.runner.store import TrialRow


def test_report_prefers_the_network_a_search_trial_reports_over_its_supernet() -> None:
    supernet = "in8x8x1-cls10-stem8/w8:mb3e3_mb5e6_zero@r:mb3e3_zero@r"
    derived = "in8x8x1-cls10-stem8/w8:mb5e6@r:zero@r"
    trial = TrialRow("t", 0, "Succeeded", {"architecture": supernet, "search": "epochs-1"}, {}, 0.0,
                     observation={"Validation-Accuracy": MetricSummary("Validation-Accuracy", "0.5", "0.5", "0.5"),
                                  "Best-Architecture": MetricSummary("Best-Architecture", latest=derived)})
    assert encode(best_architecture(trial)) == derived
    plain = TrialRow("u", 1, "Succeeded", {"architecture": derived}, {}, 0.0)
    assert encode(best_architecture(plain)) == derived


def test_diagram_keeps_the_longest_skip_arc_inside_the_figure() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    from matplotlib.patches import FancyArrowPatch

    from katib_nas.runner.diagram import SKIP_COLOR, figure

    cells = ":".join(["c3"] * 11) + ":c3@0"
    fig = figure(decode(f"in28x28x1-cls10-stem8/w8:{cells}"))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes_box = fig.axes[0].get_window_extent(renderer)
    arcs = [p for p in fig.axes[0].patches
            if isinstance(p, FancyArrowPatch) and to_hex(p.get_edgecolor()) == SKIP_COLOR]
    assert len(arcs) == 1
    arc_box = arcs[0].get_window_extent(renderer)
    plt.close(fig)
    assert arc_box.x1 <= axes_box.x1 and arc_box.x0 >= axes_box.x0


def test_skip_lines_join_the_cells_they_connect_and_cross_no_box() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from katib_nas.runner.diagram import SKIP_COLOR, figure, layout

    arch = decode("in28x28x1-cls10-stem8/w8:c3+s5:c3:c3+c5+s3@0/w16s2:c3@1.2")
    fig = figure(arch)
    ax = fig.axes[0]
    level = {row.cell: i for i, row in enumerate(layout(arch)) if row.cell is not None}
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    lines = [p for p in ax.patches if isinstance(p, FancyArrowPatch) and to_hex(p.get_edgecolor()) == SKIP_COLOR]
    expected = sorted((level[source], level[target]) for target, cell in enumerate(arch.cells) for source in cell.skips)
    assert len(lines) == len(expected) == 3

    def first_box(row: int) -> FancyBboxPatch:
        in_row = [b for b in boxes if abs(b.get_y() + b.get_height() / 2 + row) < 1e-6]
        return min(in_row, key=lambda b: b.get_x())

    joined = []
    for line in lines:
        start, bend_a, bend_b, end = line.get_path().vertices[:4]
        rows = (round(-start[1]), round(-end[1]))
        for point, row in zip((start, end), rows):
            box = first_box(row)
            assert point[0] == pytest.approx(box.get_x(), abs=0.05) and box.get_y() < point[1] < box.get_y() + box.get_height()
        lane = bend_a[0]
        assert lane == bend_b[0] and lane < min(b.get_x() for b in boxes)  # the vertical run passes left of all
        joined.append(rows)
    assert sorted(joined) == expected
    plt.close(fig)
