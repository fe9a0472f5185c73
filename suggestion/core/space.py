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
| mbconv (extension)       | kernel_size (or filter_size), expand_ratio, num_filter?, stride? | mb K e E |
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import MAX_KERNEL, MAX_MULT, Op


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
MAX_LAYERS = 64
MAX_WIDTH = 4096


def parse_nas_config(nas_config: dict[str, Any] | None) -> SearchSpace:
    """Build a SearchSpace; raise SpaceError naming the offending part of the nasConfig."""
    if not nas_config:
        raise SpaceError("the experiment has no nasConfig; NAS algorithms need spec.nasConfig")
    graph = nas_config.get("graphConfig") or {}
    num_layers = _int(graph.get("numLayers", 0), "graphConfig.numLayers")
    if not 1 <= num_layers <= MAX_LAYERS:
        raise SpaceError(f"graphConfig.numLayers={num_layers} must be in [1, {MAX_LAYERS}]")
    input_shape = _input_shape(graph.get("inputSizes"))
    num_classes = _num_classes(graph.get("outputSizes"))
    operations = nas_config.get("operations") or []
    if not operations:
        raise SpaceError("nasConfig.operations is empty; list at least one operation")
    candidates: list[Candidate] = []
    for index, operation in enumerate(operations):
        candidates.extend(_expand(operation, index))
    return SearchSpace(num_layers, input_shape, num_classes, tuple(candidates))


def _input_shape(sizes: Any) -> tuple[int, int, int]:
    if not isinstance(sizes, (list, tuple)) or len(sizes) != 3:
        raise SpaceError(f"graphConfig.inputSizes={sizes!r} must be [height, width, channels]")
    height, width, channels = (_int(v, "graphConfig.inputSizes") for v in sizes)
    if min(height, width, channels) < 1:
        raise SpaceError(f"graphConfig.inputSizes={list(sizes)} must be positive")
    return height, width, channels


def _num_classes(sizes: Any) -> int:
    if not isinstance(sizes, (list, tuple)) or len(sizes) != 1:
        raise SpaceError(f"graphConfig.outputSizes={sizes!r} must be [number_of_classes]")
    classes = _int(sizes[0], "graphConfig.outputSizes")
    if classes < 2:
        raise SpaceError(f"graphConfig.outputSizes={list(sizes)}: need at least 2 classes")
    return classes


def _expand(operation: dict[str, Any], index: int) -> list[Candidate]:
    op_type = str(operation.get("operationType", ""))
    where = f"operations[{index}] ({op_type or 'no operationType'})"
    if op_type not in _OPERATIONS:
        raise SpaceError(f"{where}: unknown operationType; known: {', '.join(_OPERATIONS)}")
    kind, required, optional = _OPERATIONS[op_type]
    values = {}
    for param in operation.get("parameters") or []:
        name = str(param.get("name", ""))
        if name not in required | optional:
            allowed = ", ".join(sorted(required | optional)) or "none"
            raise SpaceError(f"{where}: unknown parameter {name!r}; allowed: {allowed}")
        values[name] = _feasible_values(param, f"{where} parameter {name}")
    missing = sorted(required - set(values))
    if missing:
        raise SpaceError(f"{where}: missing parameter {missing[0]!r}")
    names = list(values)
    return [_candidate(op_type, kind, dict(zip(names, combo)), where)
            for combo in itertools.product(*(values[n] for n in names))]


def _candidate(op_type: str, kind: str | None, params: dict[str, str], where: str) -> Candidate:
    if kind is None:
        reduction = params["reduction_type"]
        if reduction not in _REDUCTIONS:
            raise SpaceError(f"{where}: reduction_type {reduction!r} must be max_pooling or avg_pooling")
        kind = _REDUCTIONS[reduction]
    kernel = 0
    if kind not in ("identity", "zero"):
        key = next((k for k in ("filter_size", "kernel_size", "pool_size") if k in params), None)
        kernel = _bounded(params[key], f"{where} {key}", 1, MAX_KERNEL) if key else 3
    mult = 1
    if "depth_multiplier" in params:
        mult = _bounded(params["depth_multiplier"], f"{where} depth_multiplier", 1, MAX_MULT)
    if "expand_ratio" in params:
        mult = _bounded(params["expand_ratio"], f"{where} expand_ratio", 1, MAX_MULT)
    width = _bounded(params["num_filter"], f"{where} num_filter", 1, MAX_WIDTH) if "num_filter" in params else None
    stride = _bounded(params.get("stride", "1"), f"{where} stride", 1, 2)
    return Candidate(Op(kind, kernel, mult), width, stride, op_type)


def _feasible_values(param: dict[str, Any], where: str) -> list[str]:
    space = param.get("feasibleSpace") or {}
    kind = str(param.get("parameterType", "")).lower()
    if kind in ("categorical", "discrete"):
        values = [str(v) for v in space.get("list") or []]
        if not values:
            raise SpaceError(f"{where}: feasibleSpace.list is empty")
        return values
    if kind == "int":
        low = _int(space.get("min"), f"{where} feasibleSpace.min")
        high = _int(space.get("max"), f"{where} feasibleSpace.max")
        step = _int(space.get("step") or 1, f"{where} feasibleSpace.step")
        if step < 1 or high < low:
            raise SpaceError(f"{where}: feasibleSpace min={low} max={high} step={step} is empty")
        return [str(v) for v in range(low, high + 1, step)]
    raise SpaceError(f"{where}: parameterType {param.get('parameterType')!r} must be categorical, discrete or int")


def _int(value: Any, where: str) -> int:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SpaceError(f"{where}={value!r} must be an integer") from None
    if not number.is_integer():
        raise SpaceError(f"{where}={value!r} must be an integer")
    return int(number)


def _bounded(value: str, where: str, low: int, high: int) -> int:
    number = _int(value, where)
    if not low <= number <= high:
        raise SpaceError(f"{where}={value} must be in [{low}, {high}]")
    return number
