"""Draw an architecture as boxes, top to bottom: input, stem, each stage's widener and cells, head.

A cell's branches sit side by side (alternatives of a choice cell are drawn
dashed); residual connections and gated skip inputs are noted on the cell
and drawn as arcs on the right. Matplotlib only (Agg), no graphviz.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.spec import Architecture, Op

COLORS = {"conv": "#8ecae6", "dilconv": "#7fb7d9", "sepconv": "#a8dadc", "dwconv": "#b7e4c7", "mbconv": "#ffd6a5",
          "maxpool": "#e5e5e5", "avgpool": "#e5e5e5", "identity": "#f1faee", "zero": "#ffffff"}
FIXED = "#d8d8f0"
SKIP_COLOR = "#c1121f"
ROW_HEIGHT = 1.0
BOX_HEIGHT = 0.6
BOX_WIDTH = 1.5
#: Curvature of the skip arcs (matplotlib arc3 rad); an arc bulges by about half of it times its length.
SKIP_RAD = -0.3
SKIP_BEND = 0.2


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


def skip_reach(rows: list[Row], arch: Architecture) -> float:
    """How far right of their start the skip arcs bulge: they bend by a share of the rows they span."""
    level = {row.cell: i for i, row in enumerate(rows) if row.cell is not None}
    spans = [level[target] - level[source] for target, cell in enumerate(arch.cells) for source in cell.skips]
    return SKIP_BEND * max(spans, default=0) * ROW_HEIGHT


def figure(arch: Architecture, title: str = "") -> Any:
    """The drawing as a matplotlib Figure (Agg), wide enough for the longest skip arc."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    rows = layout(arch)
    widest = max(len(row.boxes) for row in rows)
    reach = skip_reach(rows, arch)
    fig_width = max(7.0, widest * (BOX_WIDTH + 0.2) + 8.0) + 2 * reach
    fig, ax = plt.subplots(figsize=(fig_width, 0.75 * len(rows) + 1.0))
    centers: dict[int, float] = {}
    for level, row in enumerate(rows):
        y = -level * ROW_HEIGHT
        if row.cell is not None:
            centers[row.cell] = y
        total = len(row.boxes) * (BOX_WIDTH + 0.2) - 0.2
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
    _draw_skips(ax, arch, centers, fig_width / 2 - 0.5 - reach, FancyArrowPatch)
    ax.set_xlim(-fig_width / 2, fig_width / 2)
    ax.set_ylim(-(len(rows) - 0.5) * ROW_HEIGHT, 0.5 * ROW_HEIGHT + (0.3 if title else 0))
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _draw_skips(ax: Any, arch: Architecture, centers: dict[int, float], right: float, arrow: Any) -> None:
    for target, cell in enumerate(arch.cells):
        for source in cell.skips:
            ax.add_patch(arrow((right, centers[source]), (right, centers[target]), connectionstyle=f"arc3,rad={SKIP_RAD}",
                               arrowstyle="-|>", mutation_scale=7, color=SKIP_COLOR, linewidth=0.8))
