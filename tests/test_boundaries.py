"""Which package may import which: importing every module of a package loads nothing it must not.

contract        the shared contract: nothing of the project, nothing outside the standard library
suggestion      the suggestion service: the contract and the generated protobuf module; no torch,
                kubernetes or kfp (the suggestion image carries none of them); its core not even grpc
trial_image     the trial: the contract only
runner          the one-machine runner, a client of the service: the contract and the protobuf module
pipelines       anything of the project: its steps also load kubeflow-katib (Katib's SDK), whose
                generated api.proto module lives beside ours (ours use a descriptor pool of their own)
deploy          installing next to Katib: the contract, yaml and the kubernetes client; no torch, grpc,
                protobuf, kfp or kubeflow-katib
cli             anything (it only wires the subcommands to the packages above)
examples        YAML files only (the example Experiments and what they need made first)
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import json
import re
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from .conftest import REPO
from .support.setup_py import setup_arguments

HEAVY = ("grpc", "google.protobuf", "torch", "kubernetes", "kubeflow", "kfp", "yaml", "numpy", "matplotlib")
# package -> (project packages it may load besides itself, third-party modules it must not load)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "contract": ((), HEAVY),
    "suggestion.core": (("contract",), ("grpc", "google.protobuf", "torch", "kubernetes", "kubeflow", "kfp")),
    "suggestion": (("contract", "proto"), ("torch", "kubernetes", "kubeflow", "kfp")),
    "trial_image": (("contract",), ("grpc", "kubernetes", "kubeflow", "kfp")),
    "runner": (("contract", "proto"), ("torch", "kubernetes", "kubeflow", "kfp")),
    "pipelines": (("contract", "suggestion", "trial_image", "runner", "deploy", "examples"), ()),
    "deploy": (("contract", "examples"), ("grpc", "google.protobuf", "torch", "kubeflow", "kfp", "numpy", "matplotlib")),
}
LOADER = """
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
names = [sys.argv[1]] + [m.name for m in pkgutil.walk_packages(package.__path__, sys.argv[1] + ".")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(sys.modules)}))
"""


def loaded_by(package: str) -> tuple[list[str], list[str]]:
    done = subprocess.run([sys.executable, "-c", LOADER, f"katib_nas.{package}"], capture_output=True, text=True,
                          check=True, timeout=300)
    result = json.loads(done.stdout)
    return result["modules"], result["loaded"]


def under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize("package", sorted(RULES))
def test_package_loads_only_what_it_may(package: str) -> None:
    modules, loaded = loaded_by(package)
    assert len(modules) > 1, f"katib_nas.{package} has no modules to check"
    allowed, forbidden = RULES[package]
    own = [f"katib_nas.{p}" for p in (package,) + allowed]
    parents = {f"katib_nas.{package}".rsplit(".", k)[0] for k in range(package.count(".") + 2)}
    project = [m for m in loaded if under(m, "katib_nas") and m not in parents]
    assert [m for m in project if not any(under(m, p) for p in own)] == []
    assert [m for m in loaded if any(under(m, f) for f in forbidden)] == []


def test_the_contract_uses_only_the_standard_library() -> None:
    _, loaded = loaded_by("contract")
    third_party = {m.split(".")[0] for m in loaded} - set(sys.stdlib_module_names) - {"katib_nas", "__main__"}
    assert sorted(m for m in third_party if not m.startswith("_")) == []


def test_every_top_level_package_has_a_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every package setup.py installs (its package_dir) has a rule, but cli (free to load anything), proto
    (generated) and examples (no code, checked below)."""
    installed = {name.removeprefix("katib_nas.") for name in setup_arguments(monkeypatch)["package_dir"]}
    assert {p.split(".")[0] for p in RULES} | {"cli", "proto", "examples"} == installed


def test_examples_hold_no_code() -> None:
    modules, loaded = loaded_by("examples")
    assert modules == ["katib_nas.examples"]
    assert [m for m in loaded if under(m, "katib_nas") and m not in ("katib_nas", "katib_nas.examples")] == []


# package -> the extras that install it on a user's machine (cli, proto and examples have none of their own)
EXTRAS = {"suggestion": ("suggestion",), "trial_image": ("trial", "tfevent"), "runner": ("local",),
          "pipelines": ("pipelines",), "deploy": ("deploy",)}
# Modules that run only inside the trial image (a pipeline's steps), which carries every extra.
IN_TRIAL_IMAGE_ONLY = {"pipelines/steps.py"}
NAMESPACE_PACKAGES = {"kubeflow", "google"}


def imported_distributions(package: str) -> dict[str, set[str]]:
    """Distribution name -> the package's files that import it (imports inside functions included)."""
    distributions = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    paths = sorted((REPO / package).rglob("*.py"))
    assert paths, f"{package} has no modules to check"
    for path in paths:
        relative = str(path.relative_to(REPO))
        if relative in IN_TRIAL_IMAGE_ONLY:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "katib_nas":
                    continue
                key = ".".join(name.split(".")[:2]) if top in NAMESPACE_PACKAGES else top
                owners = [d for d in distributions.get(top, [key]) if top not in NAMESPACE_PACKAGES
                          or _provides(d, key)]
                for owner in owners:
                    found.setdefault(canonical(owner), set()).add(relative)
    return found


@functools.cache
def _provides(distribution: str, module: str) -> bool:
    files = importlib.metadata.distribution(distribution).files or []
    return any(str(f).startswith(module.replace(".", "/") + "/") for f in files)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_with(requirements: list[str]) -> set[str]:
    """The distributions the requirements install, with everything they depend on."""
    todo = [Requirement(r).name for r in requirements]
    seen: set[str] = set()
    while todo:
        name = canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


@pytest.mark.parametrize("package", sorted(EXTRAS))
def test_a_packages_extras_install_what_its_modules_import(package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install katib-nas[EXTRA]` is enough for the package: every third-party module its files import
    comes with the extra's requirements or theirs."""
    extras = setup_arguments(monkeypatch)["extras_require"]
    installed = installed_with(["pyyaml"] + [r for extra in EXTRAS[package] for r in extras[extra]])
    imported = imported_distributions(package)
    assert imported, f"no third-party import found in {package}"
    missing = {d: sorted(files) for d, files in imported.items() if d not in installed}
    assert missing == {}
