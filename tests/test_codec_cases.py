"""The architecture codec case by case: the canonical text of every op and attribute, every limit at its exact
boundary, error positions at the start of each kind of segment, and malformed dicts."""

from __future__ import annotations

import copy

import pytest

from katib_nas.contract.codec import MAX_TEXT_CHARS, CodecError, decode, decode_op, encode, from_dict, to_dict
from katib_nas.contract.spec import Architecture, ArchitectureError, Cell, Op, Stage

HEAD = "in8x8x1-cls10-stem8"


def one_cell(*ops: Op, choice: bool = False, residual: bool = False, width: int = 8) -> Architecture:
    return Architecture((8, 8, 1), 10, 8, (Stage(width, 1, (Cell(ops, choice, residual),)),))


@pytest.mark.parametrize("op, token", [
    (Op("conv", 3), "c3"), (Op("dilconv", 5), "dc5"), (Op("sepconv", 5), "s5"), (Op("sepconv", 5, 2), "s5m2"),
    (Op("dwconv", 3), "d3"), (Op("dwconv", 3, 8), "d3m8"), (Op("maxpool", 3), "mp3"), (Op("avgpool", 11), "ap11"),
    (Op("mbconv", 3, 1), "mb3e1"), (Op("mbconv", 7, 6), "mb7e6"), (Op("identity"), "id"), (Op("zero"), "zero"),
])
def test_every_op_has_one_canonical_token(op: Op, token: str) -> None:
    assert encode(one_cell(op)) == f"{HEAD}/w8:{token}"
    assert decode_op(token) == op


@pytest.mark.parametrize("text", [f"{HEAD}/w8:s5m1", f"{HEAD}/w8:c03", f"{HEAD}/w08:c3", f"{HEAD}/w8s1:c3",
                                  f"{HEAD}/w8:c3@r.r", f"{HEAD}/w8:c3:c3@0.r"])
def test_non_canonical_spellings_are_refused_or_written_back_canonically(text: str) -> None:
    try:
        arch = decode(text)
    except ArchitectureError:
        return
    assert encode(arch) != text
    assert decode(encode(arch)) == arch


def test_documented_example_round_trips_exactly() -> None:
    text = "in28x28x1-cls10-stem16/w32:c1+c3+s5:c3+s5@0/w64s2:mb3e6_mb5e3_zero@r"
    arch = decode(text)
    assert arch == Architecture((28, 28, 1), 10, 16, (
        Stage(32, 1, (Cell((Op("conv", 1), Op("conv", 3), Op("sepconv", 5))),
                      Cell((Op("conv", 3), Op("sepconv", 5)), skips=(0,)))),
        Stage(64, 2, (Cell((Op("mbconv", 3, 6), Op("mbconv", 5, 3), Op("zero")), choice=True, residual=True),)),
    ))
    assert encode(arch) == text


def test_cell_attributes_are_written_residual_first_then_skips() -> None:
    cells = (Cell((Op("conv", 3),)), Cell((Op("conv", 3),)), Cell((Op("conv", 1), Op("conv", 3)), residual=True,
                                                                  skips=(0, 1)))
    arch = Architecture((9, 7, 3), 2, 4, (Stage(4, 2, cells),))
    assert encode(arch) == "in9x7x3-cls2-stem4/w4s2:c3:c3:c1+c3@r.0.1"
    assert decode("in9x7x3-cls2-stem4/w4s2:c3:c3:c1+c3@r.0.1") == arch


@pytest.mark.parametrize("token", ["c0", "c12", "c99", "dc0", "s12", "mp0", "ap12", "mb0e6", "mb13e6", "mb3e0",
                                   "mb3e9", "s3m0", "s3m9", "d3m9", "c3m2", "mp3m2"])
def test_op_parameters_outside_their_range_are_refused_as_text(token: str) -> None:
    with pytest.raises(ArchitectureError, match=r"^cell 0: op \w+[: ]"):
        decode(f"{HEAD}/w8:{token}")


@pytest.mark.parametrize("token", ["c1", "c11", "s1m2", "s11m8", "mb1e1", "mb11e8", "d11m8"])
def test_op_parameters_at_the_ends_of_their_range_are_read(token: str) -> None:
    assert encode(decode(f"{HEAD}/w8:{token}")) == f"{HEAD}/w8:{token}"


@pytest.mark.parametrize("text", [
    "in4096x1x1-cls2-stem1/w1:c1", "in1x4096x4096-cls100000-stem4096/w4096:c1", "in1x1x1-cls2-stem1/w1s1:id",
    "in2x3x1-cls2-stem1/w1s2:id",
])
def test_limits_are_inclusive(text: str) -> None:
    assert encode(decode(text)) == text.replace("w1s1:", "w1:")


@pytest.mark.parametrize("text, message", [
    ("in4097x1x1-cls2-stem1/w1:c1", "must be at most 4096x4096x4096"),
    ("in1x4097x1-cls2-stem1/w1:c1", "must be at most 4096x4096x4096"),
    ("in1x1x4097-cls2-stem1/w1:c1", "must be at most 4096x4096x4096"),
    ("in0x1x1-cls2-stem1/w1:c1", "must be positive"),
    ("in1x0x1-cls2-stem1/w1:c1", "must be positive"),
    ("in28x28x0-cls2-stem1/w1:c1", "input shape (28, 28, 0) must be positive"),
    ("in1x1x1-cls100001-stem1/w1:c1", "num_classes 100001 must be in [2, 100000]"),
    ("in1x1x1-cls1-stem1/w1:c1", "num_classes 1 must be in [2, 100000]"),
    ("in1x1x1-cls2-stem4097/w1:c1", "stem width 4097 must be in [1, 4096]"),
    ("in1x1x1-cls2-stem0/w1:c1", "stem width 0 must be in [1, 4096]"),
    ("in1x1x1-cls2-stem1/w4097:c1", "stage 0: width 4097 must be in [1, 4096]"),
    ("in1x1x1-cls2-stem1/w1:c1/w0:c1", "stage 1: width 0 must be in [1, 4096]"),
    ("in1x1x1-cls2-stem1/w1s0:c1", "stage 0: stride 0 must be 1 or 2"),
    ("in28x1x1-cls2-stem1/w1s2:c1", "stage 0: spatial size falls to 14x0 (input 28x1 allows at most 0 stride-2"),
    ("in1x28x1-cls2-stem1/w1s2:c1", "stage 0: spatial size falls to 0x14"),
    ("in3x5x1-cls2-stem1/w1:c1/w1s2:c1/w1s2:c1", "stage 2: spatial size falls to 0x1 (input 3x5 allows at most 1 "),
    ("in8x8x1-cls2-stem1/w2:c1+c3+c5", "cell 0: 3 branches do not fit in width 2"),
])
def test_limits_one_past_are_refused_naming_the_limit(text: str, message: str) -> None:
    with pytest.raises(ArchitectureError) as info:
        decode(text)
    assert message in str(info.value)


@pytest.mark.parametrize("text, token, position", [
    ("in1000000x8x1-cls10-stem8/w8:c3", "in1000000x8x1-cls10-stem8", 0),
    (f"{HEAD}/w1000000:c3", "w1000000", 20),
    (f"{HEAD}/w8:c3/x8:c3", "x8", 26),
    (f"{HEAD}/w8:c3/w8:q3", "q3", 29),
    (f"{HEAD}/w8:c3:q3", "q3", 26),
    (f"{HEAD}/w8:c3:c3+q3", "q3", 29),
    (f"{HEAD}/w8:c3_c5:c3_q3", "q3", 32),
    (f"{HEAD}/w8:c3:c3@r.x", "x", 31),
    (f"{HEAD}/w8:c3:c3@x", "x", 29),
    (f"{HEAD}/w8:c3:c3@0.r", "r", 31),
    (f"{HEAD}/w8:c3::c3", ":", 25),
    (f"{HEAD}/w8:c3+", "+", 25),
    (f"{HEAD}/w8:c3@", "@", 25),
    (f"{HEAD}/w8:c3:@r", "@", 26),
    (f"{HEAD}/w8:c3@r.", ".", 27),
    (f"{HEAD}/w8:c3/", "/", 25),
    (f"{HEAD}/", "/", 19),
    (f"/{HEAD}", "/", 0),
    (f"{HEAD}/w8:c3\n", "\n", 25),
    (f"{HEAD}/w8:c3:c1+c3_c5", "c1+c3_c5", 26),
])
def test_error_positions_point_at_the_start_of_the_bad_segment(text: str, token: str, position: int) -> None:
    with pytest.raises(CodecError) as info:
        decode(text)
    assert (info.value.token, info.value.position) == (token, position)
    assert str(info.value).startswith(f"bad architecture text at position {position}: token {token!r}, expected ")


def test_skip_attributes_are_read_as_numbers_in_order() -> None:
    arch = decode(f"{HEAD}/w8:c3:c3:c3:c3@r.0.2")
    assert arch.cells[3] == Cell((Op("conv", 3),), residual=True, skips=(0, 2))
    with pytest.raises(ArchitectureError, match=r"skip inputs \[2, 0\] must be sorted and unique"):
        decode(f"{HEAD}/w8:c3:c3:c3:c3@2.0")
    with pytest.raises(CodecError, match="expected 'r' first"):
        decode(f"{HEAD}/w8:c3:c3@00")


def exact_length_text(length: int) -> str:
    """A valid architecture text of exactly `length` characters: cells of c1 and c11 branches."""
    head = "in8x8x1-cls10-stem8/w4096:"
    full = "+".join(["c1"] * 4000)
    cells, left = [], length - len(head)
    while left > 12000:
        cells.append(full)
        left -= len(full) + 1
    count, extra = (left + 1) // 3, (left + 1) % 3  # n branches take 3n - 1 characters, one more for each c11
    cells.append("+".join(["c11"] * extra + ["c1"] * (count - extra)))
    return head + ":".join(cells)


def test_text_length_limit_is_exact_on_decode_and_encode() -> None:
    longest = exact_length_text(MAX_TEXT_CHARS)
    assert len(longest) == 65536
    arch = decode(longest)
    assert encode(arch) == longest
    with pytest.raises(CodecError, match="at most 65536 characters, got 65537") as info:
        decode(longest + "1")
    assert (info.value.token, info.value.position) == (longest[:40], 0)
    grown = list(arch.stages[0].cells)
    grown[-1] = Cell(grown[-1].ops[:-1] + (Op("conv", 11),))
    too_long = Architecture(arch.input_shape, arch.num_classes, arch.stem, (Stage(4096, 1, tuple(grown)),))
    assert grown[-1] != arch.stages[0].cells[-1]
    with pytest.raises(ArchitectureError, match="would be 65537 characters, more than 65536"):
        encode(too_long)


def test_cell_count_limit_is_exact() -> None:
    assert len(decode(HEAD + "/w8" + ":id" * 1024).cells) == 1024
    with pytest.raises(ArchitectureError, match="has 1025 cells, more than 1024"):
        decode(HEAD + "/w8" + ":id" * 1025)


@pytest.mark.parametrize("text", ["", None, 7, b"in8x8x1-cls10-stem8/w8:c3"])
def test_anything_but_nonempty_text_is_refused(text: object) -> None:
    with pytest.raises(CodecError, match="position 0"):
        decode(text)  # type: ignore[arg-type]


def test_decode_op_names_the_token_at_the_given_position() -> None:
    for position in (0, 17):
        with pytest.raises(CodecError) as info:
            decode_op("q3", *([position] if position else []))
        assert (info.value.token, info.value.position) == ("q3", position)


def test_what_is_not_text_is_shown_shortened() -> None:
    with pytest.raises(CodecError) as info:
        decode(b"x" * 100)  # type: ignore[arg-type]
    assert info.value.token == "b'" + "x" * 38


def test_unsafe_characters_are_named_at_their_position() -> None:
    with pytest.raises(CodecError) as info:
        decode(f"{HEAD}/w8:c3é")
    assert (info.value.token, info.value.position) == ("é", 25)


GOOD = to_dict(decode("in8x8x1-cls10-stem8/w8:c3+s5m2:mb3e6_zero@r.0"))


def edited(path: str, value: object) -> dict:
    """GOOD with the value at a dotted path (list indices as numbers) replaced, or removed when value is DROP."""
    document = copy.deepcopy(GOOD)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    holder = document
    for key in parents:
        holder = holder[key]
    if value is DROP:
        del holder[last]
    else:
        holder[last] = value
    return document


DROP = object()


def test_to_dict_holds_every_field_and_the_text() -> None:
    assert GOOD == {
        "text": "in8x8x1-cls10-stem8/w8:c3+s5m2:mb3e6_zero@r.0", "input_shape": [8, 8, 1], "num_classes": 10,
        "stem": 8, "stages": [{"width": 8, "stride": 1, "cells": [
            {"ops": [{"kind": "conv", "kernel": 3, "mult": 1}, {"kind": "sepconv", "kernel": 5, "mult": 2}],
             "choice": False, "residual": False, "skips": []},
            {"ops": [{"kind": "mbconv", "kernel": 3, "mult": 6}, {"kind": "zero", "kernel": 0, "mult": 1}],
             "choice": True, "residual": True, "skips": [0]}]}]}


@pytest.mark.parametrize("data, message", [
    (None, "the architecture must be a mapping, got None"),
    ([1, 2], "the architecture must be a mapping, got [1, 2]"),
    (edited("stages", DROP), "stages is missing"),
    (edited("input_shape", [8, 8]), "input_shape must hold height, width and channels, got 2 values"),
    (edited("input_shape", [8, 8, "1"]), "input_shape[2] must be an integer, got '1'"),
    (edited("input_shape", 8), "input_shape must be a list, got 8"),
    (edited("num_classes", 10.0), "num_classes must be an integer, got 10.0"),
    (edited("num_classes", True), "num_classes must be an integer, got True"),
    (edited("stem", DROP), "stem is missing"),
    (edited("stages.0", "w8"), "stages[0] must be a mapping, got 'w8'"),
    (edited("stages.0.width", None), "stages[0].width must be an integer, got None"),
    (edited("stages.0.stride", DROP), "stages[0].stride is missing"),
    (edited("stages.0.cells.1.ops.0.kernel", float("inf")), "stages[0].cells[1].ops[0].kernel must be an integer, "
                                                            "got inf"),
    (edited("stages.0.cells.1.ops.1.kind", 3), "stages[0].cells[1].ops[1].kind must be text, got 3"),
    (edited("stages.0.cells.1.ops.0.mult", DROP), "stages[0].cells[1].ops[0].mult is missing"),
    (edited("stages.0.cells.1.choice", "yes"), "stages[0].cells[1].choice must be true or false, got 'yes'"),
    (edited("stages.0.cells.1.residual", 1), "stages[0].cells[1].residual must be true or false, got 1"),
    (edited("stages.0.cells.1.skips", [0.0]), "stages[0].cells[1].skips[0] must be an integer, got 0.0"),
    (edited("stages.0.cells.0.ops", "c3"), "stages[0].cells[0].ops must be a list, got 'c3'"),
    (edited("stages.0.cells", {"a": 1}), "stages[0].cells must be a list, got {'a': 1}"),
    (edited("stages.0.cells.0.ops.0.kind", "k" * 100), "unknown op kind 'kkkk"),
    (edited("stages.0.cells.1.skips", [1]), "skip input 1 must come from an earlier cell (0..0)"),
    (edited("stem", "x" * 100), "stem must be an integer, got 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."),
])
def test_from_dict_names_the_first_bad_field(data: object, message: str) -> None:
    with pytest.raises(ArchitectureError) as info:
        from_dict(data)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert len(str(info.value)) < 200


def test_from_dict_ignores_the_text_entry_and_reads_the_fields() -> None:
    assert from_dict(edited("text", "anything")) == decode(GOOD["text"])
    assert from_dict({k: v for k, v in GOOD.items() if k != "text"}) == decode(GOOD["text"])
