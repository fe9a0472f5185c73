"""A network derived from a supernet: one op kept in every searchable block, and the inverse.

A supernet's blocks are choice cells (alternatives joined by '_'); a derived
network keeps the same stages and one op per block (a `zero` block is written
`zero@r`, the identity). The suggestion derives networks for REINFORCE
trials and reads their choices back; a one-shot trial derives the network it
reports.
"""

from __future__ import annotations

from typing import Sequence

from .errors import InvalidInput
from .spec import Architecture, Cell, Stage


def derive(supernet: Architecture, choices: Sequence[int]) -> Architecture:
    """The network that keeps op `choices[b]` in searchable block b (single-op residual cells)."""
    cells = supernet.cells
    if len(choices) != len(cells):
        raise ValueError(f"{len(choices)} choices for {len(cells)} blocks")
    stages, index = [], 0
    for stage in supernet.stages:
        picked = tuple(Cell(ops=(cell.ops[choices[index + i]],), residual=cell.residual)
                       for i, cell in enumerate(stage.cells))
        stages.append(Stage(stage.width, stage.stride, picked))
        index += len(stage.cells)
    return Architecture(supernet.input_shape, supernet.num_classes, supernet.stem, tuple(stages)).validate()


def choices_of(supernet: Architecture, network: Architecture) -> list[int]:
    """Inverse of `derive`: the op index of every block; InvalidInput when `network` is not from `supernet`."""
    blocks, cells = supernet.cells, network.cells
    same_frame = (network.input_shape == supernet.input_shape and network.num_classes == supernet.num_classes
                  and network.stem == supernet.stem and len(cells) == len(blocks)
                  and [(s.width, s.stride, len(s.cells)) for s in network.stages]
                  == [(s.width, s.stride, len(s.cells)) for s in supernet.stages])
    if not same_frame:
        raise InvalidInput("the architecture does not have the supernet's stages and blocks")
    choices = []
    for b, (block, cell) in enumerate(zip(blocks, cells)):
        if len(cell.ops) != 1 or cell.ops[0] not in block.ops:
            raise InvalidInput(f"block {b} of the architecture is not one of the supernet's candidates")
        choices.append(block.ops.index(cell.ops[0]))
    return choices
