"""Draw an architecture as boxes, top to bottom: input, stem, each stage's widener and cells, head.

A cell's branches sit side by side (alternatives of a choice cell are drawn
dashed); residual connections and gated skip inputs are noted on the right
of the cell. Every skip input is drawn on the left as a line of its own: out
of the source cell's first box, down a lane left of every box, into the
target cell's first box; longer skips take outer lanes, so lines nest
instead of crossing boxes. Matplotlib only (Agg), no graphviz.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from katib_nas.contract.spec import Architecture, Op

COLORS = {"conv": "#8ecae6", "dilconv": "#7fb7d9", "sepconv": "#a8dadc", "dwconv": "#b7e4c7", "mbconv": "#ffd6a5",
          "maxpool": "#e5e5e5", "avgpool": "#e5e5e5", "identity": "#f1faee", "zero": "#ffffff"}
FIXED = "#d8d8f0"
SKIP_COLOR = "#c1121f"
ROW_HEIGHT = 1.0
BOX_HEIGHT = 0.6
BOX_WIDTH = 1.5
#: Skip lines: distance of the innermost lane from the widest row's boxes, and between neighbouring lanes.
SKIP_MARGIN = 0.3
SKIP_LANE = 0.12


@dataclass(frozen=True)
class Row:
    """One horizontal level of the drawing."""

    label: str
    boxes: tuple[tuple[str, str], ...]  # (text, color)
    dashed: bool = False
    note: str = ""
    cell: int | None = None


def op_label(op: Op) -> str:
    if op.kind == "identity":
        return "identity"
    if op.kind == "zero":
        return "zero"
    if op.kind == "mbconv":
        return f"mbconv {op.kernel}x{op.kernel} e{op.mult}"
    names = {"conv": "conv", "dilconv": "dil conv", "sepconv": "sep conv", "dwconv": "dw conv",
             "maxpool": "max pool", "avgpool": "avg pool"}
    mult = f" m{op.mult}" if op.kind in ("sepconv", "dwconv") and op.mult != 1 else ""
    return f"{names[op.kind]} {op.kernel}x{op.kernel}{mult}"


def layout(arch: Architecture) -> list[Row]:
    """The rows to draw for an architecture."""
    height, width, channels = arch.input_shape
    rows = [Row("input", ((f"{height}x{width}x{channels}", FIXED),)),
            Row("stem", ((f"conv 3x3 -> {arch.stem}", FIXED),))]
    current_width, index = arch.stem, 0
    for s, (stage, (h, w)) in enumerate(zip(arch.stages, arch.spatial_sizes())):
        widener = []
        if stage.width != current_width:
            widener.append((f"conv 1x1 -> {stage.width}", FIXED))
        if stage.stride == 2:
            widener.append(("max pool 2x2 /2", FIXED))
        if widener:
            rows.append(Row(f"stage {s}", tuple(widener), note=f"{h}x{w}x{stage.width}"))
        current_width = stage.width
        for cell in stage.cells:
            boxes = tuple((op_label(op), COLORS.get(op.kind, "#ffffff")) for op in cell.ops)
            notes = (["+ residual"] if cell.residual else []) + \
                    ([f"+ skips from {', '.join(map(str, cell.skips))}"] if cell.skips else [])
            kind = "one of" if cell.choice else ("concat" if len(cell.ops) > 1 else "")
            rows.append(Row(f"cell {index}", boxes, cell.choice, " ".join(([kind] if kind else []) + notes), index))
            index += 1
    rows.append(Row("head", ((f"avg pool + linear -> {arch.num_classes}", FIXED),)))
    return rows


def draw(arch: Architecture, path: Path, title: str = "") -> Path:
    """Write the drawing to `path` (the suffix picks SVG or PNG)."""
    import matplotlib.pyplot as plt

    fig = figure(arch, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def skip_lanes(arch: Architecture) -> list[tuple[int, int]]:
    """Every (source, target) skip, innermost lane first: shorter skips run closer to the boxes."""
    pairs = [(source, target) for target, cell in enumerate(arch.cells) for source in cell.skips]
    return sorted(pairs, key=lambda pair: (pair[1] - pair[0], pair[0]))


def skip_reach(arch: Architecture) -> float:
    """How far left of the widest row's boxes the outermost skip lane runs."""
    lanes = len(skip_lanes(arch))
    return SKIP_MARGIN + lanes * SKIP_LANE if lanes else 0.0


def figure(arch: Architecture, title: str = "") -> Any:
    """The drawing as a matplotlib Figure (Agg), wide enough for the longest skip arc."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    rows = layout(arch)
    widest = max(len(row.boxes) for row in rows)
    reach = skip_reach(arch)
    fig_width = max(7.0, widest * (BOX_WIDTH + 0.2) + 8.0) + 2 * reach
    fig, ax = plt.subplots(figsize=(fig_width, 0.75 * len(rows) + 1.0))
    anchors: dict[int, tuple[float, float]] = {}
    for level, row in enumerate(rows):
        y = -level * ROW_HEIGHT
        total = len(row.boxes) * (BOX_WIDTH + 0.2) - 0.2
        if row.cell is not None:
            anchors[row.cell] = (-total / 2, y)
        x = -total / 2
        for text, color in row.boxes:
            ax.add_patch(FancyBboxPatch((x, y - BOX_HEIGHT / 2), BOX_WIDTH, BOX_HEIGHT, boxstyle="round,pad=0.02",
                                        facecolor=color, edgecolor="#333333", linestyle="--" if row.dashed else "-"))
            ax.text(x + BOX_WIDTH / 2, y, text, ha="center", va="center", fontsize=8)
            x += BOX_WIDTH + 0.2
        ax.text(-fig_width / 2 + 0.3, y, row.label, ha="left", va="center", fontsize=9, fontweight="bold")
        if row.note:
            ax.text(total / 2 + 0.3, y, row.note, ha="left", va="center", fontsize=7, color="#555555")
        if level:
            ax.add_patch(FancyArrowPatch((0, y + ROW_HEIGHT - BOX_HEIGHT / 2), (0, y + BOX_HEIGHT / 2),
                                         arrowstyle="-|>", mutation_scale=8, color="#333333"))
    _draw_skips(ax, arch, anchors, -(widest * (BOX_WIDTH + 0.2) - 0.2) / 2 - SKIP_MARGIN, FancyArrowPatch)
    ax.set_xlim(-fig_width / 2, fig_width / 2)
    ax.set_ylim(-(len(rows) - 0.5) * ROW_HEIGHT, 0.5 * ROW_HEIGHT + (0.3 if title else 0))
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _draw_skips(ax: Any, arch: Architecture, anchors: dict[int, tuple[float, float]], inner_lane: float,
                arrow: Any) -> None:
    """One line per skip input: out of the source's first box, down its lane, into the target's first box.

    A box's outgoing and incoming lines leave or enter at their own heights along its left edge.
    """
    from matplotlib.path import Path as LinePath

    lanes = skip_lanes(arch)
    ports: dict[int, list[tuple[int, str]]] = {}
    for lane, (source, target) in enumerate(lanes):
        ports.setdefault(source, []).append((lane, "out"))
        ports.setdefault(target, []).append((lane, "in"))

    def port_y(cell: int, lane: int, way: str) -> float:
        order = sorted(ports[cell], key=lambda port: (port[1] == "in", -port[0] if port[1] == "out" else port[0]))
        slot = order.index((lane, way))
        return anchors[cell][1] + BOX_HEIGHT * (0.35 - 0.7 * (slot + 1) / (len(order) + 1))

    for lane, (source, target) in enumerate(lanes):
        x = inner_lane - lane * SKIP_LANE
        y_from, y_to = port_y(source, lane, "out"), port_y(target, lane, "in")
        line = LinePath([(anchors[source][0], y_from), (x, y_from), (x, y_to), (anchors[target][0], y_to)])
        ax.add_patch(arrow(path=line, arrowstyle="-|>", mutation_scale=7, color=SKIP_COLOR, linewidth=0.8,
                           shrinkA=0, shrinkB=0))
