"""setup.py's arguments to setuptools."""

from __future__ import annotations

import runpy
from typing import Any

import pytest

from ..conftest import REPO


def setup_arguments(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The keyword arguments setup.py passes to setuptools.setup."""
    import setuptools

    captured: dict[str, Any] = {}
    monkeypatch.setattr(setuptools, "setup", lambda **arguments: captured.update(arguments))
    monkeypatch.chdir(REPO)
    runpy.run_path(str(REPO / "setup.py"))
    return captured
