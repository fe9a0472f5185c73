"""Every request costs bounded work: search-space sizes are computed before anything is materialised.

Each nasConfig here is a few hundred bytes; before the bounds, the first two made the server allocate
until MemoryError (an int range of 10^8 values, a list of 4,000 duplicates times three parameters).
"""

from __future__ import annotations

import copy
import tracemalloc
from typing import Any, Callable

import pytest

from katib_nas.contract.codec import decode, encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import (
    MAX_CELLS,
    MAX_CLASSES,
    MAX_INPUT_CHANNELS,
    MAX_INPUT_SIDE,
    MAX_KERNEL,
    MAX_MULT,
    MAX_WIDTH,
    Architecture,
    ArchitectureError,
    Cell,
    Op,
    Stage,
)
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.experiment import ExperimentInfo
from katib_nas.suggestion.core.space import MAX_CANDIDATES, MAX_PARAMETER_VALUES, SpaceError, parse_nas_config

CONV = {"operationType": "convolution", "parameters": [
    {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}}]}
GOOD: dict[str, Any] = {"graphConfig": {"numLayers": 2, "inputSizes": [8, 8, 1], "outputSizes": [10]},
                        "operations": [CONV]}
#: Peak Python allocation allowed while refusing a request: far below what materialising any of them takes.
REFUSAL_MEMORY_BYTES = 2_000_000


def config_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    config = copy.deepcopy(GOOD)
    change(config)
    return config


def parameter(name: str, kind: str, **space: Any) -> dict[str, Any]:
    return {"name": name, "parameterType": kind, "feasibleSpace": space}


def operation(op_type: str, *parameters: dict[str, Any]) -> dict[str, Any]:
    return {"operationType": op_type, "parameters": list(parameters)}


def refused_cheaply(config: dict[str, Any]) -> str:
    """The SpaceError message; fails when refusing it allocated more than REFUSAL_MEMORY_BYTES."""
    tracemalloc.start()
    try:
        with pytest.raises(SpaceError) as info:
            parse_nas_config(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < REFUSAL_MEMORY_BYTES, f"refusing took {peak} bytes"
    return str(info.value)


def test_huge_int_range_is_refused_from_its_bounds_naming_parameter_and_limit() -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "int", min="1", max="3"),
        parameter("num_filter", "int", min="1", max="100000000"))))
    message = refused_cheaply(config)
    assert f"operations[0] (convolution) parameter num_filter feasibleSpace.max=100000000 must be in [1, {MAX_WIDTH}]" \
        in message


def test_int_range_beyond_a_kernels_bounds_is_refused() -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "int", min="1", max="99"))))
    assert f"feasibleSpace.max=99 must be in [1, {MAX_KERNEL}]" in refused_cheaply(config)


@pytest.mark.parametrize("space, message", [
    ({"min": "5", "max": "3"}, "is empty"),
    ({"min": "1", "max": "3", "step": "0"}, "step=0"),
    ({"min": "1", "max": "3", "step": "99999999999999999999"}, "step"),
    ({"min": "1"}, "feasibleSpace.max"),
])
def test_bad_int_ranges_are_named(space: dict[str, str], message: str) -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "int", **space))))
    assert message in refused_cheaply(config)


def test_duplicate_list_values_are_refused_naming_the_value() -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "categorical", list=["3"] * 4000))))
    message = refused_cheaply(config)
    assert "operations[0] (convolution) parameter filter_size" in message and "value 3 more than once" in message


def test_same_number_written_twice_is_a_duplicate() -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "categorical", list=["3", "+3"]))))
    assert "more than once" in refused_cheaply(config)


def test_long_list_is_refused_from_its_length() -> None:
    values = [str(v) for v in range(1, 50_001)]
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "categorical", list=["3"]),
        parameter("num_filter", "categorical", list=values))))
    message = refused_cheaply(config)
    assert "50000 values" in message and str(MAX_PARAMETER_VALUES) in message


def test_product_of_candidate_counts_is_refused_before_expanding() -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "separable_convolution", parameter("filter_size", "int", min="1", max="11"),
        parameter("num_filter", "int", min="1", max="4096"),
        parameter("depth_multiplier", "int", min="1", max="8"),
        parameter("stride", "int", min="1", max="2"))))
    message = refused_cheaply(config)
    assert "operations[0] (separable_convolution)" in message
    assert f"{11 * 4096 * 8 * 2} candidates" in message and str(MAX_CANDIDATES) in message


def test_many_operations_are_refused_from_their_total() -> None:
    config = config_with(lambda c: c.__setitem__("operations", [{"operationType": "zero"}] * 1_000_000))
    assert f"more than {MAX_CANDIDATES} candidates" in refused_cheaply(config)


def test_duplicate_parameter_names_are_refused() -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "categorical", list=["3"]),
        parameter("filter_size", "categorical", list=["5"]))))
    assert "parameter 'filter_size' is listed twice" in refused_cheaply(config)


@pytest.mark.parametrize("text", ["²", "١٢", "1_0", "3.0", "0x3", "", "1e1", "3\n3"])
def test_feasible_values_are_ascii_integers(text: str) -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "categorical", list=[text]))))
    assert "must be an integer" in refused_cheaply(config)


@pytest.mark.parametrize("sizes, field, message", [
    ({"inputSizes": [10_000_000, 8, 1]}, "inputSizes", f"[1, {MAX_INPUT_SIDE}]"),
    ({"inputSizes": [8, 8, MAX_INPUT_CHANNELS + 1]}, "inputSizes", f"[1, {MAX_INPUT_CHANNELS}]"),
    ({"outputSizes": [2**31 - 1]}, "outputSizes", f"[2, {MAX_CLASSES}]"),
])
def test_graph_sizes_are_bounded_by_what_the_codec_accepts(sizes: dict[str, Any], field: str, message: str) -> None:
    text = refused_cheaply(config_with(lambda c: c["graphConfig"].update(sizes)))
    assert f"graphConfig.{field}" in text and message in text


def test_validate_applies_the_same_bounds_as_suggest() -> None:
    config = config_with(lambda c: c["operations"].__setitem__(0, operation(
        "convolution", parameter("filter_size", "categorical", list=["3"] * 4000))))
    experiment = ExperimentInfo("x", "nas-random", {}, "acc", nas_config=config)
    for call in (lambda: engine.validate(experiment), lambda: engine.suggest(experiment, [], 1, 0)):
        with pytest.raises(InvalidInput, match="more than once"):
            call()


def test_largest_architecture_the_spec_allows_round_trips_through_the_codec() -> None:
    cell = Cell((Op("mbconv", MAX_KERNEL, MAX_MULT),), skips=())
    cells = (cell,) + tuple(Cell((Op("conv", MAX_KERNEL),), skips=(0,)) for _ in range(MAX_CELLS - 1))
    arch = Architecture((MAX_INPUT_SIDE, MAX_INPUT_SIDE, MAX_INPUT_CHANNELS), MAX_CLASSES, MAX_WIDTH,
                        (Stage(MAX_WIDTH, 2, cells),))
    assert decode(encode(arch)) == arch


@pytest.mark.parametrize("text, message", [
    (f"in{MAX_INPUT_SIDE + 1}x8x1-cls10-stem8/w8:c3", "input"),
    (f"in8x8x{MAX_INPUT_CHANNELS + 1}-cls10-stem8/w8:c3", "input"),
    (f"in8x8x1-cls{MAX_CLASSES + 1}-stem8/w8:c3", "num_classes"),
    (f"in8x8x1-cls10-stem{MAX_WIDTH + 1}/w8:c3", "stem width"),
    ("in8x8x1-cls10-stem8/w999999:c3", "width 999999"),
    ("in8x8x1-cls10-stem8/w8" + ":c3" * (MAX_CELLS + 1), "cells"),
])
def test_decoder_refuses_what_the_suggestion_can_never_emit(text: str, message: str) -> None:
    with pytest.raises(ArchitectureError, match=message):
        decode(text)


@pytest.mark.parametrize("text", ["in8x8x1-cls10-stem8/w8:c3\n", "in8x8x1-cls10-stem8/w8:c3@r\n",
                                  "in8x8x1-cls10-stem8\n/w8:c3", "in8x8x1-cls10-stem8/w8\n:c3"])
def test_decoder_refuses_a_trailing_newline(text: str) -> None:
    with pytest.raises(ArchitectureError):
        decode(text)
