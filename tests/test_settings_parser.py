"""One strict reader for every setting: ASCII digits only, ranges, bounded length, no setting given twice."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from katib_nas.contract.errors import InvalidInput
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.experiment import ExperimentInfo
from katib_nas.suggestion.core.settings import (
    MAX_SETTING_CHARS,
    SettingsError,
    SettingSpec,
    describe_settings,
    parse_int,
    parse_int_list,
    parse_settings,
    read_float,
    read_int,
    setting,
    settings_from_pairs,
)

from .conftest import REPO, load_yaml

#: Texts Python's int() or float() accept, or str.isdigit() calls digits, that are not ASCII numbers.
NOT_ASCII_NUMBERS = ["²", "١٢", "1_000", "٣", "𝟕", "0x10", "1e3", "nan", "inf", "-inf", "", " ", "+", "3\n3"]


@pytest.mark.parametrize("text", NOT_ASCII_NUMBERS)
def test_read_int_takes_ascii_digits_only(text: str) -> None:
    assert read_int(text) is None


@pytest.mark.parametrize("text", ["nan", "inf", "1e309", "-1e309", "١.٥", "1_0.5", "0x1p3", "", "."])
def test_read_float_takes_finite_ascii_decimals_only(text: str) -> None:
    assert read_float(text) is None


@pytest.mark.parametrize("text, value", [("7", 7), (" 7 ", 7), ("-3", -3), ("+3", 3), ("007", 7)])
def test_read_int_reads_plain_integers(text: str, value: int) -> None:
    assert read_int(text) == value


def test_parse_int_names_where_and_the_range() -> None:
    with pytest.raises(SettingsError, match=r"setting x=12 must be in \[1, 11\]"):
        parse_int("12", "setting x", 1, 11)
    with pytest.raises(SettingsError, match="setting x='²' must be an integer"):
        parse_int("²", "setting x", 1, 11)


def test_parse_int_list_bounds_items_and_duplicates() -> None:
    assert parse_int_list("1, 2,3", "s", 0, 9, max_items=3) == (1, 2, 3)
    with pytest.raises(SettingsError, match="more than 3 values"):
        parse_int_list("1,2,3,4", "s", 0, 9, max_items=3)
    with pytest.raises(SettingsError, match="lists 2 more than once"):
        parse_int_list("2,2", "s", 0, 9, max_items=3, unique=True)
    with pytest.raises(SettingsError, match="must be integers separated by commas"):
        parse_int_list("1,²", "s", 0, 9, max_items=3)


def test_a_setting_given_twice_is_refused_not_last_wins() -> None:
    with pytest.raises(SettingsError, match="setting 'seed' for algorithm nas-random is given more than once"):
        settings_from_pairs([("seed", "1"), ("seed", "2")], "nas-random")
    assert settings_from_pairs([("seed", "1"), ("stem_width", "8")], "nas-random") == {"seed": "1", "stem_width": "8"}


def example(name: str, settings: dict[str, str]) -> ExperimentInfo:
    spec = load_yaml(REPO / "examples" / name)["spec"]
    base = {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]}
    base.update(settings)
    objective = spec["objective"]
    return ExperimentInfo("x", spec["algorithm"]["algorithmName"], base, objective["objectiveMetricName"],
                          additional_metrics=tuple(objective.get("additionalMetricNames") or ()),
                          parallel_trial_count=1, nas_config=spec["nasConfig"])


ENVELOPENET = "envelopenet-fashion-mnist.yaml"
PROXYLESS = "proxylessnas-oneshot-fashion-mnist.yaml"


@pytest.mark.parametrize("name, settings, message", [
    (ENVELOPENET, {"initial_cells": "²"}, "setting initial_cells='²' must be one integer"),
    (ENVELOPENET, {"max_cells": "٣"}, "setting max_cells='٣' must be one integer"),
    (ENVELOPENET, {"grow_stages": "²"}, "setting grow_stages='²' must be all, none, or stage indices"),
    (ENVELOPENET, {"grow_stages": "0,0"}, "lists stage 0 more than once"),
    (ENVELOPENET, {"iterations": "٣"}, "setting iterations='٣'"),
    (ENVELOPENET, {"seed": "1_0"}, "setting seed='1_0'"),
    (PROXYLESS, {"stage_widths": "16,٣٢"}, "setting stage_widths='16,٣٢' must be integers"),
    (PROXYLESS, {"beta": "١.٥"}, "setting beta='١.٥'"),
    (PROXYLESS, {"stage_widths": ",".join(["8"] * 400)}, "lists more than 64 values"),
    (PROXYLESS, {"latency_metric": "x" * (MAX_SETTING_CHARS + 1)}, f"more than {MAX_SETTING_CHARS}"),
])
def test_unicode_digits_and_oversize_settings_are_invalid_input(name: str, settings: dict[str, Any],
                                                               message: str) -> None:
    experiment = example(name, settings)
    for call in (lambda: engine.validate(experiment), lambda: engine.suggest(experiment, [], 1, 0)):
        with pytest.raises(InvalidInput) as info:
            call()
        assert message in str(info.value)


@dataclass(frozen=True)
class Knobs:
    """A settings class of every kind the parser reads, with both-sided, one-sided and no ranges."""

    steps: int = setting(3, "number of steps", low=1, high=10)
    lower_only: int = setting(2, "at least one", low=1)
    rate: float = setting(0.5, "a rate", low=0.0, high=1.0)
    free: float = setting(1.5, "any number")
    flag: bool = setting(False, "a switch")
    mode: str = setting("fast", "how", choices=("fast", "slow"))
    label: str = setting("", "free text")
    history: str = setting("", "written back by the algorithm", state=True)


def parse(**raw: str) -> Knobs:
    return parse_settings(Knobs, raw, "algo")


def test_parsed_values_have_their_types_and_defaults_stay() -> None:
    knobs = parse(steps="7", rate="0.25", free="-3e2", label=" a b ", mode="slow")
    assert knobs == Knobs(steps=7, rate=0.25, free=-300.0, label="a b", mode="slow")
    assert parse() == Knobs()


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", "on", " On "])
def test_bool_spellings_of_true(text: str) -> None:
    assert parse(flag=text).flag is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no", "off", " OFF "])
def test_bool_spellings_of_false(text: str) -> None:
    assert parse(flag=text).flag is False


@pytest.mark.parametrize("raw, allowed", [
    ({"flag": "maybe"}, "true or false"),
    ({"flag": "2"}, "true or false"),
    ({"mode": "medium"}, "one of fast, slow"),
    ({"steps": "0"}, "an integer in [1, 10]"),
    ({"steps": "11"}, "an integer in [1, 10]"),
    ({"steps": "2.5"}, "an integer in [1, 10]"),
    ({"lower_only": "0"}, "an integer >= 1"),
    ({"rate": "-0.001"}, "a number in [0, 1]"),
    ({"rate": "1.001"}, "a number in [0, 1]"),
    ({"free": "nan"}, "a number"),
])
def test_out_of_range_and_mistyped_values_name_what_is_allowed(raw: dict[str, str], allowed: str) -> None:
    (name, text), = raw.items()
    with pytest.raises(SettingsError) as info:
        parse(**raw)
    assert str(info.value) == f"setting {name}={text!r} for algorithm algo must be {allowed}"


def test_range_ends_are_inclusive_and_a_lower_bound_alone_has_no_upper() -> None:
    assert (parse(steps="1").steps, parse(steps="10").steps) == (1, 10)
    assert (parse(rate="0").rate, parse(rate="1").rate) == (0.0, 1.0)
    assert parse(lower_only="1").lower_only == 1
    assert parse(lower_only="123456789012").lower_only == 123456789012


def test_allowed_text_of_every_kind_of_setting() -> None:
    allowed = {name: text for name, _, text, _ in describe_settings(Knobs)}
    assert allowed == {"steps": "an integer in [1, 10]", "lower_only": "an integer >= 1", "rate": "a number in [0, 1]",
                       "free": "a number", "flag": "true or false", "mode": "one of fast, slow", "label": "text"}
    assert SettingSpec("x", high=4).allowed(int) == "an integer"


def test_describe_lists_user_settings_with_defaults_and_leaves_state_out() -> None:
    rows = describe_settings(Knobs)
    assert [row[0] for row in rows] == ["steps", "lower_only", "rate", "free", "flag", "mode", "label"]
    assert rows[0] == ("steps", "3", "an integer in [1, 10]", "number of steps")
    assert [row[1] for row in rows[2:5]] == ["0.5", "1.5", "false"]


def test_unknown_setting_names_the_user_settings_only() -> None:
    with pytest.raises(SettingsError) as info:
        parse(stpes="3", zz="1")
    assert str(info.value) == ("unknown setting 'stpes' for algorithm algo; known settings: steps, lower_only, rate, "
                               "free, flag, mode, label")


def test_a_state_setting_is_accepted_though_not_listed() -> None:
    assert parse(history="a.b").history == "a.b"


def test_types_given_as_classes_read_the_same_as_annotations() -> None:
    plain = dataclasses.make_dataclass("Plain", [("n", int, setting(3, "n", low=1, high=5)),
                                                 ("on", bool, setting(False, "on"))], frozen=True)
    assert parse_settings(plain, {"n": "5", "on": "yes"}, "algo") == plain(n=5, on=True)
    with pytest.raises(SettingsError, match="an integer in"):
        parse_settings(plain, {"n": "6"}, "algo")


def test_setting_length_limit_is_exact() -> None:
    assert parse(label="x" * MAX_SETTING_CHARS).label == "x" * MAX_SETTING_CHARS
    assert parse(label=" " * 5 + "x" * MAX_SETTING_CHARS + " ").label == "x" * MAX_SETTING_CHARS
    with pytest.raises(SettingsError, match=f"label for algorithm algo is {MAX_SETTING_CHARS + 1} characters long"):
        parse(label="x" * (MAX_SETTING_CHARS + 1))
    assert MAX_SETTING_CHARS == 1024


def test_setting_specs_are_immutable() -> None:
    spec = SettingSpec("help", low=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.low = 2  # type: ignore[misc]
    assert spec == SettingSpec("help", 1) and hash(spec) == hash(SettingSpec("help", 1))
    assert (spec.high, spec.choices, spec.state) == (None, (), False)


def test_parse_int_range_is_inclusive_at_both_ends() -> None:
    assert (parse_int("1", "s", 1, 11), parse_int("11", "s", 1, 11)) == (1, 11)
    with pytest.raises(SettingsError, match=r"s=0 must be in \[1, 11\]"):
        parse_int("0", "s", 1, 11)
    with pytest.raises(InvalidInput, match="must be an integer"):
        parse_int(7, "s", 1, 11)  # type: ignore[arg-type]


def test_parse_int_list_refuses_an_item_outside_the_range_at_either_end() -> None:
    assert parse_int_list("0,9", "s", 0, 9, max_items=2) == (0, 9)
    for text, value in (("3,10", 10), ("-1,3", -1)):
        with pytest.raises(SettingsError) as info:
            parse_int_list(text, "s", 0, 9, max_items=2)
        assert str(info.value) == f"s={text!r}: value {value} outside [0, 9]"


def test_parse_int_list_allows_repeats_unless_unique() -> None:
    assert parse_int_list("2,2", "s", 0, 9, max_items=3) == (2, 2)
    assert parse_int_list("1,2", "s", 0, 9, max_items=3, unique=True) == (1, 2)
    assert parse_int_list("1,2,3", "s", 0, 9, max_items=3) == (1, 2, 3)


def test_long_values_are_shortened_in_messages_past_80_characters() -> None:
    whole = "y" * 78  # its repr is 80 characters
    with pytest.raises(SettingsError) as info:
        parse_int(whole, "s", 1, 2)
    assert str(info.value) == f"s={whole!r} must be an integer"
    longer = "y" * 79
    with pytest.raises(SettingsError) as info:
        parse_int(longer, "s", 1, 2)
    assert str(info.value) == f"s={longer!r}"[:62] + "...' (79 characters) must be an integer"
