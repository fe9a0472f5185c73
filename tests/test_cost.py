"""The architecture-text cost count (contract/cost.py) equals what the built torch network counts."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from katib_nas.contract.codec import decode
from katib_nas.contract.cost import architecture_macs
from katib_nas.contract.spec import OP_KINDS, Architecture, Cell, Op, Stage
from katib_nas.trial_image import measure
from katib_nas.trial_image.model import build_model


def built_macs(arch: Architecture) -> int:
    return measure.model_macs(build_model(arch), arch.input_shape)


def sample_op(kind: str, draw: st.DrawFn) -> Op:
    _, has_kernel, mult_meaning = OP_KINDS[kind]
    kernel = draw(st.integers(1, 5)) if has_kernel else 0
    return Op(kind, kernel, draw(st.integers(1, 3)) if mult_meaning else 1)


@st.composite
def architectures(draw: st.DrawFn) -> Architecture:
    stages, index = [], 0
    for s in range(draw(st.integers(1, 3))):
        cells = []
        for _ in range(draw(st.integers(1, 3))):
            width = None
            choice = draw(st.booleans())
            ops = tuple(sample_op(draw(st.sampled_from(list(OP_KINDS))), draw)
                        for _ in range(draw(st.integers(2 if choice else 1, 3))))
            skips = tuple(sorted(set(draw(st.lists(st.integers(0, max(index - 1, 0)), max_size=2))))) if index else ()
            cells.append(Cell(ops, choice=choice, residual=draw(st.booleans()), skips=skips))
            index += 1
        width = draw(st.sampled_from([6, 8, 12]))
        stages.append(Stage(width, 1 if s == 0 else draw(st.sampled_from([1, 2])), tuple(cells)))
    return Architecture((12, 12, draw(st.sampled_from([1, 3]))), 10, draw(st.sampled_from([4, 8])),
                        tuple(stages)).validate()


@pytest.mark.parametrize("kind", sorted(OP_KINDS))
def test_every_op_kind_counts_the_same_on_both_sides(kind: str) -> None:
    token = {"identity": "id", "zero": "zero", "mbconv": "mb3e3", "sepconv": "s3m2", "dwconv": "d5m2",
             "maxpool": "mp3", "avgpool": "ap2", "conv": "c3", "dilconv": "dc3"}[kind]
    arch = decode(f"in10x10x3-cls10-stem8/w12:c3+{token}:{token}@r/w16s2:{token}+c1@0")
    assert architecture_macs(arch) == built_macs(arch) > 0


@settings(max_examples=40, deadline=None)
@given(architectures())
def test_random_architectures_count_the_same_on_both_sides(arch: Architecture) -> None:
    torch.manual_seed(0)
    assert architecture_macs(arch) == built_macs(arch)
