"""The HTML report in a real browser (headless Chromium): it renders without console errors, fetches nothing,
shows every trial, sorts, and opens any trial's details with its curves and network diagram.

The report is a real one: a small nas-random run on digits through `katib-nas run` (conftest's digits_run).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from katib_nas.contract.codec import decode
from katib_nas.runner.manifest import Objective
from katib_nas.runner.metrics_collector import MetricLog, MetricSummary
from katib_nas.runner.report import ReportInput, write_report_files
from katib_nas.runner.report_html import sparkline
from katib_nas.runner.store import TrialRow

from .browser import browser, console_errors, fetched_urls, open_page
from .conftest import DIGITS_RUN_EPOCHS as EPOCHS


@pytest.fixture
def run_report(digits_run: Path) -> Path:
    return digits_run / "report"


def trial_names(report: Path) -> list[str]:
    with open(report / "trials.csv") as handle:
        return [row["trial"] for row in csv.DictReader(handle)]


def visible_images(driver: Any) -> list[tuple[str, bool]]:
    return driver.execute_script("return Array.from(document.images).filter(i => i.offsetParent !== null)"
                                 ".map(i => [i.alt, i.complete && i.naturalWidth > 0])")


def column(driver: Any, index: int) -> list[str]:
    return driver.execute_script(f"return Array.from(document.querySelectorAll('#trials tbody tr'))"
                                 f".map(r => r.cells[{index}].textContent)")


def test_report_renders_every_trial_without_errors_or_requests(run_report: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from selenium.webdriver.common.by import By

    names = trial_names(run_report)
    assert len(names) == 3
    with browser(monkeypatch) as driver:
        open_page(driver, run_report / "report.html")
        rows = driver.find_elements(By.CSS_SELECTOR, "#trials tbody tr")
        assert [row.get_attribute("data-trial") for row in rows] == names
        assert all(row.is_displayed() for row in rows)
        curves = driver.find_elements(By.CSS_SELECTOR, "#trials tbody polyline")
        assert len(curves) == len(names)  # every trial's objective per epoch, in its row
        assert all(len(c.get_attribute("points").split()) == EPOCHS for c in curves)
        images = visible_images(driver)
        assert {alt for alt, _ in images} >= {"objective per trial", "Pareto front", "every trial's curve"}
        assert any(alt.startswith("network of ") for alt, _ in images)  # the best trial's diagram
        assert all(loaded for _, loaded in images), images
        assert driver.find_element(By.TAG_NAME, "h1").text == "nas-random-digits"
        assert console_errors(driver) == []
        assert fetched_urls(driver) == []


def test_headers_sort_the_trials_and_a_click_opens_a_trials_details(run_report: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from selenium.webdriver.common.by import By

    with browser(monkeypatch) as driver:
        open_page(driver, run_report / "report.html")
        headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#trials th")]
        objective = headers.index("Validation-Accuracy")
        header = driver.find_elements(By.CSS_SELECTOR, "#trials th")[objective]
        header.click()
        ascending = [float(v) for v in column(driver, objective)]
        assert ascending == sorted(ascending)
        header.click()
        assert [float(v) for v in column(driver, objective)] == sorted(ascending, reverse=True)
        assert header.get_attribute("data-dir") == "desc"

        row = driver.find_elements(By.CSS_SELECTOR, "#trials tbody tr")[-1]
        name = row.get_attribute("data-trial")
        row.click()
        shown = [d for d in driver.find_elements(By.CSS_SELECTOR, ".detail") if d.is_displayed()]
        assert [d.get_attribute("data-trial") for d in shown] == [name]
        assert shown[0].find_element(By.TAG_NAME, "h2").text == name
        captions = [c.text for c in shown[0].find_elements(By.CSS_SELECTOR, ".curves figcaption")]
        assert captions == ["Validation-Accuracy per report", "Validation-Loss per report"]  # collected per epoch
        assert [f"network of {name}", True] in visible_images(driver)
        assert console_errors(driver) == []


def test_the_console_check_sees_a_script_error(run_report: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text((run_report / "report.html").read_text().replace("</body>",
                                                                      "<script>undefinedName();</script></body>"))
    with browser(monkeypatch) as driver:
        open_page(driver, broken)
        assert any("undefinedName" in message for message in console_errors(driver))


def synthetic_input(name: str, trial_name: str) -> ReportInput:
    arch = "in8x8x1-cls10-stem8/w8:c3"
    logs = [MetricLog("2025-01-01T00:00:0%dZ" % i, "Validation-Accuracy", v) for i, v in enumerate(("0.5", "0.7"))]
    trial = TrialRow(trial_name, 1, "Succeeded", {"architecture": arch}, {}, 0.0,
                     observation={"Validation-Accuracy": MetricSummary("Validation-Accuracy", "0.5", "0.7", "0.7")})
    return ReportInput(name, "nas-random", Objective("maximize", "Validation-Accuracy",
                                                      strategies=(("Validation-Accuracy", "max"),)),
                       "Succeeded", "", [trial], {trial_name: logs}, "test")


def test_text_from_the_experiment_is_escaped(tmp_path: Path) -> None:
    write_report_files(synthetic_input("x<script>alert(1)</script>", "t<b>1"), tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "t<b>1" not in page and 'data-trial="t&lt;b&gt;1"' in page
    decode("in8x8x1-cls10-stem8/w8:c3")


def test_a_report_written_again_replaces_the_earlier_one_whole(tmp_path: Path) -> None:
    """An Experiment created again under its name, no result yet: the old run's best network stayed beside it."""
    import dataclasses

    write_report_files(synthetic_input("nas", "nas-1"), tmp_path)
    assert (tmp_path / "best_architecture.json").is_file() and (tmp_path / "best_network.svg").is_file()
    (tmp_path / "notes.md").write_text("mine")
    earlier = synthetic_input("nas", "nas-1")
    pending = dataclasses.replace(earlier.trials[0], condition="Running", observation={})
    write_report_files(dataclasses.replace(earlier, trials=[pending], logs={}), tmp_path)
    left = sorted(path.name for path in tmp_path.iterdir())
    assert not {"best_architecture.json", "best_architecture.txt", "best_network.svg", "best_network.png"} & set(left)
    assert "notes.md" in left and "summary.md" in left and not [name for name in left if name.startswith(".")]
    assert "nas-1" in (tmp_path / "trials.csv").read_text()


def test_sparkline_scales_values_to_its_box_and_draws_nothing_for_none() -> None:
    line = sparkline([0.1, 0.5, 0.9], 100, 20)
    points = [tuple(map(float, p.split(","))) for p in line.split('points="')[1].split('"')[0].split()]
    assert [x for x, _ in points] == [3.0, 50.0, 97.0]
    assert [y for _, y in points] == [17.0, 10.0, 3.0]  # the lowest value at the bottom
    assert "polyline" not in sparkline([], 100, 20)
