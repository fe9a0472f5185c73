"""One strict reader for every setting: ASCII digits only, ranges, bounded length, no setting given twice."""

from __future__ import annotations

from typing import Any

import pytest

from katib_nas.contract.errors import InvalidInput
from katib_nas.suggestion.core import engine
from katib_nas.suggestion.core.experiment import ExperimentInfo
from katib_nas.suggestion.core.settings import (
    MAX_SETTING_CHARS,
    SettingsError,
    parse_int,
    parse_int_list,
    read_float,
    read_int,
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
