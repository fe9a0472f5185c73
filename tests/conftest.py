"""Shared fixtures: paths to the repo, Katib's reference files and example experiments."""

from __future__ import annotations

import re
import shutil
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


def dockerfile_steps(path: Path) -> tuple[list[str], str, list[str]]:
    """(paths copied into the image, the project's pip install target, the entrypoint) as a Dockerfile states them."""
    text = path.read_text()
    copies = [name for line in text.splitlines() if line.startswith("COPY ") for name in line.split()[1:-1]]
    target = re.search(r'^RUN pip install "(\.[^"]*)"', text, re.M).group(1)
    entrypoint = re.search(r"^ENTRYPOINT \[(.*)\]", text, re.M).group(1)
    return copies, target, [part.strip().strip('"') for part in entrypoint.split(",")]


def build_context(dockerfile: Path, destination: Path) -> tuple[Path, str, list[str]]:
    """A copy of what the Dockerfile copies from the repository; with its pip target and entrypoint."""
    copies, target, entrypoint = dockerfile_steps(dockerfile)
    destination.mkdir(parents=True)
    for name in copies:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, destination / name)
    return destination, target, entrypoint
