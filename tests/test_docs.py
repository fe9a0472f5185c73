"""The README documents every user-facing setting of every served algorithm, with its real default."""

from __future__ import annotations

import re

import pytest

from katib_nas.suggestion.core.algorithms import ALGORITHMS
from katib_nas.suggestion.core.settings import describe_settings

from .conftest import REPO

README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_readme_lists_every_setting_with_its_default(name: str) -> None:
    section = README.split(f"### {name}\n", 1)
    assert len(section) == 2, f"README has no '### {name}' section"
    body = section[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    for setting, default, _allowed, _help in describe_settings(ALGORITHMS[name].settings_class):
        row = re.search(rf"^\| `{re.escape(setting)}`\s*\|\s*([^|]+?)\s*\|", body, re.M)
        assert row, f"README section {name} lacks setting {setting}"
        assert row.group(1) == default, f"README says {setting} defaults to {row.group(1)}, code says {default}"
