"""The documentation states what the code does: every setting with its real default, links that resolve."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from katib_nas.contract.algorithm_names import ALGORITHM_NAMES
from katib_nas.suggestion.core.algorithms import ALGORITHMS
from katib_nas.suggestion.core.settings import SettingsError, describe_settings, parse_settings

from .conftest import REPO

ALGORITHMS_PAGE = (REPO / "docs" / "algorithms.md").read_text()


def algorithm_section(name: str) -> str:
    """The body of docs/algorithms.md's section on one algorithm."""
    section = ALGORITHMS_PAGE.split(f"\n## {name}\n", 1)
    assert len(section) == 2, f"docs/algorithms.md has no '## {name}' section"
    return section[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_algorithms_page_lists_every_setting_with_its_default(name: str) -> None:
    body = algorithm_section(name)
    for setting, default, _allowed, _help in describe_settings(ALGORITHMS[name].settings_class):
        row = re.search(rf"^\| `{re.escape(setting)}`\s*\|\s*([^|]+?)\s*\|", body, re.M)
        assert row, f"docs/algorithms.md section {name} lacks setting {setting}"
        assert row.group(1) == default, f"docs say {setting} defaults to {row.group(1)}, code says {default}"


def documented_bound(text: str) -> float:
    """A range end as the page writes it: 4096, 0.5 or 2^31-1."""
    power = re.fullmatch(r"(\d+)\^(\d+)-1", text)
    return int(power.group(1)) ** int(power.group(2)) - 1 if power else float(text)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_the_ranges_on_the_algorithms_page_are_the_ones_the_settings_accept(name: str) -> None:
    """The page gives a range for every numeric setting; each accepts both ends and refuses the nearest values
    outside."""
    rows = re.findall(r"^\| `(\w+)`\s*\|[^|]*\|\s*(integer|number) in \[([^,\]]+), ([^\]]+)\]\s*\|",
                      algorithm_section(name), re.M)
    settings_class = ALGORITHMS[name].settings_class
    numeric = {f.name for f in dataclasses.fields(settings_class) if f.type in ("int", "float", int, float)}
    assert {row[0] for row in rows} == numeric, f"docs/algorithms.md section {name}: ranges"
    for setting, kind, low_text, high_text in rows:
        low, high = documented_bound(low_text), documented_bound(high_text)
        if kind == "integer":
            inside, outside = [str(int(low)), str(int(high))], [str(int(low) - 1), str(int(high) + 1)]
        else:
            inside = [repr(low), repr(high)]
            outside = [repr(math.nextafter(low, -math.inf)), repr(math.nextafter(high, math.inf))]
        for text in inside:
            assert getattr(parse_settings(settings_class, {setting: text}, name), setting) == float(text)
        for text in outside:
            with pytest.raises(SettingsError, match=rf"setting {setting}='{re.escape(text)}' for algorithm {name} "
                                                    rf"must be an? {kind} in \["):
                parse_settings(settings_class, {setting: text}, name)


def test_readme_table_lists_every_algorithm_as_the_contract_names_it() -> None:
    readme = (REPO / "README.md").read_text()
    rows = re.findall(r"^\| `([a-z-]+)`\s*\| (.+?)\s*\|$", readme, re.M)
    assert rows == list(ALGORITHM_NAMES.items())


PAGES = ["README.md", "BENCHMARKS.md", "RELIABILITY.md"] + sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page: str) -> None:
    path = REPO / page
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{page} links to {target}, which does not exist"


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens, a repeated
    heading numbered -1, -2, ..."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, repeat = slug, 0
        while anchor in anchors:
            repeat += 1
            anchor = f"{slug}-{repeat}"
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", PAGES)
def test_links_to_a_section_name_a_heading_of_the_page(page: str) -> None:
    path = REPO / page
    for target, anchor in re.findall(r"\]\(([^)#:]*)#([^)]+)\)", path.read_text()):
        linked = (path.parent / target) if target else path
        assert anchor in heading_anchors(linked.read_text()), f"{page} links to {target or page}#{anchor}, no such heading"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in first_block] == [["make", "demo"], ["make", "test"]]


def test_the_documented_one_shot_trial_defaults_are_the_commands() -> None:
    from katib_nas.trial_image.inputs import SUPERNET_DEFAULTS

    assert f"`--arch-fraction` ({SUPERNET_DEFAULTS.arch_fraction:g})" in ALGORITHMS_PAGE
    assert f"`--arch-every` ({SUPERNET_DEFAULTS.arch_every})" in ALGORITHMS_PAGE


def test_benchmarks_gives_the_standard_runs_tables_as_its_summary_holds_them() -> None:
    """BENCHMARKS.md's copy of the standard search run's tables (per method, paired, latency, goals) is the
    summary the benchmark script wrote, row for row and in order: a row changed, left out or added in either
    place would be a figure with two values."""
    summary = (REPO / "bench" / "results" / "search-standard" / "summary.md").read_text().splitlines()
    head = "| method | seed | trials | search figures |"
    assert head in summary, "summary.md lost its per-search table"
    per_search_start = summary.index(head)
    per_search_end = next(i for i in range(per_search_start, len(summary)) if not summary[i].startswith("|"))
    expected = [line for i, line in enumerate(summary)
                if line.startswith("|") and not per_search_start <= i < per_search_end]
    page = (REPO / "BENCHMARKS.md").read_text()
    assert "## Search quality: the paired standard run" in page
    section = page.split("## Search quality: the paired standard run", 1)[1].split("\n### ", 1)[0]
    copied = [line for line in section.splitlines() if line.startswith("|")]
    assert len(expected) > 30, "summary.md lost its tables"
    assert copied == expected, "BENCHMARKS.md's standard-run tables differ from summary.md's (diff below)"


def test_benchmarks_gives_the_longer_final_trainings_tables_as_the_report_holds_them() -> None:
    """The tables of "Do the comparisons hold under a longer final training?" are bench_longer_final.py's
    report (longer.md), row for row and in order."""
    report = (REPO / "bench" / "results" / "longer-final-6x30k" / "longer.md").read_text().splitlines()
    expected = [line for line in report if line.startswith("|")]
    page = (REPO / "BENCHMARKS.md").read_text()
    heading = "### Do the comparisons hold under a longer final training?"
    assert heading in page
    section = page.split(heading, 1)[1].split("\n#", 1)[0]
    copied = [line for line in section.splitlines() if line.startswith("|")]
    assert len(expected) >= 8, "longer.md lost its tables"
    assert copied == expected, "BENCHMARKS.md's longer-final tables differ from longer.md's (diff below)"
