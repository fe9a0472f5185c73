"""The architecture codec: compact text and JSON-ready dicts, both round-tripping exactly.

Text grammar (only letters, digits and ``- / : + _ @ .``, so it survives YAML,
shell arguments, CSV and Katib's plain ``${trialParameters.X}`` substitution)::

    text   := header ("/" stage)+
    header := "in" H "x" W "x" C "-cls" CLASSES "-stem" STEM_WIDTH
    stage  := "w" WIDTH ["s2"] (":" cell)+
    cell   := op ("+" op)* ["@" attr ("." attr)*]     branches, concatenated
            | op ("_" op)+  ["@" attr ("." attr)*]     alternatives (supernet block)
    attr   := "r" (residual) | INDEX (skip input from that earlier cell)
    op     := "c"K | "dc"K | "s"K["m"M] | "d"K["m"M] | "mp"K | "ap"K | "mb"K"e"E | "id" | "zero"

Example: ``in28x28x1-cls10-stem16/w32:c1+c3+s5:c3+s5@0/w64s2:mb3e6_mb5e3_zero@r``.

Numbers have at most six digits and no leading zeros; the spec's limits
(contract/spec.py) all fit, and `encode` and `decode` both check them, so the
codec reads back exactly what it writes. Text is at most MAX_TEXT_CHARS
characters and every token must match in full (no trailing newline).
"""

from __future__ import annotations

import re
from typing import Any

from .errors import shown
from .spec import OP_KINDS, Architecture, ArchitectureError, Cell, Op, Stage

CHARSET = re.compile(r"[A-Za-z0-9/:+_@.-]*")
_INT = r"(0|[1-9][0-9]{0,5})"
_HEADER = re.compile(rf"in{_INT}x{_INT}x{_INT}-cls{_INT}-stem{_INT}")
_STAGE = re.compile(rf"w{_INT}(?:s{_INT})?")
_KERNEL_OP = re.compile(rf"(c|dc|s|d|mp|ap){_INT}(?:m{_INT})?")
_MBCONV = re.compile(rf"mb{_INT}e{_INT}")
_ATTR_INDEX = re.compile(_INT)
#: Longest architecture text read or written: 16 times the 4096-byte limit on an assignment value.
MAX_TEXT_CHARS = 65536
_KIND_BY_PREFIX = {prefix: kind for kind, (prefix, _, _) in OP_KINDS.items()}


class CodecError(ArchitectureError):
    """Architecture text that does not parse; names the bad token and its position."""

    def __init__(self, token: str, position: int, expected: str):
        self.token = token
        self.position = position
        super().__init__(f"bad architecture text at position {position}: token {token!r}, expected {expected}")


def encode(arch: Architecture) -> str:
    """The text form of a valid architecture."""
    arch.validate()
    height, width, channels = arch.input_shape
    parts = [f"in{height}x{width}x{channels}-cls{arch.num_classes}-stem{arch.stem}"]
    for stage in arch.stages:
        head = f"w{stage.width}" + ("s2" if stage.stride == 2 else "")
        parts.append(":".join([head] + [encode_cell(cell) for cell in stage.cells]))
    text = "/".join(parts)
    if len(text) > MAX_TEXT_CHARS:
        raise ArchitectureError(f"the architecture text would be {len(text)} characters, more than {MAX_TEXT_CHARS}")
    return text


def decode(text: str) -> Architecture:
    """Parse and validate architecture text; raises CodecError or ArchitectureError."""
    if not isinstance(text, str) or not text:
        raise CodecError(str(text)[:40], 0, "architecture text")
    if len(text) > MAX_TEXT_CHARS:
        raise CodecError(text[:40], 0, f"architecture text of at most {MAX_TEXT_CHARS} characters, got {len(text)}")
    if not CHARSET.fullmatch(text):
        position = next(i for i, char in enumerate(text) if not CHARSET.fullmatch(char))
        raise CodecError(text[position], position, "only letters, digits and - / : + _ @ .")
    pieces = _split(text, "/", 0)
    header_text, header_pos = pieces[0]
    match = _HEADER.fullmatch(header_text)
    if not match:
        raise CodecError(header_text, header_pos, "a header like in28x28x1-cls10-stem16")
    height, width, channels, classes, stem = (int(g) for g in match.groups())
    if len(pieces) < 2:
        raise CodecError("", len(text), "'/' and at least one stage")
    stages = tuple(_decode_stage(piece, pos) for piece, pos in pieces[1:])
    arch = Architecture((height, width, channels), classes, stem, stages)
    return arch.validate()


def to_dict(arch: Architecture) -> dict[str, Any]:
    """A JSON-ready dict of the architecture, with its text form alongside."""
    return {
        "text": encode(arch),
        "input_shape": list(arch.input_shape),
        "num_classes": arch.num_classes,
        "stem": arch.stem,
        "stages": [
            {
                "width": stage.width,
                "stride": stage.stride,
                "cells": [
                    {
                        "ops": [{"kind": op.kind, "kernel": op.kernel, "mult": op.mult} for op in cell.ops],
                        "choice": cell.choice,
                        "residual": cell.residual,
                        "skips": list(cell.skips),
                    }
                    for cell in stage.cells
                ],
            }
            for stage in arch.stages
        ],
    }


def from_dict(data: Any) -> Architecture:
    """Rebuild an architecture from `to_dict` output (the "text" entry is not read); raises ArchitectureError naming
    the first field that is missing or of the wrong type, or the structural error."""
    shape = _field(data, "input_shape", "", list)
    if len(shape) != 3:
        raise ArchitectureError(f"architecture dict: input_shape must hold height, width and channels, got "
                                f"{len(shape)} values")
    height, width, channels = (_expect(v, f"input_shape[{i}]", int) for i, v in enumerate(shape))
    stages = tuple(_stage_from_dict(stage, f"stages[{s}]") for s, stage in enumerate(_field(data, "stages", "", list)))
    arch = Architecture((height, width, channels), _field(data, "num_classes", "", int), _field(data, "stem", "", int),
                        stages)
    return arch.validate()


def _stage_from_dict(data: Any, where: str) -> Stage:
    cells = tuple(_cell_from_dict(cell, f"{where}.cells[{c}]")
                  for c, cell in enumerate(_field(data, "cells", where, list)))
    return Stage(_field(data, "width", where, int), _field(data, "stride", where, int), cells)


def _cell_from_dict(data: Any, where: str) -> Cell:
    ops = tuple(Op(_field(op, "kind", f"{where}.ops[{o}]", str), _field(op, "kernel", f"{where}.ops[{o}]", int),
                   _field(op, "mult", f"{where}.ops[{o}]", int))
                for o, op in enumerate(_field(data, "ops", where, list)))
    skips = tuple(_expect(s, f"{where}.skips[{i}]", int) for i, s in enumerate(_field(data, "skips", where, list)))
    return Cell(ops, _field(data, "choice", where, bool), _field(data, "residual", where, bool), skips)


_KIND_NAMES = {int: "an integer", bool: "true or false", str: "text", list: "a list", dict: "a mapping"}


def _field(data: Any, key: str, where: str, kind: type) -> Any:
    """data[key], of type `kind`; ArchitectureError naming where it is missing or mistyped."""
    _expect(data, where or "the architecture", dict)
    name = f"{where}.{key}" if where else key
    if key not in data:
        raise ArchitectureError(f"architecture dict: {name} is missing")
    return _expect(data[key], name, kind)


def _expect(value: Any, name: str, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ArchitectureError(f"architecture dict: {name} must be {_KIND_NAMES[kind]}, got {shown(value)}")
    return value


def encode_op(op: Op) -> str:
    """Token of one op, e.g. c3, s5m2, mb3e6, zero."""
    prefix, has_kernel, mult_meaning = OP_KINDS[op.kind]
    if not has_kernel:
        return prefix
    if op.kind == "mbconv":
        return f"mb{op.kernel}e{op.mult}"
    suffix = f"m{op.mult}" if mult_meaning and op.mult != 1 else ""
    return f"{prefix}{op.kernel}{suffix}"


def decode_op(token: str, position: int = 0) -> Op:
    """Op from its token; raises CodecError naming the token."""
    if token == "id":
        return Op("identity")
    if token == "zero":
        return Op("zero")
    match = _MBCONV.fullmatch(token)
    if match:
        return Op("mbconv", int(match.group(1)), int(match.group(2)))
    match = _KERNEL_OP.fullmatch(token)
    if match:
        kind = _KIND_BY_PREFIX[match.group(1)]
        mult = int(match.group(3)) if match.group(3) is not None else 1
        return Op(kind, int(match.group(2)), mult)
    raise CodecError(token, position, "an op such as c3, dc3, s5, s5m2, d3, mp3, ap3, mb3e6, id or zero")


def encode_cell(cell: Cell) -> str:
    """Token of one cell, e.g. c1+c3+s5@0 or mb3e6_mb5e3_zero@r."""
    text = ("_" if cell.choice else "+").join(encode_op(op) for op in cell.ops)
    attrs = (["r"] if cell.residual else []) + [str(s) for s in cell.skips]
    return text + ("@" + ".".join(attrs) if attrs else "")


def _split(text: str, sep: str, offset: int) -> list[tuple[str, int]]:
    """Split keeping each piece's absolute position; empty pieces are errors."""
    pieces, start = [], 0
    for part in text.split(sep):
        if not part:
            raise CodecError(sep, offset + max(start - 1, 0), f"something between the '{sep}' separators")
        pieces.append((part, offset + start))
        start += len(part) + 1
    return pieces


def _decode_stage(text: str, position: int) -> Stage:
    pieces = _split(text, ":", position)
    head, head_pos = pieces[0]
    match = _STAGE.fullmatch(head)
    if not match:
        raise CodecError(head, head_pos, "a stage head like w32 or w64s2")
    stride = int(match.group(2)) if match.group(2) is not None else 1
    if len(pieces) < 2:
        raise CodecError(head, head_pos, "':' and at least one cell after the stage head")
    cells = tuple(_decode_cell(piece, pos) for piece, pos in pieces[1:])
    return Stage(int(match.group(1)), stride, cells)


def _decode_cell(text: str, position: int) -> Cell:
    body, at, attr_text = text.partition("@")
    if not body:
        raise CodecError("@", position, "an op before '@'")
    if at and not attr_text:
        raise CodecError("@", position + len(body), "'r' or skip-input cell indices after '@'")
    if "+" in body and "_" in body:
        raise CodecError(body, position, "branches joined by '+' or alternatives joined by '_', not both")
    choice = "_" in body
    ops = tuple(decode_op(tok, pos) for tok, pos in _split(body, "_" if choice else "+", position))
    residual, skips = False, []
    if at:
        attr_pos = position + len(body) + 1
        for attr, pos in _split(attr_text, ".", attr_pos):
            if attr == "r" and not residual and not skips:
                residual = True
            elif _ATTR_INDEX.fullmatch(attr):
                skips.append(int(attr))
            else:
                raise CodecError(attr, pos, "'r' first, then skip-input cell indices")
    return Cell(ops=ops, choice=choice, residual=residual, skips=tuple(skips))
