"""The architecture codec: exact round trips, safe text, errors that name the bad token."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from katib_nas.contract import codec
from katib_nas.contract.spec import OP_KINDS, Architecture, ArchitectureError, Cell, Op, Stage

KERNEL_KINDS = [kind for kind, (_, has_kernel, _) in OP_KINDS.items() if has_kernel]


@st.composite
def ops(draw: st.DrawFn) -> Op:
    kind = draw(st.sampled_from(list(OP_KINDS)))
    _, has_kernel, mult_meaning = OP_KINDS[kind]
    kernel = draw(st.integers(1, 11)) if has_kernel else 0
    mult = draw(st.integers(1, 8)) if mult_meaning else 1
    return Op(kind, kernel, mult)


@st.composite
def architectures(draw: st.DrawFn) -> Architecture:
    height = draw(st.integers(1, 64))
    width = draw(st.integers(1, 64))
    reductions = 0
    stages, index = [], 0
    for _ in range(draw(st.integers(1, 4))):
        can_reduce = min(height, width) >> (reductions + 1) >= 1
        stride = draw(st.sampled_from([1, 2])) if can_reduce else 1
        reductions += stride == 2
        stage_width = draw(st.integers(8, 256))
        cells = []
        for _ in range(draw(st.integers(1, 5))):
            choice = draw(st.booleans())
            cell_ops = tuple(draw(st.lists(ops(), min_size=2 if choice else 1, max_size=6)))
            skips = tuple(sorted(draw(st.sets(st.integers(0, index - 1), max_size=3)))) if index else ()
            cells.append(Cell(cell_ops, choice, draw(st.booleans()), skips))
            index += 1
        stages.append(Stage(stage_width, stride, tuple(cells)))
    return Architecture((height, width, draw(st.integers(1, 4))), draw(st.integers(2, 1000)),
                        draw(st.integers(1, 64)), tuple(stages))


@settings(max_examples=300, deadline=None)
@given(architectures())
def test_text_round_trip_is_exact(arch: Architecture) -> None:
    text = codec.encode(arch)
    assert codec.decode(text) == arch
    assert codec.encode(codec.decode(text)) == text


@settings(max_examples=100, deadline=None)
@given(architectures())
def test_dict_round_trip_is_exact(arch: Architecture) -> None:
    assert codec.from_dict(codec.to_dict(arch)) == arch


@settings(max_examples=200, deadline=None)
@given(architectures())
def test_text_is_safe_for_yaml_shell_csv_and_katib_substitution(arch: Architecture) -> None:
    text = codec.encode(arch)
    assert not re.search(r'[\s",$`\'\\;&|<>(){}\[\]*?!~#=]', text)
    assert text[0].isalpha()


def test_twenty_envelope_cells_with_skips_stay_under_one_kilobyte() -> None:
    branches = tuple(Op(k, s) for k, s in [("conv", 1), ("conv", 3), ("conv", 5),
                                            ("sepconv", 3), ("sepconv", 5), ("sepconv", 7)])
    stages, index = [], 0
    for s in range(4):
        cells = []
        for _ in range(5):
            cells.append(Cell(branches, skips=tuple(range(max(0, index - 3), index - 1)) if index > 1 else ()))
            index += 1
        stages.append(Stage(32 * 2**s, 2 if s else 1, tuple(cells)))
    arch = Architecture((224, 224, 3), 1000, 32, tuple(stages))
    text = codec.encode(arch)
    assert len(arch.cells) == 20
    assert len(text.encode()) < 1024, len(text)


@pytest.mark.parametrize(
    "text, token, position",
    [
        ("in28x28x1-cls10-stem16/w32:c1+q3", "q3", 30),
        ("in28x28x1-cls10-stem16/w32:c3$", "$", 29),
        ("in28x28x1-cls10-stem16/w32:c3 c5", " ", 29),
        ("in28x28x1-cls10-stem16//w32:c1", "/", 22),
        ("in28x28-cls10-stem16/w32:c3", "in28x28-cls10-stem16", 0),
        ("in28x28x1-cls10-stem16/x32:c3", "x32", 23),
        ("in28x28x1-cls10-stem16/w32", "w32", 23),
        ("in28x28x1-cls10-stem16/w32:c3+s5_s3", "c3+s5_s3", 27),
        ("in28x28x1-cls10-stem16/w32:c3:c5@q", "q", 33),
        ("in28x28x1-cls10-stem16/w32:c3:c5@0.r", "r", 35),
        ("in28x28x1-cls10-stem16", "", 22),
        ("", "", 0),
    ],
)
def test_garbage_names_token_and_position(text: str, token: str, position: int) -> None:
    with pytest.raises(codec.CodecError) as info:
        codec.decode(text)
    assert info.value.token == token
    assert info.value.position == position
    assert f"position {position}" in str(info.value)


def decodes_or_names_a_token_it_holds(text: str) -> None:
    """decode either reads the text, and then writes it back canonically, or raises ArchitectureError; a CodecError
    names a token that stands in the text at the position it gives."""
    try:
        arch = codec.decode(text)
    except codec.CodecError as err:
        assert 0 <= err.position <= len(text)
        assert text[err.position:err.position + len(err.token)] == err.token, (err.token, err.position)
    except ArchitectureError as err:
        assert str(err)
    else:
        assert codec.decode(codec.encode(arch)) == arch


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_either_decodes_or_raises_architecture_error(text: str) -> None:
    decodes_or_names_a_token_it_holds(text)


GRAMMAR = "0123456789/:+_@.-xr" + "".join(sorted({c for prefix, _, _ in OP_KINDS.values() for c in prefix}))


# An '@' with nothing after it was reported as a '.' token past the end of the text; a cell starting with '@'
# as a '+' token the text does not hold.
@example("in8x8x1-cls10-stem8/w8:c3@", 0, 0, "")
@example("in8x8x1-cls10-stem8/w8:c3:c3@r", 30, 30, "")
@example("in8x8x1-cls10-stem8/w8:c3:c3", 26, 28, "@r")
@settings(max_examples=300, deadline=None)
@given(architectures().map(codec.encode), st.integers(0, 10**6), st.integers(0, 10**6),
       st.text(alphabet=GRAMMAR, max_size=4))
def test_edited_architecture_text_decodes_or_names_a_token_it_holds(text: str, start: int, stop: int,
                                                                    insert: str) -> None:
    start, stop = sorted((start % (len(text) + 1), stop % (len(text) + 1)))
    decodes_or_names_a_token_it_holds(text[:start] + insert + text[stop:])


@pytest.mark.parametrize(
    "text, message",
    [
        ("in28x28x1-cls10-stem16/w32:c3@0", "first cell cannot take skip inputs"),
        ("in28x28x1-cls10-stem16/w32:c3:c3@1", "must come from an earlier cell"),
        ("in28x28x1-cls10-stem16/w32s3:c3", "stride 3 must be 1 or 2"),
        ("in4x4x1-cls10-stem16/w8s2:c3/w8s2:c3/w8s2:c3", "spatial size falls to 0x0"),
        ("in28x28x1-cls10-stem16/w2:c1+c3+c5", "3 branches do not fit in width 2"),
        ("in28x28x1-cls10-stem16/w32:c3m2", "takes no multiplier"),
        ("in28x28x1-cls10-stem16/w32:mb3e9", "expand ratio 9 outside"),
        ("in28x28x1-cls1-stem16/w32:c3", "num_classes 1"),
    ],
)
def test_structural_errors_are_named(text: str, message: str) -> None:
    with pytest.raises(ArchitectureError, match=re.escape(message)):
        codec.decode(text)
