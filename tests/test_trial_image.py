"""The trial images' Dockerfiles, and their install step replayed in a fresh venv (no Docker engine here)."""

from __future__ import annotations

import re
import subprocess
import venv
from pathlib import Path

import pytest

from .conftest import REPO, build_context, dockerfile_steps

DOCKERFILES = {"cpu": REPO / "trial_image" / "Dockerfile", "cuda": REPO / "trial_image" / "Dockerfile.cuda"}
FLAGS = ("--architecture", "--dataset", "--data-dir", "--epochs", "--steps", "--batch-size", "--lr", "--weight-decay",
         "--seed", "--device", "--threads", "--val-fraction", "--max-train-samples", "--branch-stats",
         "--metrics-file", "--metrics-format", "--report-to-katib", "--export-dir")


@pytest.mark.parametrize("variant", list(DOCKERFILES))
def test_dockerfile_is_non_root_with_fashion_mnist_and_the_trial_entrypoint(variant: str) -> None:
    text = DOCKERFILES[variant].read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    assert base == "python:3.11-slim-bookworm"  # also for CUDA: torch's wheels bring the CUDA libraries
    assert re.search(r"apt-get install -y --no-install-recommends [^\n]*dataset-fashion-mnist", text)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    if variant == "cpu":
        assert re.search(r'--constraint constraints.txt --index-url "\$\{TORCH_INDEX_URL\}" torch$', text, re.M)
    copies, target, entrypoint = dockerfile_steps(DOCKERFILES[variant])
    assert target == ".[trial,pipelines]" and entrypoint == ["katib-nas", "trial"]
    assert {"constraints.txt", "setup.py", "proto", "contract", "suggestion", "trial_image", "runner", "pipelines",
            "deploy", "cli"} <= set(copies)


@pytest.mark.install
def test_install_step_resolves_and_the_installed_command_works(tmp_path: Path) -> None:
    """The [trial] extra resolves (dry run, all dependencies), installs, and `katib-nas trial --help` runs."""
    context, target, _ = build_context(DOCKERFILES["cpu"], tmp_path / "src")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=True)
    python = str(env_dir / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check"]
    report = tmp_path / "report.json"
    subprocess.run(pip + ["install", "--quiet", "--dry-run", "--ignore-installed", "--report", str(report),
                          "--constraint", "constraints.txt", target], cwd=context, check=True, timeout=600,
                   capture_output=True)
    resolved = report.read_text().lower()
    for needed in ('"name": "torch"', '"name": "scikit-learn"', '"name": "numpy"', '"name": "kubeflow-katib"',
                   '"name": "kfp"'):
        assert needed in resolved
    subprocess.run(pip + ["install", "--quiet", "--no-deps", target], cwd=context, check=True, timeout=600,
                   capture_output=True)
    helped = subprocess.run([str(env_dir / "bin" / "katib-nas"), "trial", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0, helped.stderr
    for flag in FLAGS:
        assert flag in helped.stdout


@pytest.mark.install
def test_full_install_in_a_fresh_venv_runs_a_real_trial(tmp_path: Path) -> None:
    """The whole install (torch included) into an empty venv, then a short training run from it."""
    context, target, _ = build_context(DOCKERFILES["cpu"], tmp_path / "src")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--constraint", "constraints.txt", target], cwd=context, check=True, timeout=1200,
                   capture_output=True)
    run = subprocess.run([str(env_dir / "bin" / "katib-nas"), "trial", "--architecture", "in8x8x1-cls10-stem4/w8:c3",
                          "--dataset", "digits", "--steps", "3", "--threads", "1"], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert re.search(r"^\S+Z Validation-Accuracy=(0?\.\d+|[01])$", run.stdout, re.M)
