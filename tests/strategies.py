"""Random valid architectures for tests: a hypothesis strategy and a seeded generator sharing one recipe.

They cover every op kind (odd and even kernels, multipliers), concatenated
and choice cells, residual flags, gated skips, width changes and stride-2
stages up to the input's spatial limit. Sizes stay small so built networks
run forward and backward quickly.
"""

from __future__ import annotations

import random
from typing import Callable

from hypothesis import strategies as st

from katib_nas.contract.spec import OP_KINDS, Architecture, Cell, Op, Stage, max_reductions

OP_KIND_NAMES = tuple(OP_KINDS)
INPUT_SHAPES = ((8, 8, 1), (9, 7, 3), (6, 6, 2), (12, 12, 1), (5, 11, 1))

# pick(low, high) -> an integer in [low, high], inclusive
Pick = Callable[[int, int], int]


def random_op(pick: Pick, kind: str | None = None) -> Op:
    kind = kind or OP_KIND_NAMES[pick(0, len(OP_KIND_NAMES) - 1)]
    _, has_kernel, mult_meaning = OP_KINDS[kind]
    kernel = pick(1, 5) if has_kernel else 0
    mult = pick(1, 3) if mult_meaning else 1
    return Op(kind, kernel, mult)


def random_cell(pick: Pick, width: int, index: int) -> Cell:
    choice = pick(0, 3) == 0
    count = pick(2, 3) if choice else pick(1, min(3, width))
    ops = tuple(random_op(pick) for _ in range(count))
    residual = pick(0, 2) == 0
    skips = tuple(j for j in range(index) if pick(0, 2) == 0)
    return Cell(ops=ops, choice=choice, residual=residual, skips=skips)


def build_architecture(pick: Pick) -> Architecture:
    """One architecture from a stream of integer choices."""
    input_shape = INPUT_SHAPES[pick(0, len(INPUT_SHAPES) - 1)]
    reductions_left = max_reductions(input_shape)
    stages, index = [], 0
    for _ in range(pick(1, 3)):
        stride = 2 if reductions_left > 0 and pick(0, 1) else 1
        reductions_left -= stride == 2
        width = pick(1, 12)
        cells = []
        for _ in range(pick(1, 3)):
            cells.append(random_cell(pick, width, index))
            index += 1
        stages.append(Stage(width, stride, tuple(cells)))
    return Architecture(input_shape, pick(2, 5), pick(1, 8), tuple(stages)).validate()


def random_architecture(seed: int) -> Architecture:
    """A seeded random architecture: the same seed always gives the same one."""
    rng = random.Random(seed)
    return build_architecture(rng.randint)


@st.composite
def architectures(draw: st.DrawFn) -> Architecture:
    """Hypothesis strategy over valid architectures (shrinks towards small, plain networks)."""
    return build_architecture(lambda low, high: draw(st.integers(low, high)))
