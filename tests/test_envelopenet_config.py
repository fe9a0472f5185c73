"""envelopenet settings and nasConfig: resolved as documented, and every mistake named before a trial runs."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from katib_nas.contract.assignments import MAX_VALUE_BYTES
from katib_nas.contract.codec import encode
from katib_nas.contract.errors import InvalidInput
from katib_nas.contract.spec import Op
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.envelopenet import EnvelopeNet
from katib_nas.suggestion.core.algorithms.envelopenet.config import resolve
from katib_nas.suggestion.core.algorithms.envelopenet.construct import largest_network

from .conftest import REPO, load_yaml
from .support.envelopenet import SMALL_NAS_CONFIG, experiment


def test_branches_come_from_the_operations_and_widths_double_per_stage() -> None:
    config = resolve(experiment({"width": "16", "initial_cells": "1,2", "max_cells": "3,2", "grow_stages": "0"}))
    assert config.branch_ops == (Op("conv", 1), Op("conv", 3), Op("sepconv", 3))
    assert config.stage_widths == (16, 32) and config.stem == 16
    assert config.initial_cells == (1, 2) and config.max_cells == (3, 2) and config.growing == (True, False)


def test_width_defaults_to_the_smallest_num_filter_and_operations_are_deduplicated() -> None:
    nas_config = copy.deepcopy(SMALL_NAS_CONFIG)
    nas_config["operations"][0]["parameters"] += [
        {"name": "num_filter", "parameterType": "categorical", "feasibleSpace": {"list": ["48", "24"]}},
        {"name": "stride", "parameterType": "categorical", "feasibleSpace": {"list": ["1", "2"]}}]
    config = resolve(experiment({"width": "0", "stem_width": "8"}, nas_config=nas_config))
    assert config.stage_widths == (24, 48) and config.stem == 8
    assert len(config.branch_ops) == 3


def test_katib_style_conv_and_separable_lists_give_the_six_default_branches() -> None:
    nas_config = load_yaml(REPO / "examples" / "envelopenet-fashion-mnist.yaml")
    config = resolve(experiment({}, nas_config=nas_config["spec"]["nasConfig"]))
    tokens = [f"{'c' if op.kind == 'conv' else 's'}{op.kernel}" for op in config.branch_ops]
    assert tokens == ["c1", "c3", "c5", "s3", "s5", "s7"]


def test_without_width_or_num_filter_the_first_stage_is_32_wide() -> None:
    """width=0 takes the smallest num_filter; a nasConfig without one gives 32, doubled per stage."""
    assert resolve(experiment({"width": "0"})).stage_widths == (32, 64)


@pytest.mark.parametrize("grow_stages, growing", [
    ("all", (True, True)), ("none", (False, False)), (" None ", (False, False)), ("1", (False, True)),
    ("1,0", (True, True)),
])
def test_grow_stages_selects_the_stages_that_grow(grow_stages: str, growing: tuple[bool, ...]) -> None:
    """all, none (any case, spaces around) or stage indices in any order."""
    assert resolve(experiment({"grow_stages": grow_stages})).growing == growing


def layers(count: int) -> dict:
    """SMALL_NAS_CONFIG (8x8 inputs, three branches) with `count` stages."""
    nas_config = copy.deepcopy(SMALL_NAS_CONFIG)
    nas_config["graphConfig"]["numLayers"] = count
    return nas_config


@pytest.mark.parametrize("width, stages, widths", [
    (3, 2, (3, 6)),  # one channel for each of the three branches
    (12, 4, (12, 24, 48, 96)),  # an 8x8 input halved three times
    (1024, 3, (1024, 2048, 4096)),  # the last stage at the widest a stage may be
])
def test_width_and_stage_count_at_their_limits_are_accepted(width: int, stages: int,
                                                            widths: tuple[int, ...]) -> None:
    """Every limit is inclusive: as many branches as channels, as many stages as the input can halve, a last
    stage at the widest a stage may be."""
    config = EnvelopeNet().validate(experiment({"width": str(width)}, nas_config=layers(stages)))
    assert config.stage_widths == widths


def test_a_later_stage_wider_than_the_limit_is_refused() -> None:
    """The width limit holds for the last stage, not only the first two."""
    with pytest.raises(InvalidInput, match=r"3 stages from width 2048 reach 8192, above 4096"):
        engine.validate(experiment({"width": "2048"}, nas_config=layers(3)))


def test_replicas_zero_follows_parallel_trial_count() -> None:
    assert resolve(experiment(parallel=3)).replicas == 3
    assert resolve(experiment({"replicas": "2"}, parallel=3)).replicas == 2
    assert resolve(experiment(parallel=0)).replicas == 1


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"iteration": "3"}, "unknown setting 'iteration' for algorithm envelopenet; known settings: iterations"),
        ({"iterations": "0"}, "setting iterations='0' for algorithm envelopenet must be an integer in [1, 50]"),
        ({"skip": "maybe"}, "setting skip='maybe' for algorithm envelopenet must be true or false"),
        ({"worst_case": "2"}, "worst_case='2'"),
        ({"max_filter_prune": "-1"}, "max_filter_prune='-1'"),
        ({"replicas": "65"}, "replicas='65'"),
        ({"seed": "2001"}, "seed='2001' for algorithm envelopenet must be an integer in [0, 2000]"),
        ({"initial_cells": "2,x"}, "setting initial_cells='2,x' must be one integer or 2 integers separated by commas"),
        ({"initial_cells": "1,2,3"}, "setting initial_cells='1,2,3' lists 3 stages; graphConfig.numLayers gives 2"),
        ({"initial_cells": "0"}, "cells per stage must be in [1, 24]"),
        ({"max_cells": "1", "initial_cells": "2"}, "stage 0 may grow to 1 cells, fewer than its initial_cells 2"),
        ({"grow_stages": "2"}, "setting grow_stages='2' must be all, none, or stage indices in [0, 1]"),
        ({"grow_stages": "-1"}, "setting grow_stages='-1' must be all, none, or stage indices in [0, 1]"),
        ({"grow_stages": "0,1,0"}, "setting grow_stages='0,1,0' lists stage 0 more than once"),
        ({"width": "2"}, "3 envelope branches do not fit in the first stage's width 2"),
        ({"width": "4096"}, "stage width doubles per stage: 2 stages from width 4096 reach 8192"),
    ],
)
def test_bad_settings_are_named(settings: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        engine.validate(experiment(settings))
    assert message in str(info.value)


def test_missing_metric_names_are_reported_before_any_trial() -> None:
    with pytest.raises(InvalidInput, match="add Branch-Stats, Skip-Gates to objective.additionalMetricNames"):
        engine.validate(experiment(metrics=("Validation-Loss",)))
    with pytest.raises(InvalidInput, match="add Skip-Gates"):
        engine.validate(experiment(metrics=("Branch-Stats",)))
    engine.validate(experiment({"skip": "false"}, metrics=("Branch-Stats",)))


@pytest.mark.parametrize(
    "operation, message",
    [
        ({"operationType": "reduction", "parameters": [
            {"name": "reduction_type", "parameterType": "categorical", "feasibleSpace": {"list": ["max_pooling"]}},
            {"name": "pool_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}}]},
         "nasConfig operation reduction cannot be an envelope branch"),
        ({"operationType": "skip_connection", "parameters": []}, "operation skip_connection cannot be an envelope"),
        ({"operationType": "convolution", "parameters": []}, "missing parameter 'filter_size'"),
    ],
)
def test_operations_that_cannot_be_branches_are_rejected(operation: dict, message: str) -> None:
    nas_config = copy.deepcopy(SMALL_NAS_CONFIG)
    nas_config["operations"].append(operation)
    with pytest.raises(InvalidInput, match=message):
        engine.validate(experiment(nas_config=nas_config))


def test_too_many_stages_for_the_input_and_a_missing_nas_config() -> None:
    nas_config = copy.deepcopy(SMALL_NAS_CONFIG)
    nas_config["graphConfig"]["numLayers"] = 5
    expected = r"numLayers=5 stages need 4 halvings, but inputSizes \[8, 8, 1\] allow only 3"
    with pytest.raises(InvalidInput, match=expected):
        engine.validate(experiment(nas_config=nas_config))
    with pytest.raises(InvalidInput, match="no nasConfig"):
        engine.validate(dataclasses.replace(experiment(), nas_config=None))


def test_settings_whose_networks_would_not_fit_in_a_katib_assignment_are_rejected() -> None:
    nas_config = copy.deepcopy(SMALL_NAS_CONFIG)
    nas_config["graphConfig"]["numLayers"] = 3
    with pytest.raises(InvalidInput, match=r"networks of up to 72 cells would take up to \d+ characters"):
        engine.validate(experiment({"max_cells": "24"}, nas_config=nas_config))
    engine.validate(experiment({"max_cells": "24", "skip": "false"}, nas_config=nas_config))
    engine.validate(experiment({"max_cells": "12"}, nas_config=nas_config))


def thirteen_branches(stages: int) -> dict:
    """`stages` stages of envelope cells with 13 branches: c1..c11, s3..s11, dc3 and mb3e2."""
    nas_config = layers(stages)
    conv, separable = nas_config["operations"]
    conv["parameters"][0]["feasibleSpace"]["list"] = ["1", "3", "5", "7", "9", "11"]
    separable["parameters"][0]["feasibleSpace"]["list"] = ["3", "5", "7", "9", "11"]
    categorical = {"parameterType": "categorical"}
    nas_config["operations"] += [
        {"operationType": "dilated_convolution",
         "parameters": [{"name": "filter_size", **categorical, "feasibleSpace": {"list": ["3"]}}]},
        {"operationType": "mbconv",
         "parameters": [{"name": "kernel_size", **categorical, "feasibleSpace": {"list": ["3"]}},
                        {"name": "expand_ratio", **categorical, "feasibleSpace": {"list": ["2"]}}]}]
    return nas_config


def test_the_largest_network_may_take_exactly_katibs_limit() -> None:
    """The limit for an assignment is inclusive: 4096 characters of the largest network's text are accepted,
    4097 refused (here the stem's width digits make the difference)."""
    settings = {"max_cells": "24,24,24,18", "initial_cells": "1", "width": "100", "skip": "false"}
    at_limit = experiment({**settings, "stem_width": "10"}, nas_config=thirteen_branches(4))
    over = experiment({**settings, "stem_width": "100"}, nas_config=thirteen_branches(4))
    assert len(encode(largest_network(resolve(at_limit)))) == MAX_VALUE_BYTES == 4096
    assert len(encode(largest_network(resolve(over)))) == MAX_VALUE_BYTES + 1
    EnvelopeNet().validate(at_limit)
    with pytest.raises(InvalidInput, match=r"take up to 4097 characters of architecture text, above the limit of 4096"):
        engine.validate(over)


def test_early_stopping_is_refused_before_any_trial() -> None:
    """Katib's medianstop stops trials before they report branch statistics, each stop counts as a failure of its
    iteration, and past max_retries GetSuggestions fails, which Katib retries forever: the Experiment would hang."""
    with pytest.raises(InvalidInput, match=r"envelopenet cannot run with early stopping \(medianstop\): .* remove "
                                           r"spec.earlyStopping"):
        engine.validate(dataclasses.replace(experiment(), early_stopping="medianstop"))
    engine.validate(experiment())


def test_katib_sends_its_early_stopping_to_the_service() -> None:
    """The runner's request carries spec.earlyStopping as Katib's ConvertExperiment does."""
    from katib_nas.proto import api_pb2
    from katib_nas.runner.katib_messages import experiment_message
    from katib_nas.runner.manifest import experiment_from_document
    from katib_nas.suggestion.service.convert import experiment_info

    document = load_yaml(REPO / "examples" / "envelopenet-fashion-mnist.yaml")
    assert experiment_info(experiment_message(api_pb2, experiment_from_document(document))).early_stopping == ""
    document["spec"]["earlyStopping"] = {"algorithmName": "medianstop"}
    message = experiment_message(api_pb2, experiment_from_document(document))
    assert message.spec.early_stopping.algorithm_name == "medianstop"
    assert {s.name: s.value for s in message.spec.early_stopping.algorithm_settings} == {
        "min_trials_required": "3", "start_step": "4"}
    assert experiment_info(message).early_stopping == "medianstop"
