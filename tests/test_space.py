"""Search space from Katib's nasConfig: Katib's own examples accepted as they are, bad ones named."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from katib_nas.contract.codec import decode
from katib_nas.contract.spec import Op
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.experiment import ExperimentInfo
from katib_nas.suggestion.core.space import SpaceError, parse_nas_config

from .conftest import KATIB_FIXTURES, REPO, load_yaml

KATIB_EXAMPLES = [KATIB_FIXTURES / "enas-experiment.yaml"]
DARTS_EXAMPLES = [KATIB_FIXTURES / "darts-experiment.yaml"]
OUR_EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", KATIB_EXAMPLES + OUR_EXAMPLES, ids=lambda p: p.name)
def test_katib_and_project_examples_parse(path: Path) -> None:
    nas_config = load_yaml(path)["spec"]["nasConfig"]
    space = parse_nas_config(nas_config)
    assert space.num_layers == nas_config["graphConfig"]["numLayers"]
    assert space.candidates


@pytest.mark.parametrize("path", DARTS_EXAMPLES, ids=lambda p: p.name)
def test_darts_examples_operations_parse_but_missing_input_sizes_is_named(path: Path) -> None:
    nas_config = load_yaml(path)["spec"]["nasConfig"]
    with pytest.raises(SpaceError, match="inputSizes"):
        parse_nas_config(nas_config)
    nas_config["graphConfig"].update(inputSizes=[32, 32, 3], outputSizes=[10])
    assert parse_nas_config(nas_config).candidates


def test_enas_cpu_expands_every_parameter_combination() -> None:
    space = parse_nas_config(load_yaml(KATIB_FIXTURES / "enas-experiment.yaml")["spec"]["nasConfig"])
    by_source: dict[str, int] = {}
    for candidate in space.candidates:
        by_source[candidate.source] = by_source.get(candidate.source, 0) + 1
    # convolution 3 sizes x 5 filters x 2 strides; separable adds 2 multipliers; depthwise 3x2x2; reduction 2x2
    assert by_source == {"convolution": 30, "separable_convolution": 60, "depthwise_convolution": 12, "reduction": 4}
    assert space.input_shape == (32, 32, 3) and space.num_classes == 10
    assert Op("maxpool", 3) in space.ops() and Op("sepconv", 7, 2) in space.ops()


def test_extensions_mbconv_zero_skip() -> None:
    space = parse_nas_config({
        "graphConfig": {"numLayers": 4, "inputSizes": [28, 28, 1], "outputSizes": [10]},
        "operations": [
            {"operationType": "mbconv", "parameters": [
                {"name": "kernel_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3", "5", "7"]}},
                {"name": "expand_ratio", "parameterType": "categorical", "feasibleSpace": {"list": ["3", "6"]}}]},
            {"operationType": "zero"},
            {"operationType": "skip_connection"},
        ],
    })
    assert space.ops() == [Op("mbconv", k, e) for k in (3, 5, 7) for e in (3, 6)] + [Op("zero"), Op("identity")]


GOOD = {
    "graphConfig": {"numLayers": 2, "inputSizes": [8, 8, 1], "outputSizes": [10]},
    "operations": [{"operationType": "convolution", "parameters": [
        {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}}]}],
}


def _with(path: tuple, value: object) -> dict:
    config = copy.deepcopy(GOOD)
    target = config
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return config


@pytest.mark.parametrize(
    "config, message",
    [
        (None, "has no nasConfig"),
        (_with(("graphConfig", "numLayers"), 0), "numLayers=0"),
        (_with(("graphConfig", "inputSizes"), [8, 8]), "inputSizes"),
        (_with(("graphConfig", "outputSizes"), [1]), "at least 2 classes"),
        (_with(("operations",), []), "operations is empty"),
        (_with(("operations", 0, "operationType"), "attention"), "unknown operationType"),
        (_with(("operations", 0, "parameters", 0, "name"), "kernel"), "unknown parameter 'kernel'"),
        (_with(("operations", 0, "parameters"), []), "missing parameter 'filter_size'"),
        (_with(("operations", 0, "parameters", 0, "feasibleSpace"), {"list": ["x"]}), "must be an integer"),
        (_with(("operations", 0, "parameters", 0, "feasibleSpace"), {"list": ["99"]}), "must be in [1, 11]"),
        (_with(("operations", 0, "parameters", 0, "feasibleSpace"), {"list": []}), "list is empty"),
        (_with(("operations", 0, "parameters", 0, "parameterType"), "double"), "parameterType"),
    ],
)
def test_bad_nas_config_is_named(config: dict | None, message: str) -> None:
    with pytest.raises(SpaceError) as info:
        parse_nas_config(config)
    assert message in str(info.value)


def filter_sizes(feasible_space: dict[str, str]) -> dict:
    """GOOD with filter_size as an int range."""
    return _with(("operations", 0, "parameters", 0), {"name": "filter_size", "parameterType": "int",
                                                      "feasibleSpace": feasible_space})


@pytest.mark.parametrize("feasible_space, kernels", [
    ({"min": "3", "max": "7", "step": "2"}, [3, 5, 7]),
    ({"min": "3", "max": "8", "step": "2"}, [3, 5, 7]),  # as Katib's ENAS: range(min, max + 1, step)
    ({"min": "3", "max": "7", "step": "5"}, [3]),
    ({"min": "3", "max": "5"}, [3, 4, 5]),
])
def test_int_range_takes_min_then_every_step_up_to_max(feasible_space: dict[str, str], kernels: list[int]) -> None:
    space = parse_nas_config(filter_sizes(feasible_space))
    assert [candidate.op.kernel for candidate in space.candidates] == kernels


def test_nas_random_draws_only_the_stepped_kernel_sizes() -> None:
    """min 3, max 7, step 2: 60 networks use kernels 3, 5 and 7, all three and nothing else."""
    config = filter_sizes({"min": "3", "max": "7", "step": "2"})
    experiment = ExperimentInfo("steps", "nas-random", {"skip_probability": "0"}, "acc", nas_config=config)
    drawn = {op.kernel for proposal in engine.suggest(experiment, [], 60, 0).assignments
             for stage in decode(proposal["architecture"]).stages for cell in stage.cells for op in cell.ops}
    assert drawn == {3, 5, 7}
