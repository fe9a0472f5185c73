"""The architecture spec through its Python API: what validate refuses (and names), at each limit's exact
boundary, and the derived sizes every side relies on."""

from __future__ import annotations

import dataclasses

import pytest

from katib_nas.contract.spec import (
    MAX_CELLS,
    MAX_CLASSES,
    MAX_INPUT_CHANNELS,
    MAX_INPUT_SIDE,
    MAX_KERNEL,
    MAX_MULT,
    MAX_WIDTH,
    OP_KINDS,
    Architecture,
    ArchitectureError,
    Cell,
    Op,
    Stage,
    branch_widths,
    max_reductions,
)

C3 = Op("conv", 3)


def net(*cells: Cell, width: int = 8, stride: int = 1, shape: tuple[int, int, int] = (8, 8, 1)) -> Architecture:
    return Architecture(shape, 10, 8, (Stage(width, stride, cells),))


def refused(arch: Architecture) -> str:
    with pytest.raises(ArchitectureError) as info:
        arch.validate()
    return str(info.value)


def test_limits_are_the_documented_numbers() -> None:
    assert (MAX_KERNEL, MAX_MULT, MAX_WIDTH, MAX_INPUT_SIDE, MAX_INPUT_CHANNELS, MAX_CLASSES, MAX_CELLS) == (
        11, 8, 4096, 4096, 4096, 100_000, 1024)


@pytest.mark.parametrize("cell, message", [
    (Cell(()), "cell 0 has no ops"),
    (Cell((C3,), choice=True), "cell 0: a choice cell needs at least two alternatives"),
    (Cell((C3, C3), skips=(-1,)), "cell 0: the first cell cannot take skip inputs"),
])
def test_cells_that_cannot_be_built_are_refused(cell: Cell, message: str) -> None:
    assert refused(net(cell)) == message


def test_skip_inputs_must_come_from_earlier_cells() -> None:
    assert refused(net(Cell((C3,)), Cell((C3,), skips=(-1,)))) == \
        "cell 1: skip input -1 must come from an earlier cell (0..0)"
    assert refused(net(Cell((C3,)), Cell((C3,)), Cell((C3,), skips=(2,)))) == \
        "cell 2: skip input 2 must come from an earlier cell (0..1)"
    assert refused(net(Cell((C3,)), Cell((C3,)), Cell((C3,), skips=(1, 1)))) == \
        "cell 2: skip inputs [1, 1] must be sorted and unique"
    assert net(Cell((C3,)), Cell((C3,)), Cell((C3,), skips=(0, 1))).validate().cells[2].skips == (0, 1)


def test_skip_indices_count_cells_across_stages() -> None:
    arch = Architecture((8, 8, 1), 10, 8, (Stage(8, 1, (Cell((C3,)), Cell((C3,)))),
                                           Stage(16, 2, (Cell((C3,), skips=(0, 1)),))))
    assert arch.validate().stage_of_cells() == [0, 0, 1]
    bad = Architecture((8, 8, 1), 10, 8, (Stage(8, 1, (Cell((C3,)),)), Stage(16, 2, (Cell((C3,), skips=(1,)),))))
    assert refused(bad) == "cell 1: skip input 1 must come from an earlier cell (0..0)"


def test_a_choice_cell_may_have_more_alternatives_than_width_a_branch_cell_may_not() -> None:
    assert net(Cell((C3, C3, C3), choice=True), width=2).validate()
    assert net(Cell((C3, C3)), width=2).validate()
    assert refused(net(Cell((C3, C3, C3)), width=2)) == "cell 0: 3 branches do not fit in width 2"


@pytest.mark.parametrize("op, message", [
    (Op("conv", 0), "op conv: kernel 0 outside 1..11"),
    (Op("conv", 12), "op conv: kernel 12 outside 1..11"),
    (Op("identity", 3), "op identity takes no kernel, got 3"),
    (Op("zero", 0, 2), "op zero takes no multiplier, got 2"),
    (Op("conv", 3, 0), "op conv takes no multiplier, got 0"),
    (Op("sepconv", 3, 0), "op sepconv: depth multiplier 0 outside 1..8"),
    (Op("mbconv", 3, 9), "op mbconv: expand ratio 9 outside 1..8"),
    (Op("Conv", 3), "unknown op kind 'Conv'; known: conv, dilconv, sepconv, dwconv, maxpool, avgpool, mbconv, "
                    "identity, zero"),
])
def test_bad_ops_are_named_with_their_cell(op: Op, message: str) -> None:
    assert refused(net(Cell((C3,)), Cell((op,)))) == f"cell 1: {message}"


@pytest.mark.parametrize("op", [Op("conv", 1), Op("conv", 11), Op("sepconv", 3, 1), Op("dwconv", 3, 8),
                                Op("mbconv", 1, 8), Op("identity"), Op("zero")])
def test_ops_at_the_ends_of_their_ranges_are_valid(op: Op) -> None:
    op.check()
    assert net(Cell((op,))).validate().cells == [Cell((op,))]


def test_op_kinds_say_which_take_a_kernel_and_what_mult_means() -> None:
    takes_kernel = {kind for kind, (_, kernel, _) in OP_KINDS.items() if kernel}
    assert takes_kernel == {"conv", "dilconv", "sepconv", "dwconv", "maxpool", "avgpool", "mbconv"}
    assert {kind: meaning for kind, (_, _, meaning) in OP_KINDS.items() if meaning} == {
        "sepconv": "depth multiplier", "dwconv": "depth multiplier", "mbconv": "expand ratio"}
    assert Op("identity") == Op("identity", 0, 1)


@pytest.mark.parametrize("shape, message", [
    ((28, 1, 1), "stage 0: spatial size falls to 14x0 (input 28x1 allows at most 0 stride-2 stages)"),
    ((1, 28, 1), "stage 0: spatial size falls to 0x14 (input 1x28 allows at most 0 stride-2 stages)"),
    ((28, 28, 0), "input shape (28, 28, 0) must be positive"),
    ((0, 28, 1), "input shape (0, 28, 1) must be positive"),
    ((28, -1, 1), "input shape (28, -1, 1) must be positive"),
    ((4097, 8, 1), "input shape (4097, 8, 1) must be at most 4096x4096x4096"),
    ((8, 4097, 1), "input shape (8, 4097, 1) must be at most 4096x4096x4096"),
    ((8, 8, 4097), "input shape (8, 8, 4097) must be at most 4096x4096x4096"),
])
def test_input_shapes_are_checked_on_each_side(shape: tuple[int, int, int], message: str) -> None:
    assert refused(net(Cell((C3,)), stride=2, shape=shape)) == message


@pytest.mark.parametrize("shape", [(4096, 4096, 4096), (2, 2, 1), (2, 3, 1), (3, 2, 1)])
def test_input_shapes_at_the_limits_are_valid(shape: tuple[int, int, int]) -> None:
    assert net(Cell((C3,)), stride=2, shape=shape).validate().spatial_sizes() == [(shape[0] // 2, shape[1] // 2)]


def test_spatial_sizes_halve_at_stride_2_stages_only() -> None:
    stages = (Stage(4, 2, (Cell((C3,)),)), Stage(4, 1, (Cell((C3,)),)), Stage(4, 2, (Cell((C3,)),)))
    assert Architecture((9, 7, 1), 2, 4, stages).validate().spatial_sizes() == [(4, 3), (4, 3), (2, 1)]


@pytest.mark.parametrize("shape, count", [((1, 1, 1), 0), ((2, 2, 1), 1), ((3, 3, 1), 1), ((4, 5, 1), 2),
                                          ((7, 7, 1), 2), ((8, 8, 1), 3), ((28, 1, 1), 0), ((64, 28, 3), 4)])
def test_max_reductions_counts_halvings_of_the_shorter_side(shape: tuple[int, int, int], count: int) -> None:
    assert max_reductions(shape) == count
    stages = tuple(Stage(4, 2, (Cell((C3,)),)) for _ in range(count))
    if count:
        Architecture(shape, 2, 4, stages).validate()
    with pytest.raises(ArchitectureError, match="spatial size falls to"):
        Architecture(shape, 2, 4, stages + (Stage(4, 2, (Cell((C3,)),)),)).validate()


@pytest.mark.parametrize("classes, ok", [(1, False), (2, True), (100_000, True), (100_001, False)])
def test_class_count_limits(classes: int, ok: bool) -> None:
    arch = Architecture((8, 8, 1), classes, 8, (Stage(8, 1, (Cell((C3,)),)),))
    if ok:
        assert arch.validate() is arch
    else:
        assert refused(arch) == f"num_classes {classes} must be in [2, 100000]"


@pytest.mark.parametrize("stem, width, message", [
    (0, 8, "stem width 0 must be in [1, 4096]"), (4097, 8, "stem width 4097 must be in [1, 4096]"),
    (8, 0, "stage 0: width 0 must be in [1, 4096]"), (8, 4097, "stage 0: width 4097 must be in [1, 4096]"),
    (1, 1, ""), (4096, 4096, ""),
])
def test_width_limits(stem: int, width: int, message: str) -> None:
    arch = Architecture((8, 8, 1), 10, stem, (Stage(width, 1, (Cell((C3,)),)),))
    if message:
        assert refused(arch) == message
    else:
        arch.validate()


@pytest.mark.parametrize("stride", [0, 3, -1])
def test_stride_is_one_or_two(stride: int) -> None:
    assert refused(net(Cell((C3,)), stride=stride)) == f"stage 0: stride {stride} must be 1 or 2"


def test_structure_errors_name_the_stage() -> None:
    assert refused(Architecture((8, 8, 1), 10, 8, ())) == "an architecture needs at least one stage"
    assert refused(Architecture((8, 8, 1), 10, 8, (Stage(8, 1, (Cell((C3,)),)), Stage(8, 1, ())))) == \
        "stage 1 has no cells"


def test_cell_count_limit_across_stages() -> None:
    half = tuple(Cell((C3,)) for _ in range(512))
    arch = Architecture((8, 8, 1), 10, 8, (Stage(8, 1, half), Stage(8, 1, half)))
    assert len(arch.validate().cells) == 1024
    over = dataclasses.replace(arch, stages=arch.stages + (Stage(8, 1, (Cell((C3,)),)),))
    assert refused(over) == "the architecture has 1025 cells, more than 1024"


@pytest.mark.parametrize("width, branches, widths", [(8, 3, [3, 3, 2]), (6, 3, [2, 2, 2]), (7, 1, [7]),
                                                     (5, 4, [2, 1, 1, 1]), (3, 3, [1, 1, 1])])
def test_branch_widths_split_the_width_with_the_remainder_first(width: int, branches: int, widths: list[int]) -> None:
    assert branch_widths(width, branches) == widths


def test_specs_are_immutable_and_hashable() -> None:
    arch = net(Cell((C3,), residual=True))
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.stem = 4  # type: ignore[misc]
    assert len({arch, net(Cell((C3,), residual=True)), C3, Op("conv", 3), arch.stages[0], arch.cells[0]}) == 4
    assert (Cell((C3,)).choice, Cell((C3,)).residual, Cell((C3,)).skips) == (False, False, ())
    assert (Op("zero").kernel, Op("zero").mult, Architecture((1, 1, 1), 2, 1).stages) == (0, 1, ())
