"""Shared fixtures: paths to the repo, Katib's reference files and example experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KATIB_REFERENCE = REPO.parent / "shared" / "katib"


def load_yaml(path: Path) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def katib_reference() -> Path:
    if not KATIB_REFERENCE.is_dir():
        pytest.fail(f"Katib reference files missing at {KATIB_REFERENCE}")
    return KATIB_REFERENCE
