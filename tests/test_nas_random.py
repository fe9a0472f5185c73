"""nas-random: uniform, deterministic, exactly as many proposals as asked, always buildable text."""

from __future__ import annotations

import copy
import re
from collections import Counter

import pytest

from katib_nas.contract import codec
from katib_nas.contract.assignments import MAX_VALUE_BYTES
from katib_nas.contract.errors import InvalidInput
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.algorithms.base import seeded_rng
from katib_nas.suggestion.core.algorithms.nas_random import sample_architecture
from katib_nas.suggestion.core.experiment import ExperimentInfo, make_trial
from katib_nas.suggestion.core.space import parse_nas_config

from .conftest import KATIB_FIXTURES, REPO, load_yaml

EXAMPLE = load_yaml(REPO / "examples" / "nas-random-fashion-mnist.yaml")


def experiment(settings: dict[str, str] | None = None, name: str = "exp", nas_config: dict | None = None,
               algorithm: str = "nas-random") -> ExperimentInfo:
    return ExperimentInfo(name=name, algorithm=algorithm, settings=settings or {},
                          objective_metric="Validation-Accuracy",
                          nas_config=nas_config or EXAMPLE["spec"]["nasConfig"])


def test_same_inputs_same_proposals_across_fresh_instances() -> None:
    first = engine.suggest(experiment(), [], 5, 0).assignments
    again = engine.suggest(experiment(), [], 5, 0).assignments
    assert first == again
    assert len({a["architecture"] for a in first}) == 5


def test_suggestion_k_does_not_depend_on_batching() -> None:
    whole = engine.suggest(experiment(), [], 6, 0).assignments
    history = [make_trial(f"t{i}", a, "RUNNING", []) for i, a in enumerate(whole[:2])]
    rest = engine.suggest(experiment(), history, 4, 2).assignments
    assert rest == whole[2:]


def test_seed_and_experiment_name_change_the_stream() -> None:
    base = engine.suggest(experiment(), [], 3, 0).assignments
    assert engine.suggest(experiment({"seed": "7"}), [], 3, 0).assignments != base
    assert engine.suggest(experiment(name="other"), [], 3, 0).assignments != base


@pytest.mark.parametrize("count", [0, 1, 2, 7])
def test_exactly_the_requested_number(count: int) -> None:
    assert len(engine.suggest(experiment(), [], count, 0).assignments) == count


def test_proposals_avoid_architectures_already_tried() -> None:
    proposals = engine.suggest(experiment(), [], 1, 0).assignments
    history = [make_trial("t0", proposals[0], "SUCCEEDED", [("Validation-Accuracy", "0.8")])]
    again = engine.suggest(experiment(), history, 1, 0).assignments
    assert again[0]["architecture"] != proposals[0]["architecture"]


def test_every_assignment_is_referenced_by_the_example_trial_template() -> None:
    references = {p["reference"] for p in EXAMPLE["spec"]["trialTemplate"]["trialParameters"]}
    assignments = engine.suggest(experiment(), [], 3, 0).assignments
    assert all(set(a) == references for a in assignments)
    args = " ".join(EXAMPLE["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["command"])
    for name in EXAMPLE["spec"]["trialTemplate"]["trialParameters"]:
        assert "${trialParameters.%s}" % name["name"] in args


@pytest.mark.parametrize("layers", [1, 8])
def test_samples_from_katib_enas_spaces_decode_and_respect_resolution(layers: int) -> None:
    nas_config = load_yaml(KATIB_FIXTURES / "enas-experiment.yaml")["spec"]["nasConfig"]
    nas_config["graphConfig"]["numLayers"] = layers
    space = parse_nas_config(nas_config)
    for k in range(200):
        arch = sample_architecture(space, seeded_rng("enas", k), 16, 0.5)
        assert codec.decode(codec.encode(arch)) == arch
        assert len(arch.cells) == space.num_layers
        assert all(h >= 1 and w >= 1 for h, w in arch.spatial_sizes())


def test_first_layer_choice_is_uniform_over_candidates() -> None:
    space = parse_nas_config(EXAMPLE["spec"]["nasConfig"])
    draws = Counter()
    n = 4000
    for k in range(n):
        arch = sample_architecture(space, seeded_rng("uniform", k), 16, 0.0)
        draws[arch.cells[0].ops[0]] += 1
    expected = Counter(c.op for c in space.candidates)
    for op, count in expected.items():
        share = count / len(space.candidates)
        assert abs(draws[op] / n - share) < 0.035, (op, draws[op] / n, share)


def test_history_with_any_metric_strings_is_harmless() -> None:
    values = ["unavailable", "nan", "inf", "-inf", "", "0.9", "1e400", "Genotype(normal=[x])", "  0.5 "]
    conditions = ["CREATED", "RUNNING", "SUCCEEDED", "KILLED", "FAILED", "METRICSUNAVAILABLE", "EARLYSTOPPED",
                  "UNKNOWN", "bogus"]
    history = [make_trial(f"t{i}", {"architecture": "not-an-arch" if i % 2 else ""}, conditions[i % 9],
                          [("Validation-Accuracy", v), ("latency-ms", v)]) for i, v in enumerate(values * 3)]
    proposals = engine.suggest(experiment(), history, 3, len(history)).assignments
    assert len(proposals) == 3
    numeric = [t.numbers.get("Validation-Accuracy") for t in history]
    assert {x for x in numeric if x is not None} == {0.9, 0.5}


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"sead": "1"}, "unknown setting 'sead' for algorithm nas-random; known settings: seed"),
        ({"seed": "one"}, "setting seed='one' for algorithm nas-random must be an integer in [0, 2147483647]"),
        ({"seed": "-1"}, "must be an integer in [0, 2147483647]"),
        ({"skip_probability": "1.5"}, "skip_probability='1.5' for algorithm nas-random must be a number in [0, 1]"),
        ({"skip_probability": "nan"}, "must be a number in [0, 1]"),
        ({"stem_width": "0"}, "stem_width='0'"),
    ],
)
def test_bad_settings_name_the_setting_and_range(settings: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        engine.validate(experiment(settings))
    assert message in str(info.value)


def test_unknown_and_planned_algorithms_name_the_available_ones() -> None:
    with pytest.raises(InvalidInput, match=r"unknown algorithm 'enas'; available: .*nas-random"):
        engine.validate(experiment(algorithm="enas"))


def stride_two_space(num_layers: int) -> dict:
    """8x8 images (halved at most 3 times) and one operation, a stride-2 convolution."""
    return {
        "graphConfig": {"numLayers": num_layers, "inputSizes": [8, 8, 1], "outputSizes": [10]},
        "operations": [{"operationType": "convolution", "parameters": [
            {"name": "filter_size", "parameterType": "categorical", "feasibleSpace": {"list": ["3"]}},
            {"name": "stride", "parameterType": "categorical", "feasibleSpace": {"list": ["2"]}}]}],
    }


def test_infeasible_space_is_rejected_up_front() -> None:
    with pytest.raises(InvalidInput, match=re.escape("can be halved only 3 times, fewer than numLayers=5")):
        engine.validate(experiment(nas_config=stride_two_space(5)))


def deep_space(num_layers: int) -> dict:
    nas_config = copy.deepcopy(EXAMPLE["spec"]["nasConfig"])
    nas_config["graphConfig"]["numLayers"] = num_layers
    return nas_config


def test_a_space_whose_networks_do_not_fit_katibs_limit_is_refused_at_validation() -> None:
    with pytest.raises(InvalidInput, match=r"16 of 16 networks drawn from this space have architecture text over "
                                           r"the 4096-byte limit .*numLayers=64 or skip_probability=1$"):
        engine.validate(experiment({"skip_probability": "1"}, nas_config=deep_space(64)))
    # The largest networks of 48 layers with every skip are about 3,100 bytes: accepted.
    engine.validate(experiment({"skip_probability": "1"}, nas_config=deep_space(48)))


def test_oversize_draws_are_redrawn_where_most_networks_fit() -> None:
    """56 layers with skip_probability 0.95: about a quarter of the draws are over 4096 bytes."""
    settings, nas_config = {"skip_probability": "0.95"}, deep_space(56)
    engine.validate(experiment(settings, nas_config=nas_config))
    space = parse_nas_config(nas_config)
    first_draws = [len(codec.encode(sample_architecture(space, seeded_rng("exp", 0, k), 16, 0.95, 32)).encode())
                   for k in range(30)]
    assert sum(size > MAX_VALUE_BYTES for size in first_draws) >= 3  # the proposals below met oversize draws
    proposals = engine.suggest(experiment(settings, nas_config=nas_config), [], 30, 0).assignments
    sizes = [len(a["architecture"].encode()) for a in proposals]
    assert max(sizes) <= MAX_VALUE_BYTES and len({a["architecture"] for a in proposals}) == 30


def test_request_count_out_of_range_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="current_request_number=-1"):
        engine.suggest(experiment(), [], -1, 0)


def test_a_space_halved_exactly_as_often_as_it_has_layers_is_feasible() -> None:
    nas_config = stride_two_space(3)
    engine.validate(experiment(nas_config=nas_config))
    [proposal] = engine.suggest(experiment(nas_config=nas_config), [], 1, 0).assignments
    assert [stage.stride for stage in codec.decode(proposal["architecture"]).stages] == [2, 2, 2]


def scripted_draws(monkeypatch: pytest.MonkeyPatch, texts: list[str]) -> None:
    """nas-random's draws replaced by `texts`, in turn."""
    from katib_nas.suggestion.core.algorithms import nas_random

    remaining = iter(texts)
    monkeypatch.setattr(nas_random, "_draw_text", lambda *args: next(remaining))


def test_a_draw_at_katibs_byte_limit_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    from katib_nas.suggestion.core.algorithms.nas_random import _draw_new

    scripted_draws(monkeypatch, ["a" * MAX_VALUE_BYTES, "b"])
    assert _draw_new(None, None, None, set()) == "a" * MAX_VALUE_BYTES  # type: ignore[arg-type]


def test_a_repeat_that_fits_is_kept_over_oversize_redraws(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a space of few small networks and many oversize ones, a repeat is better than INVALID_ARGUMENT."""
    from katib_nas.suggestion.core.algorithms.nas_random import MAX_DRAWS, _draw_new

    scripted_draws(monkeypatch, ["seen"] + ["x" * (MAX_VALUE_BYTES + 1)] * (MAX_DRAWS - 1))
    assert _draw_new(None, None, None, {"seen"}) == "seen"  # type: ignore[arg-type]


def test_a_proposal_that_keeps_repeating_is_drawn_eight_times_and_keeps_the_last(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A draw that repeats a tried architecture is redrawn at most 8 times in all; the 8th is then proposed."""
    from katib_nas.suggestion.core.algorithms.nas_random import _draw_new

    repeats = [f"tried-{k}" for k in range(1, 11)]
    scripted_draws(monkeypatch, repeats)
    assert _draw_new(None, None, None, set(repeats)) == "tried-8"  # type: ignore[arg-type]


def test_size_probes_of_exactly_katibs_limit_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation counts a probe as oversize only above 4096 bytes: every probe at the limit is accepted."""
    from katib_nas.suggestion.core.algorithms.nas_random import SIZE_PROBES

    scripted_draws(monkeypatch, ["x" * MAX_VALUE_BYTES] * SIZE_PROBES)
    engine.validate(experiment())


@pytest.mark.parametrize("oversize, refused", [(7, False), (8, True)])
def test_half_the_size_probes_over_the_limit_refuse_the_space(monkeypatch: pytest.MonkeyPatch, oversize: int,
                                                              refused: bool) -> None:
    from katib_nas.suggestion.core.algorithms.nas_random import SIZE_PROBES

    scripted_draws(monkeypatch, ["x" * (MAX_VALUE_BYTES + 1)] * oversize + ["small"] * (SIZE_PROBES - oversize))
    if refused:
        with pytest.raises(InvalidInput, match=f"{oversize} of {SIZE_PROBES} networks drawn from this space"):
            engine.validate(experiment())
    else:
        engine.validate(experiment())
