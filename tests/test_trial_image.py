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


#: Third-party modules the image may lack, each refused in one line when asked for without it.
OPTIONAL_IN_IMAGE = {"tensorboardX": "--tfevent-dir needs the tfevent extra and says so before training"}


def _requirement_closure(extras: set[str]) -> set[str]:
    """Normalised names of the distributions `pip install '.[extras]'` of katib-nas installs."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    wanted, seen = [("katib-nas", frozenset(extras))], set()
    while wanted:
        name, chosen = wanted.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.distribution(name).requires or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in chosen or {""}):
                wanted.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return seen


def _imported_modules(start: Path) -> set[str]:
    """Top-level third-party modules the katib_nas modules reachable from `start` import, anywhere in them."""
    import ast
    import sys

    folders = {f.name for f in REPO.iterdir() if (f / "__init__.py").exists()}
    todo, done, found = [start], set(), set()
    while todo:
        path = todo.pop()
        if path in done or not path.exists():
            continue
        done.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                parts = (node.module or "").split(".") if node.module else []
                todo += [base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")]
                todo += [base.joinpath(*parts, a.name).with_suffix(".py") for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] == "katib_nas" and len(parts) > 1 and parts[1] in folders:
                    target = REPO.joinpath(*parts[1:])
                    todo += [target.with_suffix(".py"), target / "__init__.py"]
                    if isinstance(node, ast.ImportFrom):
                        todo += [target.joinpath(a.name).with_suffix(".py") for a in node.names]
                elif parts[0] not in sys.stdlib_module_names and parts[0] != "katib_nas":
                    found.add(parts[0])
    return found


def test_the_image_installs_what_its_commands_and_the_pipeline_steps_import() -> None:
    """The trial image runs `katib-nas trial`, the profile Job and every pipeline step (`backend=local` runs the
    local runner; each search step writes its report): every third-party module those reach must come with
    the extras the image installs, or the command fails on the cluster only."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    _, target, _ = dockerfile_steps(DOCKERFILES["cpu"])
    extras = set(re.fullmatch(r"\.\[(.*)\]", target).group(1).split(","))
    installed = _requirement_closure(extras)
    providers = metadata.packages_distributions()
    modules = _imported_modules(REPO / "cli" / "main.py") | _imported_modules(REPO / "pipelines" / "steps.py")
    assert {"torch", "grpc", "kfp", "kubernetes", "matplotlib"} <= modules  # the walk reaches the commands
    missing = {module: providers.get(module) for module in modules - set(OPTIONAL_IN_IMAGE)
               if not any(canonicalize_name(d) in installed for d in providers.get(module, []))}
    assert missing == {}
