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

from katib_nas.contract.assignments import MAX_VALUE_BYTES
from katib_nas.contract.codec import encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Architecture, Cell, Op, Stage, max_reductions

from ...settings import parse_int_list as parse_setting_list
from ...space import MAX_LAYERS, SearchSpace


@dataclass(frozen=True)
class SupernetLayout:
    """Stem width and per-stage widths and strides of the backbone."""

    stem_width: int
    stage_widths: tuple[int, ...]
    stage_strides: tuple[int, ...]


def parse_int_list(text: str, setting_name: str, low: int, high: int) -> tuple[int, ...]:
    """Comma-separated integers in [low, high], e.g. '16,32,64', one per stage (a stage holds at least one of
    the numLayers blocks); read by the settings' strict parser, whose error names the setting."""
    return parse_setting_list(text, f"setting {setting_name}", low, high, max_items=MAX_LAYERS)


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
    if size > MAX_VALUE_BYTES:
        raise InvalidInput(f"the supernet text is {size} bytes, over the {MAX_VALUE_BYTES}-byte limit for an "
                           f"assignment; use fewer blocks (numLayers) or fewer candidate operations")
    return supernet
