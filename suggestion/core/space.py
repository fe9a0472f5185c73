"""Search space from Katib's standard nasConfig.

The nasConfig is taken in the form an Experiment writes it (camelCase keys:
graphConfig numLayers/inputSizes/outputSizes, operations with
operationType and parameters). Every operation expands into candidates, one
per combination of its parameter values, as Katib's ENAS does.

Operation types (Katib's, plus additive extensions):

| operationType            | parameters                                            | op    |
|--------------------------|-------------------------------------------------------|-------|
| convolution              | filter_size, num_filter?, stride?                     | c K   |
| separable_convolution    | filter_size, num_filter?, stride?, depth_multiplier?  | s K   |
| depthwise_convolution    | filter_size, stride?, depth_multiplier?               | d K   |
| dilated_convolution      | filter_size, num_filter?, stride?                     | dc K  |
| reduction                | reduction_type (max_pooling/avg_pooling), pool_size   | mp/ap |
| max_pooling, avg_pooling | filter_size (or pool_size)                            | mp/ap |
| skip_connection, skip, identity | (none)                                         | id    |
| zero  (extension)        | (none)                                                | zero  |
| mbconv (extension)       | expand_ratio, kernel_size? (or filter_size, default 3), num_filter?, stride? | mb K e E |

Every request is parsed in bounded work: each parameter's values are checked
against the parameter's own range (kernel sizes 1..MAX_KERNEL, num_filter
1..MAX_WIDTH, ...) before an int range is expanded, a list value given twice
is refused, and the number of candidates (the product of the parameters'
value counts, summed over operations) is computed and checked against
MAX_CANDIDATES before any candidate is built. graphConfig sizes are bounded
by the architecture spec's limits, so every architecture drawn from the space
can be written as text and read back by the codec.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import (
    MAX_CLASSES,
    MAX_INPUT_CHANNELS,
    MAX_INPUT_SIDE,
    MAX_KERNEL,
    MAX_MULT,
    MAX_WIDTH,
    Op,
)

from .settings import parse_int


class SpaceError(InvalidInput):
    """A nasConfig that cannot be turned into a search space."""


@dataclass(frozen=True)
class Candidate:
    """One concrete operation choice; width None keeps the current width."""

    op: Op
    width: int | None = None
    stride: int = 1
    source: str = ""


@dataclass(frozen=True)
class SearchSpace:
    num_layers: int
    input_shape: tuple[int, int, int]
    num_classes: int
    candidates: tuple[Candidate, ...]

    def ops(self) -> list[Op]:
        """Distinct ops in first-seen order (widths and strides dropped)."""
        return list(dict.fromkeys(c.op for c in self.candidates))

    def widths(self) -> list[int]:
        return sorted({c.width for c in self.candidates if c.width is not None})


# operationType -> (op kind or None when chosen by reduction_type, required params, optional params)
_OPERATIONS: dict[str, tuple[str | None, frozenset[str], frozenset[str]]] = {
    "convolution": ("conv", frozenset({"filter_size"}), frozenset({"num_filter", "stride"})),
    "separable_convolution": ("sepconv", frozenset({"filter_size"}),
                              frozenset({"num_filter", "stride", "depth_multiplier"})),
    "depthwise_convolution": ("dwconv", frozenset({"filter_size"}), frozenset({"stride", "depth_multiplier"})),
    "dilated_convolution": ("dilconv", frozenset({"filter_size"}), frozenset({"num_filter", "stride"})),
    "reduction": (None, frozenset({"reduction_type", "pool_size"}), frozenset()),
    "max_pooling": ("maxpool", frozenset(), frozenset({"filter_size", "pool_size", "stride"})),
    "avg_pooling": ("avgpool", frozenset(), frozenset({"filter_size", "pool_size", "stride"})),
    "skip_connection": ("identity", frozenset(), frozenset()),
    "skip": ("identity", frozenset(), frozenset()),
    "identity": ("identity", frozenset(), frozenset()),
    "zero": ("zero", frozenset(), frozenset()),
    "mbconv": ("mbconv", frozenset({"expand_ratio"}),
               frozenset({"kernel_size", "filter_size", "num_filter", "stride"})),
}
_REDUCTIONS = {"max_pooling": "maxpool", "avg_pooling": "avgpool"}
#: The values every integer parameter may take: the range the architecture spec allows for it.
_INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "filter_size": (1, MAX_KERNEL), "kernel_size": (1, MAX_KERNEL), "pool_size": (1, MAX_KERNEL),
    "depth_multiplier": (1, MAX_MULT), "expand_ratio": (1, MAX_MULT), "num_filter": (1, MAX_WIDTH), "stride": (1, 2),
}
_PARAMETER_TYPES = ("categorical", "discrete", "int")
MAX_LAYERS = 64
#: Most values one parameter may list: the largest parameter range (num_filter's).
MAX_PARAMETER_VALUES = MAX_WIDTH
#: Most candidates a nasConfig may expand to, over all operations (Katib's ENAS CPU example has 106).
MAX_CANDIDATES = 4096

Values = tuple[int | str, ...]


@dataclass(frozen=True)
class OperationValues:
    """One nasConfig operation, checked: its op kind (None: chosen by reduction_type) and each parameter's
    distinct values. `count` is the number of candidates it expands to, known before any is built."""

    where: str
    op_type: str
    kind: str | None
    values: dict[str, Values]

    @property
    def count(self) -> int:
        return math.prod(len(v) for v in self.values.values())

    def candidates(self) -> list[Candidate]:
        names = list(self.values)
        return [_candidate(self.op_type, self.kind, dict(zip(names, combo)))
                for combo in itertools.product(*self.values.values())]


def parse_nas_config(nas_config: dict[str, Any] | None) -> SearchSpace:
    """Build a SearchSpace; raise SpaceError naming the offending part of the nasConfig."""
    if not nas_config:
        raise SpaceError("the experiment has no nasConfig; NAS algorithms need spec.nasConfig")
    graph = nas_config.get("graphConfig") or {}
    num_layers = _graph_int(graph.get("numLayers", 0), "graphConfig.numLayers", 1, MAX_LAYERS)
    input_shape = _input_shape(graph.get("inputSizes"))
    num_classes = _num_classes(graph.get("outputSizes"))
    operations = nas_config.get("operations") or []
    if not operations:
        raise SpaceError("nasConfig.operations is empty; list at least one operation")
    candidates = [c for operation in _parse_operations(operations) for c in operation.candidates()]
    return SearchSpace(num_layers, input_shape, num_classes, tuple(candidates))


def _parse_operations(operations: list[Any]) -> list[OperationValues]:
    """Every operation checked; their candidate counts are added up and checked before any is built."""
    parsed = []
    total = 0
    for index, raw in enumerate(operations):
        operation = _operation(raw, index)
        total += operation.count
        if operation.count > MAX_CANDIDATES:
            raise SpaceError(f"{operation.where} expands to {operation.count} candidates (the product of its "
                             f"parameters' value counts), more than {MAX_CANDIDATES}; list fewer values")
        if total > MAX_CANDIDATES:
            raise SpaceError(f"nasConfig.operations expand to more than {MAX_CANDIDATES} candidates (reached at "
                             f"{operation.where}); list fewer operations or parameter values")
        parsed.append(operation)
    return parsed


def _graph_int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if not low <= value <= high:
            raise SpaceError(f"{where}={value} must be in [{low}, {high}]")
        return value
    return parse_int(value if isinstance(value, str) else repr(value), where, low, high, SpaceError)


def _input_shape(sizes: Any) -> tuple[int, int, int]:
    if not isinstance(sizes, (list, tuple)) or len(sizes) != 3:
        raise SpaceError(f"graphConfig.inputSizes={_short(sizes)} must be [height, width, channels]")
    limits = (MAX_INPUT_SIDE, MAX_INPUT_SIDE, MAX_INPUT_CHANNELS)
    height, width, channels = (_graph_int(v, "graphConfig.inputSizes", 1, high) for v, high in zip(sizes, limits))
    return height, width, channels


def _num_classes(sizes: Any) -> int:
    if not isinstance(sizes, (list, tuple)) or len(sizes) != 1:
        raise SpaceError(f"graphConfig.outputSizes={_short(sizes)} must be [number_of_classes]")
    if isinstance(sizes[0], int) and sizes[0] < 2:
        raise SpaceError(f"graphConfig.outputSizes={list(sizes)}: need at least 2 classes")
    return _graph_int(sizes[0], "graphConfig.outputSizes", 2, MAX_CLASSES)


def _operation(operation: Any, index: int) -> OperationValues:
    if not isinstance(operation, dict):
        raise SpaceError(f"operations[{index}] must be a mapping")
    op_type = str(operation.get("operationType", ""))
    if op_type not in _OPERATIONS:
        shown = _short(op_type) if op_type else "no operationType"
        raise SpaceError(f"operations[{index}] ({shown}): unknown operationType; known: {', '.join(_OPERATIONS)}")
    where = f"operations[{index}] ({op_type})"
    kind, required, optional = _OPERATIONS[op_type]
    values: dict[str, Values] = {}
    for param in operation.get("parameters") or []:
        name = str(param.get("name", "")) if isinstance(param, dict) else ""
        if name not in required | optional:
            allowed = ", ".join(sorted(required | optional)) or "none"
            raise SpaceError(f"{where}: unknown parameter {_short(name)}; allowed: {allowed}")
        if name in values:
            raise SpaceError(f"{where}: parameter {name!r} is listed twice; list it once with all its values")
        values[name] = _feasible_values(param, name, f"{where} parameter {name}")
    missing = sorted(required - set(values))
    if missing:
        raise SpaceError(f"{where}: missing parameter {missing[0]!r}")
    return OperationValues(where, op_type, kind, values)


def _candidate(op_type: str, kind: str | None, params: dict[str, int | str]) -> Candidate:
    """The candidate of one combination of checked parameter values."""
    if kind is None:
        kind = _REDUCTIONS[str(params["reduction_type"])]
    kernel = 0
    if kind not in ("identity", "zero"):
        key = next((k for k in ("filter_size", "kernel_size", "pool_size") if k in params), None)
        kernel = int(params[key]) if key else 3
    mult = int(params.get("depth_multiplier", params.get("expand_ratio", 1)))
    width = int(params["num_filter"]) if "num_filter" in params else None
    return Candidate(Op(kind, kernel, mult), width, int(params.get("stride", 1)), op_type)


def _feasible_values(param: dict[str, Any], name: str, where: str) -> Values:
    """The parameter's distinct values, each checked against the parameter's own range."""
    space = param.get("feasibleSpace") or {}
    kind = str(param.get("parameterType", "")).lower()
    if kind not in _PARAMETER_TYPES:
        raise SpaceError(f"{where}: parameterType {_short(param.get('parameterType'))} must be categorical, "
                         "discrete or int")
    if kind == "int":
        return _int_range(space, name, where)
    listed = space.get("list") or []
    if not listed:
        raise SpaceError(f"{where}: feasibleSpace.list is empty")
    if len(listed) > MAX_PARAMETER_VALUES:
        raise SpaceError(f"{where}: feasibleSpace.list has {len(listed)} values, more than {MAX_PARAMETER_VALUES}")
    values: dict[int | str, str] = {}
    for text in listed:
        value = _value(str(text), name, where)
        if value in values:
            raise SpaceError(f"{where}: feasibleSpace.list holds the value {value} more than once "
                             f"({_short(values[value])} and {_short(str(text))}); list each value once")
        values[value] = str(text)
    return tuple(values)


def _int_range(space: dict[str, Any], name: str, where: str) -> Values:
    """min..max by step, its bounds checked against the parameter's range before it is expanded."""
    if name not in _INTEGER_RANGES:
        raise SpaceError(f"{where}: parameterType int does not fit {name}; list its values as categorical")
    low, high = _INTEGER_RANGES[name]
    first = parse_int(_text(space.get("min")), f"{where} feasibleSpace.min", low, high, SpaceError)
    last = parse_int(_text(space.get("max")), f"{where} feasibleSpace.max", low, high, SpaceError)
    step = parse_int(_text(space.get("step") or "1"), f"{where} feasibleSpace.step", 1, high, SpaceError)
    if last < first:
        raise SpaceError(f"{where}: feasibleSpace min={first} max={last} step={step} is empty")
    return tuple(range(first, last + 1, step))


def _value(text: str, name: str, where: str) -> int | str:
    if name == "reduction_type":
        if text not in _REDUCTIONS:
            raise SpaceError(f"{where}: reduction_type {_short(text)} must be max_pooling or avg_pooling")
        return text
    low, high = _INTEGER_RANGES[name]
    return parse_int(text, f"{where}: {name}", low, high, SpaceError)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:50] + "...'"
