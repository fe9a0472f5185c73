"""ProxylessNAS supernet layout: stages of searchable blocks built from nasConfig and settings.

The backbone is the stem, then one stage per entry of `stage_widths` (each
entered through the widener, which changes the width and, for stride 2,
halves the resolution). graphConfig.numLayers searchable blocks are spread
over the stages as evenly as possible, later stages taking the remainder.
Every block is a choice cell over the same candidate ops (the distinct ops of
nasConfig, in order) with a residual connection: within a stage every block
keeps width and resolution, so `zero` (skip the block) is allowed everywhere.
A derived network has one op per block; a `zero` block is written `zero@r`,
which is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..codec import encode
from ..errors import InvalidInput
from ..space import SearchSpace
from ..spec import Architecture, Cell, Op, Stage, max_reductions

MAX_TEXT_BYTES = 4096


@dataclass(frozen=True)
class SupernetLayout:
    """Stem width and per-stage widths and strides of the backbone."""

    stem_width: int
    stage_widths: tuple[int, ...]
    stage_strides: tuple[int, ...]


def parse_int_list(text: str, setting_name: str, low: int, high: int) -> tuple[int, ...]:
    """Comma-separated integers in [low, high], e.g. '16,32,64'; InvalidInput names the setting."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidInput(f"setting {setting_name}={text!r} must be comma-separated integers, e.g. 16,32,64") \
            from None
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise InvalidInput(f"setting {setting_name}={text!r}: value {bad[0]} outside [{low}, {high}]")
    return values


def candidate_ops(space: SearchSpace) -> tuple[Op, ...]:
    """The distinct candidate ops of a block; candidates that set a width or stride are refused."""
    for candidate in space.candidates:
        if candidate.width is not None or candidate.stride != 1:
            raise InvalidInput(
                f"proxylessnas: operation {candidate.source} sets num_filter or stride; block widths and strides "
                f"come from the settings stage_widths and stage_strides, so leave num_filter and stride out")
    ops = tuple(space.ops())
    if len(ops) < 2:
        raise InvalidInput(f"proxylessnas: nasConfig gives {len(ops)} distinct operation(s); a searchable block "
                           f"needs at least 2 candidates")
    return ops


def blocks_per_stage(num_blocks: int, num_stages: int) -> list[int]:
    """Even split of the searchable blocks over the stages; later stages take the remainder."""
    base, extra = divmod(num_blocks, num_stages)
    return [base + (1 if s >= num_stages - extra else 0) for s in range(num_stages)]


def build_supernet(space: SearchSpace, layout: SupernetLayout) -> Architecture:
    """The over-parameterised network: every block a residual choice cell over all candidate ops."""
    ops = candidate_ops(space)
    stages_count = len(layout.stage_widths)
    if len(layout.stage_strides) != stages_count:
        raise InvalidInput(f"settings stage_widths ({stages_count} stages) and stage_strides "
                           f"({len(layout.stage_strides)} stages) must list the same number of stages")
    if space.num_layers < stages_count:
        raise InvalidInput(f"graphConfig.numLayers={space.num_layers} searchable blocks cannot fill "
                           f"{stages_count} stages; use at least one block per stage")
    reductions = sum(s == 2 for s in layout.stage_strides)
    if reductions > max_reductions(space.input_shape):
        raise InvalidInput(f"stage_strides has {reductions} stride-2 stages, but inputSizes "
                           f"{list(space.input_shape)} can be halved only {max_reductions(space.input_shape)} times")
    block = Cell(ops=ops, choice=True, residual=True)
    stages = tuple(Stage(width, stride, (block,) * count) for width, stride, count in
                   zip(layout.stage_widths, layout.stage_strides, blocks_per_stage(space.num_layers, stages_count)))
    supernet = Architecture(space.input_shape, space.num_classes, layout.stem_width, stages).validate()
    size = len(encode(supernet).encode())
    if size > MAX_TEXT_BYTES:
        raise InvalidInput(f"the supernet text is {size} bytes, over Katib's {MAX_TEXT_BYTES}-byte limit for an "
                           f"assignment; use fewer blocks (numLayers) or fewer candidate operations")
    return supernet


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
