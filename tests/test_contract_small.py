"""The contract's small modules case by case: assignment values, metric lines, the one-shot search settings text,
a supernet's derived networks, Branch-Stats and Skip-Gates, and the MAC count of an architecture text."""

from __future__ import annotations

import math

import pytest

from katib_nas.contract.assignments import final_architecture, unsafe_value_reason
from katib_nas.contract.branch_stats import (
    StatisticsError,
    format_branch_stats,
    format_skip_gates,
    parse_branch_stats,
    parse_skip_gates,
)
from katib_nas.contract.codec import decode, encode
from katib_nas.contract.cost import architecture_macs
from katib_nas.contract.errors import InvalidInput, shown
from katib_nas.contract.metric_format import format_number, format_value, metric_line
from katib_nas.contract.oneshot_settings import SearchConfig, from_text, to_text
from katib_nas.contract.supernet import choices_of, derive
from katib_nas.contract.trial_bounds import MAX_EPOCHS, MAX_SEED

NET = "in8x8x1-cls10-stem8/w8:c3"
SUPERNET = decode("in8x8x1-cls10-stem8/w8:mb3e3_c3_zero@r/w16s2:c3_id:mb5e6_c1_c3@r")


@pytest.mark.parametrize("char", [" ", "\t", "\n", '"', "'", ",", "$", "`", "\\"])
def test_assignment_values_refuse_characters_substitution_breaks(char: str) -> None:
    assert unsafe_value_reason(f"a{char}b") == "it holds whitespace, a quote, a comma, '$', '`' or '\\'"


def test_assignment_values_are_limited_to_4096_bytes_of_utf8() -> None:
    assert unsafe_value_reason("x" * 4096) is None
    assert unsafe_value_reason("é" * 2048) is None
    assert unsafe_value_reason("x" * 4097) == "it is 4097 bytes long, over the limit of 4096"
    assert unsafe_value_reason("é" * 2049) == "it is 4098 bytes long, over the limit of 4096"
    assert unsafe_value_reason(NET) is None


def test_final_architecture_prefers_the_reported_network_then_the_architecture_assignment() -> None:
    other = "in8x8x1-cls10-stem8/w8:c5"
    assert final_architecture({"architecture": NET}, {"Best-Architecture": other}) == other
    assert final_architecture({"a": other, "architecture": NET}, {}) == NET
    assert final_architecture({"a": other, "architecture": "junk"}, {"Best-Architecture": "junk"}) == other
    assert final_architecture({"b": f' "{NET}" '}, {"Best-Architecture": " "}) == NET
    assert final_architecture({"architecture": "", "x": "7"}, {}) is None
    assert final_architecture({}, {}) is None


@pytest.mark.parametrize("value, text", [(0.1234567, "0.123457"), (1234567.0, "1.23457e+06"), (3, "3"),
                                         (math.nan, "nan"), (math.inf, "nan"), (-math.inf, "nan"), (-0.5, "-0.5")])
def test_numbers_print_with_six_significant_digits_and_nan_for_the_rest(value: float, text: str) -> None:
    assert format_number(value) == text
    assert format_value(value) == text


def test_values_in_messages_are_cut_to_their_limit() -> None:
    assert shown("x" * 38) == "'" + "x" * 38 + "'"
    assert shown("x" * 39) == "'" + "x" * 36 + "..."
    assert shown(list(range(100)), 10) == "[0, 1, ..."
    assert shown(None) == "None"


def test_metric_lines_print_strings_as_they_are() -> None:
    assert metric_line("Validation-Accuracy", 0.91234567) == "Validation-Accuracy=0.912346"
    assert metric_line("Best-Architecture", NET) == f"Best-Architecture={NET}"
    assert metric_line("flops", 12) == "flops=12"
    assert format_value("1.23456789") == "1.23456789"


def test_search_settings_text_is_canonical_and_reads_back() -> None:
    config = SearchConfig(epochs=4, warmup=0, loss="addlin", target=1.5, beta=0.0, lambda_=0.25, archlr=0.01,
                          retrain=3, seed=7)
    text = to_text(config)
    assert text == "epochs-4_warmup-0_loss-addlin_target-1.5_beta-0_lambda-0.25_archlr-0.01_retrain-3_seed-7"
    assert from_text(text) == config
    assert to_text(SearchConfig()) == ("epochs-12_warmup-2_loss-mullog_target-0_beta-0.6_lambda-0.1_archlr-0.006_"
                                       "retrain-0_seed-0")


def test_search_settings_are_immutable_values() -> None:
    config = SearchConfig(seed=2)
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]
    assert len({config, SearchConfig(seed=2), SearchConfig()}) == 2


def test_search_settings_keep_defaults_for_missing_keys_and_skip_empty_pairs() -> None:
    assert from_text("") == SearchConfig()
    assert from_text("seed-3__epochs-8_") == SearchConfig(seed=3, epochs=8)
    assert from_text("lambda-0.5") == SearchConfig(lambda_=0.5)


@pytest.mark.parametrize("text, message", [
    ("epochs-x", "search settings: epochs='x' must be int"),
    ("epochs-1.5", "search settings: epochs='1.5' must be int"),
    ("target-fast", "search settings: target='fast' must be float"),
    ("speed-3", "search settings: bad pair 'speed-3'; expected key-value with key one of epochs, warmup, loss, "
                "target, beta, lambda, archlr, retrain, seed"),
    ("epochs", "bad pair 'epochs'"),
    ("epochs-4_seed-1_epochs-2", "search settings: epochs is given twice"),
])
def test_search_settings_bad_pairs_are_named(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        from_text(text)
    assert message in str(info.value) and str(info.value).startswith("search settings: ")


@pytest.mark.parametrize("changes", [
    {"epochs": 1, "warmup": 0}, {"target": 0.0}, {"beta": 0.0}, {"lambda_": 0.0}, {"archlr": 1e-9}, {"retrain": 0},
    {"seed": 0}, {"target": 0.0011}, {"loss": "none", "target": 0.0005}, {"loss": "addlin", "target": 0.0005},
    {"epochs": 3, "warmup": 2}, {"epochs": MAX_EPOCHS}, {"retrain": MAX_EPOCHS}, {"seed": MAX_SEED},
])
def test_search_settings_accept_the_ends_of_their_ranges(changes: dict[str, object]) -> None:
    config = SearchConfig(**changes)  # type: ignore[arg-type]
    assert config.check() is config
    assert from_text(to_text(config)) == config


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0, "warmup": 0}, "need epochs >= 1 and 0 <= warmup < epochs, got epochs=0 warmup=0"),
    ({"epochs": 2, "warmup": 2}, "got epochs=2 warmup=2"),
    ({"warmup": -1}, "got epochs=12 warmup=-1"),
    ({"loss": "mul"}, "loss 'mul' must be one of mullog, addlin, none"),
    ({"target": -0.1}, "target, beta, lambda, retrain and seed must be >= 0 and archlr > 0"),
    ({"beta": -0.1}, "must be >= 0 and archlr > 0"),
    ({"lambda_": -0.1}, "must be >= 0 and archlr > 0"),
    ({"archlr": 0.0}, "must be >= 0 and archlr > 0"),
    ({"retrain": -1}, "must be >= 0 and archlr > 0"),
    ({"seed": -1}, "must be >= 0 and archlr > 0"),
    ({"target": 0.001}, "the mullog loss needs a target above 0.001 ms"),
    ({"target": 1e-9}, "the mullog loss needs a target above 0.001 ms"),
    ({"target": math.nan}, "target=nan must be a finite number"),
    ({"beta": math.inf}, "beta=inf must be a finite number"),
    ({"lambda_": math.nan}, "lambda=nan must be a finite number"),
    ({"archlr": math.inf}, "archlr=inf must be a finite number"),
    ({"epochs": MAX_EPOCHS + 1}, f"epochs={MAX_EPOCHS + 1} must be at most {MAX_EPOCHS}"),
    ({"retrain": MAX_EPOCHS + 1}, f"retrain={MAX_EPOCHS + 1} must be at most {MAX_EPOCHS}"),
    ({"seed": MAX_SEED + 1}, f"seed={MAX_SEED + 1} must be at most {MAX_SEED}"),
])
def test_search_settings_refuse_values_out_of_range(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        SearchConfig(**changes).check()  # type: ignore[arg-type]
    assert str(info.value).startswith("search settings: ") and message in str(info.value)
    with pytest.raises(InvalidInput):
        to_text(SearchConfig(**changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("changes, aware", [({"target": 1.0}, True), ({"target": 0.0}, False),
                                            ({"target": 1.0, "loss": "none"}, False),
                                            ({"target": 1.0, "loss": "addlin"}, True)])
def test_hardware_aware_needs_a_target_and_a_latency_loss(changes: dict[str, object], aware: bool) -> None:
    assert SearchConfig(**changes).hardware_aware is aware  # type: ignore[arg-type]


def test_derive_keeps_one_op_per_block_with_its_residual_flag() -> None:
    network = derive(SUPERNET, [2, 1, 0])
    assert encode(network) == "in8x8x1-cls10-stem8/w8:zero@r/w16s2:id:mb5e6@r"
    assert choices_of(SUPERNET, network) == [2, 1, 0]
    assert choices_of(SUPERNET, derive(SUPERNET, [0, 0, 2])) == [0, 0, 2]


def test_derive_needs_one_choice_per_block() -> None:
    with pytest.raises(ValueError, match="2 choices for 3 blocks"):
        derive(SUPERNET, [0, 1])
    with pytest.raises(ValueError, match="4 choices for 3 blocks"):
        derive(SUPERNET, [0, 1, 0, 0])


@pytest.mark.parametrize("text", [
    "in8x8x1-cls10-stem8/w8:c5@r/w16s2:c3:c1@r",          # c5 is no candidate of block 0
    "in8x8x1-cls10-stem8/w8:mb3e3@r/w16s2:c5:c1@r",       # c5 is no candidate of block 1
    "in8x8x1-cls10-stem8/w8:mb3e3@r/w16s2:c3+id:c1@r",    # two ops in block 1
])
def test_choices_of_names_the_block_that_is_no_candidate(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"^block \d of the architecture is not one of the supernet's candidates$"):
        choices_of(SUPERNET, decode(text))


@pytest.mark.parametrize("text", [
    "in8x8x1-cls10-stem8/w8:c3@r/w16s2:c3:c1@r/w16:c3",
    "in8x8x1-cls10-stem8/w8:c3@r/w16:c3:c1@r",
    "in8x8x1-cls10-stem8/w8:c3@r/w32s2:c3:c1@r",
    "in8x8x1-cls10-stem8/w8:c3@r/w16s2:c3",
    "in8x8x1-cls10-stem8/w8:c3@r:c3/w16s2:c1@r",
    "in8x8x1-cls12-stem8/w8:c3@r/w16s2:c3:c1@r",
    "in8x8x2-cls10-stem8/w8:c3@r/w16s2:c3:c1@r",
    "in8x8x1-cls10-stem4/w8:c3@r/w16s2:c3:c1@r",
])
def test_choices_of_refuses_a_network_of_another_frame(text: str) -> None:
    with pytest.raises(InvalidInput, match="does not have the supernet's stages and blocks"):
        choices_of(SUPERNET, decode(text))


STATS_ARCH = decode("in8x8x1-cls10-stem8/w12:c1+c3+s3:c3@0/w24s2:c1+s3@0.1")


def test_branch_stats_read_padded_text_and_report_infinities_as_unknown() -> None:
    values = parse_branch_stats(" ms/1_-2_.5/+3e2/inf_-Infinity \n", STATS_ARCH, "mean-square")
    assert values[:2] == ((1.0, -2.0, 0.5), (300.0,))
    assert all(math.isnan(v) for v in values[2])
    assert parse_skip_gates(" g/-/1.5/-0.25_0 ", STATS_ARCH) == ((), (1.5,), (-0.25, 0.0))


def test_branch_stats_of_another_statistic_name_both_and_the_way_out() -> None:
    with pytest.raises(StatisticsError) as info:
        parse_branch_stats("ta/1_2_3/4/5_6", STATS_ARCH, "mean-square")
    assert str(info.value) == ("Branch-Stats holds the taylor statistic, the experiment prunes by mean-square: run the "
                               "trials with --branch-statistic=mean-square, or set the algorithm setting "
                               "statistic=taylor")


def test_statistics_messages_name_the_metric_cell_and_counts() -> None:
    cases = [
        (lambda: parse_branch_stats("ta/1_2_3/4/5", STATS_ARCH), "Branch-Stats cell 2 has 1 values, the cell has 2 "
                                                                  "branches"),
        (lambda: parse_skip_gates("g/-/1/2", STATS_ARCH), "Skip-Gates cell 2 has 1 gates, the cell has 2 skip inputs"),
        (lambda: parse_skip_gates("x/-/1/2", STATS_ARCH), "Skip-Gates='x/-/1/2' must start with g/"),
        (lambda: parse_skip_gates("g/-/1/2_3/4", STATS_ARCH), "Skip-Gates lists 4 cells, the architecture has 3"),
        (lambda: parse_branch_stats("ta/1_2_3/4/5_abcdefghijklmnopqrstuvwxyz", STATS_ARCH),
         "Branch-Stats cell 2: 'abcdefghijklmnopqrst' is not a number"),
        (lambda: parse_branch_stats("zz/" + "1" * 60, STATS_ARCH), "Branch-Stats='zz/" + "1" * 37 + "' must start "
                                                                    "with ta/"),
    ]
    for call, message in cases:
        with pytest.raises(StatisticsError) as info:
            call()
        assert str(info.value) == message


def test_formats_write_one_field_per_cell() -> None:
    assert format_branch_stats([[1.0, 0.5], [math.inf]]) == "ta/1_0.5/nan"
    assert format_skip_gates([[], [], [0.25, -1.0]]) == "g/-/-/0.25_-1"


@pytest.mark.parametrize("text, macs", [
    # stem 3x3 conv 1->2 on 4x4: 288; cell c3 2->2: 576; classifier 2x2: 4
    ("in4x4x1-cls2-stem2/w2:c3", 288 + 576 + 4),
    # widener 1x1 2->4 at 4x4 before the stride-2 pooling: 128; then at 2x2 a c1 4->4: 64; classifier 4x3: 12
    ("in4x4x1-cls3-stem2/w4s2:c1", 288 + 128 + 64 + 12),
    # two branches of width 2 (1x1 4->2 and 3x3 4->2) at 2x2: 32 + 288
    ("in2x2x1-cls2-stem4/w4:c1+c3", 2 * 2 * 4 * 9 + 32 + 288 + 8),
    # a skip from a narrower cell is reduced by a 1x1 (2 -> 4 at 2x2: 32); an equally wide one is free
    ("in2x2x1-cls2-stem2/w2:id/w4:id@0", 2 * 2 * 2 * 9 + 2 * 2 * 4 * 2 + 32 + 8),
    # sepconv, multiplier 2: depthwise 4*2 channels x 9 + pointwise 8 -> 4, at 1x1
    ("in1x1x1-cls2-stem4/w4:s3m2", 36 + 8 * 9 + 4 * 8 + 8),
    # dwconv m1: depthwise only; m2: depthwise 8 x 9 then 1x1 8 -> 4
    ("in1x1x1-cls2-stem4/w4:d3", 36 + 4 * 9 + 8),
    ("in1x1x1-cls2-stem4/w4:d3m2", 36 + 8 * 9 + 4 * 8 + 8),
    # mbconv e1 has no expansion; e2: expand 4 -> 8, depthwise 8 x 9, project 8 -> 4
    ("in1x1x1-cls2-stem4/w4:mb3e1", 36 + 4 * 9 + 4 * 4 + 8),
    ("in1x1x1-cls2-stem4/w4:mb3e2", 36 + 8 * 4 + 8 * 9 + 4 * 8 + 8),
    # a choice cell counts its first alternative; pooling, identity and zero are free
    ("in1x1x1-cls2-stem4/w4:mp3_c3:ap3+id+zero+dc3", 36 + 0 + 1 * 4 * 9 + 8),
])
def test_mac_counts_by_hand(text: str, macs: int) -> None:
    assert architecture_macs(decode(text)) == macs


def test_metric_lines_read_back_what_they_write_with_or_without_a_timestamp() -> None:
    from katib_nas.contract.metric_format import metric_line, parse_metric_line, read_metric_lines

    lines = [metric_line("Validation-Accuracy", 0.5), "2026-01-02T03:04:05.123456Z " + metric_line("params", 12817),
             metric_line("Branch-Stats", "ta/0.1_0.2"), "epoch 1: 12 steps", metric_line("Validation-Accuracy", 0.75)]
    assert parse_metric_line(lines[1]) == ("params", "12817")
    assert parse_metric_line(lines[3]) is None
    assert read_metric_lines("\n".join(lines)) == {"Validation-Accuracy": "0.75", "params": "12817",
                                                   "Branch-Stats": "ta/0.1_0.2"}


@pytest.mark.parametrize("names, prose", [
    (["envelopenet"], "envelopenet"),
    (["envelopenet", "nas-random"], "envelopenet and nas-random"),
    (["envelopenet", "proxylessnas", "nas-random"], "envelopenet, proxylessnas and nas-random"),
])
def test_algorithm_names_in_prose(monkeypatch: pytest.MonkeyPatch, names: list[str], prose: str) -> None:
    from katib_nas.contract import algorithm_names

    monkeypatch.setattr(algorithm_names, "ALGORITHM_NAMES", {name: "" for name in names})
    assert algorithm_names.in_prose() == prose
