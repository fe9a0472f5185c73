"""The report's choice of the best network."""

from __future__ import annotations

from katib_nas.suggestion.core.codec import decode, encode
from katib_nas.suggestion.local.metrics import MetricSummary
from katib_nas.suggestion.local.report import best_architecture
from katib_nas.suggestion.local.store import TrialRow


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

    from katib_nas.suggestion.local.diagram import SKIP_COLOR, figure

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
