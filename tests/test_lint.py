"""pyflakes over the project's Python: no unused imports, undefined names or shadowed definitions."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO

SOURCES = ["suggestion", "trial_image", "pipelines", "bench", "tests", "setup.py"]


def test_pyflakes_is_clean() -> None:
    done = subprocess.run([sys.executable, "-m", "pyflakes", *SOURCES], cwd=REPO, capture_output=True, text=True)
    problems = done.stdout.splitlines()
    assert problems == [], "\n".join(problems)
