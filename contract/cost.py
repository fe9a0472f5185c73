"""Multiply-accumulates of an architecture, computed from its text alone.

The count follows the layers the trial builds (trial_image/ops.py, cells.py, model.py) and counts what
the trial's `flops` metric counts: the Conv2d and Linear layers on the path a batch-1 input takes, with a
choice cell at its first alternative; normalisation, activations, pooling and additions are free. A test
holds the two counts equal over every op kind. The suggestion side uses it to keep constructions within a
budget without building a network.
"""

from __future__ import annotations

from .spec import Architecture, Cell, Op, branch_widths


def architecture_macs(arch: Architecture) -> int:
    """Multiply-accumulates of one forward pass of one image."""
    height, width, channels = arch.input_shape
    total = height * width * arch.stem * channels * 9
    current, cell_widths = arch.stem, []
    for stage, (h, w) in zip(arch.stages, arch.spatial_sizes()):
        if stage.width != current:
            total += height * width * stage.width * current  # the widener's 1x1 runs before its pooling
        height, width = h, w
        for cell in stage.cells:
            total += cell_macs(cell, stage.width, h * w)
            total += sum(h * w * stage.width * cell_widths[j] for j in cell.skips
                         if cell_widths[j] != stage.width)
            cell_widths.append(stage.width)
        current = stage.width
    return total + current * arch.num_classes


def cell_macs(cell: Cell, width: int, pixels: int) -> int:
    """A cell's body: every branch of an envelope cell, or the first alternative of a choice cell."""
    if cell.choice:
        return op_macs(cell.ops[0], width, width, pixels)
    return sum(op_macs(op, width, out, pixels) for op, out in zip(cell.ops, branch_widths(width, len(cell.ops))))


def op_macs(op: Op, in_channels: int, out_channels: int, pixels: int) -> int:
    """One branch reading `in_channels` and writing `out_channels` at `pixels` positions."""
    square = op.kernel * op.kernel
    if op.kind in ("conv", "dilconv"):
        return pixels * out_channels * in_channels * square
    if op.kind == "sepconv":
        hidden = in_channels * op.mult
        return pixels * hidden * square + pixels * out_channels * hidden
    if op.kind == "dwconv":
        hidden = out_channels * op.mult
        return pixels * hidden * square + (pixels * out_channels * hidden if op.mult > 1 else 0)
    if op.kind == "mbconv":
        hidden = in_channels * op.mult
        expand = pixels * hidden * in_channels if op.mult > 1 else 0
        return expand + pixels * hidden * square + pixels * out_channels * hidden
    return 0  # pooling, identity and zero multiply nothing
