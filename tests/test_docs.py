"""The documentation states what the code does: every setting with its real default, links that resolve."""

from __future__ import annotations

import re

import pytest

from katib_nas.contract.algorithm_names import ALGORITHM_NAMES
from katib_nas.suggestion.core.algorithms import ALGORITHMS
from katib_nas.suggestion.core.settings import describe_settings

from .conftest import REPO

ALGORITHMS_PAGE = (REPO / "docs" / "algorithms.md").read_text()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_algorithms_page_lists_every_setting_with_its_default(name: str) -> None:
    section = ALGORITHMS_PAGE.split(f"\n## {name}\n", 1)
    assert len(section) == 2, f"docs/algorithms.md has no '## {name}' section"
    body = section[1].split("\n## ", 1)[0]
    for setting, default, _allowed, _help in describe_settings(ALGORITHMS[name].settings_class):
        row = re.search(rf"^\| `{re.escape(setting)}`\s*\|\s*([^|]+?)\s*\|", body, re.M)
        assert row, f"docs/algorithms.md section {name} lacks setting {setting}"
        assert row.group(1) == default, f"docs say {setting} defaults to {row.group(1)}, code says {default}"


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
